"""The recall map: which labels have been recalled, committed in every header.

A label bundle proves the events it carries, but by itself not that the log holds no
other recall of the label (docs/adr/0011).  On chains whose genesis sets
``params.state_root = "recalls/v1"`` every block header carries ``state_root``: the root
of a sparse Merkle map from each recalled label to a hash chain over the recall events
that touch it (a recall of the label, of its carcass or of its lamb).  A bundle then adds
one path through this map, proving either the label's chain (which the verifier
recomputes from the recall events the bundle carries: none left out, none added) or that
the label has no entry (no recall at all, up to the checkpoint).

Definitions (docs/label-proof.md, "The recall map", has them with test vectors)::

    key(label)      = SHA-256("lambtrace/recall-key/v1" || utf8(label))      256 bits, MSB first
    chain(events)   = c_n where c_0 = 32 zero bytes,
                      c_i = SHA-256(0x02 || c_{i-1} || leaf_hash(leaf of recall i)), in log order
    leaf(K, V)      = SHA-256(0x00 || K || V)
    node(L, R)      = SHA-256(0x01 || L || R)
    EMPTY           = 32 zero bytes
    tree(S, d)      = EMPTY                          if S is empty
                    = leaf(K, V)                     if S holds one entry (K, V)
                    = node(tree(S0, d+1), tree(S1, d+1))   S0/S1: entries whose bit d is 0/1
    root            = tree(all entries, 0)

A subtree with one entry is that entry's leaf, wherever it sits, so a path is about
log2(entries) hashes long, not 256.

**In state** the tree is kept node by node (:data:`NODE_PREFIX`: one record per non-empty
node, keyed by its depth and path prefix; a leaf record also holds its key and value),
so a recall updates the few dozen nodes on each touched label's path, whatever the size
of the map, and a prover reads one path.  :class:`RecallTree` builds the same tree in
memory from a ``{label: value}`` map (tests, reference).

A proof for key ``K`` is ``(depth, mask, siblings, other)``: the siblings of the nodes on
``K``'s path from the root down to depth ``depth``, where the path ends (at ``K``'s own leaf,
at an empty subtree, or at the one other leaf in the subtree); ``mask`` has bit ``i`` set
when the sibling at depth ``i`` is not empty, and only those siblings are listed, top
down.  The encoding is canonical: exactly one proof verifies for a key and a root
(:func:`check_proof` refuses the others).

Pure: hashlib only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import merkle
from .errors import ProofError, RootMismatch

__all__ = [
    "EMPTY",
    "KIND",
    "NODE_PREFIX",
    "SIZE_KEY",
    "Proof",
    "RecallTree",
    "chain_of",
    "chain_step",
    "check_proof",
    "enabled",
    "finish_block",
    "key_of",
    "leaf_node",
    "path_in",
    "proof_from_value",
    "prove_in",
    "record_recall",
    "root_in",
    "root_of",
    "size_in",
    "value_in",
]

KIND = "recalls/v1"
"""The value of ``genesis.params.state_root`` that turns the map on."""

NODE_PREFIX = "m/n/"
"""State keys of the tree's nodes: ``m/n/<depth>/<prefix>``, the prefix being the
node's first ``depth`` key bits as hex of ``ceil(depth / 8)`` bytes (bits past ``depth``
zero).  Value: ``{"h": hash}`` for an inner node, ``{"h", "k", "v"}`` for a leaf (its
key and chain value)."""

SIZE_KEY = "m/size"
"""State key of the number of entries (recalled labels)."""

EMPTY = bytes(32)
HASH_SIZE = 32
KEY_TAG = b"lambtrace/recall-key/v1"
MAX_DEPTH = 256


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def key_of(label: str) -> bytes:
    """The 256-bit path of ``label`` in the map."""
    return _h(KEY_TAG + label.encode("utf-8"))


def chain_step(value: bytes | None, leaf: bytes) -> bytes:
    """The label's chain value after one more recall event (``leaf``: its log leaf)."""
    return _h(b"\x02" + (value or EMPTY) + merkle.leaf_hash(leaf))


def leaf_node(key: bytes, value: bytes) -> bytes:
    """``SHA-256(0x00 || key || value)``: the RFC 9162 leaf hash of the pair."""
    return merkle.leaf_hash(key + value)


def _bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def enabled(genesis: Any) -> bool:
    """Whether ``genesis`` commits the recall map in its headers."""
    return bool(genesis.params.state_root == KIND)


# --------------------------------------------------------------------------- the tree


class RecallTree:
    """The map's canonical tree built at once from ``{label: value}`` (about two hashes
    per entry), holding the same node records state holds (:data:`NODE_PREFIX`), so
    :func:`prove_in` reads a path from it as from state."""

    def __init__(self, entries: Mapping[str, bytes]) -> None:
        items = sorted((key_of(label), bytes(v)) for label, v in entries.items())
        self._keys = [k for k, _ in items]
        self._values = [v for _, v in items]
        self._nodes: dict[str, dict[str, bytes]] = {}
        self.root = self._build(0, len(items), 0)

    def _build(self, lo: int, hi: int, depth: int) -> bytes:
        if lo == hi:
            return EMPTY
        key = self._keys[lo]
        if hi - lo == 1:
            rec = {"h": leaf_node(key, self._values[lo]), "k": key, "v": self._values[lo]}
        else:
            # entries are sorted by key: those with bit ``depth`` = 1 come after the 0s
            split = lo
            while split < hi and not _bit(self._keys[split], depth):
                split += 1
            rec = {"h": merkle.node_hash(self._build(lo, split, depth + 1), self._build(split, hi, depth + 1))}
        self._nodes[_node_key(depth, key)] = rec
        return rec["h"]

    def state_get(self, key: str) -> Any | None:
        return self._nodes.get(key)

    def prove(self, label: str) -> Proof:
        """The path of ``label``: to its own leaf, or to where its absence shows."""
        return prove_in(self, label)


def root_of(entries: Mapping[str, bytes]) -> bytes:
    return RecallTree(entries).root


# --------------------------------------------------------------------------- in state


def _node_key(depth: int, key: bytes, bit: int | None = None) -> str:
    """State key of the node at ``depth`` on ``key``'s path (or, with ``bit``, of the child
    at ``depth + 1`` that takes ``bit`` there)."""
    if bit is not None:
        depth += 1
    n = (depth + 7) // 8
    p = bytearray(key[:n])
    if bit is not None:
        i = depth - 1
        if bit:
            p[i >> 3] |= 0x80 >> (i & 7)
        else:
            p[i >> 3] &= ~(0x80 >> (i & 7)) & 0xFF
    if depth & 7:
        p[-1] &= (0xFF << (8 - (depth & 7))) & 0xFF
    return f"{NODE_PREFIX}{depth}/{p.hex()}"


def _hash_of(rec: Any) -> bytes:
    return bytes(rec["h"]) if rec is not None else EMPTY


def _rehash(view: Any, depth: int, key: bytes) -> None:
    """Recompute the inner node at ``depth`` on ``key``'s path from its two children."""
    left = _hash_of(view.state_get(_node_key(depth, key, 0)))
    right = _hash_of(view.state_get(_node_key(depth, key, 1)))
    view.put(_node_key(depth, key), {"h": merkle.node_hash(left, right)})


def _put_leaf(view: Any, depth: int, key: bytes, value: bytes) -> None:
    view.put(_node_key(depth, key), {"h": leaf_node(key, value), "k": key, "v": value})


def _find(view: Any, key: bytes) -> tuple[int, Any]:
    """Walk ``key``'s path from the root: ``(depth, record)`` of the first node that is
    empty (record None) or a leaf."""
    depth = 0
    while True:
        rec = view.state_get(_node_key(depth, key))
        if rec is None or "k" in rec:
            return depth, rec
        depth += 1


def value_in(view: Any, label: str) -> bytes | None:
    """``label``'s chain value in the map kept in ``view``, None if it has no entry."""
    key = key_of(label)
    _depth, rec = _find(view, key)
    return bytes(rec["v"]) if rec is not None and bytes(rec["k"]) == key else None


def _extend(view: Any, key: bytes, leaf: bytes) -> None:
    """Extend ``key``'s chain by one recall event (``leaf``), making its entry if it has
    none, and rehash its path up to the root."""
    depth, rec = _find(view, key)
    mine = rec is not None and bytes(rec["k"]) == key
    value = chain_step(bytes(rec["v"]) if mine else None, leaf)
    if rec is not None and not mine:
        # another entry holds this subtree alone: push both down to where they part
        other = bytes(rec["k"])
        split = depth
        while _bit(other, split) == _bit(key, split):
            split += 1
        _put_leaf(view, split + 1, other, bytes(rec["v"]))
        _put_leaf(view, split + 1, key, value)
        for d in range(split, depth - 1, -1):
            _rehash(view, d, key)
    else:
        _put_leaf(view, depth, key, value)
    if not mine:
        view.put(SIZE_KEY, size_in(view) + 1)
    for d in range(depth - 1, -1, -1):
        _rehash(view, d, key)


def record_recall(view: Any, labels: Iterable[str], leaf: bytes) -> None:
    """Extend each label's chain with one recall event (each label once), in the map kept
    in ``view``: each touched path is updated, nothing else is read or written."""
    for label in dict.fromkeys(labels):
        _extend(view, key_of(label), leaf)


def root_in(view: Any) -> bytes:
    """The map's root as kept in ``view`` (EMPTY while nothing is recalled)."""
    return _hash_of(view.state_get(_node_key(0, bytes(32))))


def size_in(view: Any) -> int:
    """How many labels have an entry in the map kept in ``view``."""
    return int(view.state_get(SIZE_KEY) or 0)


def path_in(view: Any, label: str) -> tuple[Proof, bytes | None]:
    """``label``'s path in the map kept in ``view`` and its chain value (None: no entry),
    read in one walk from the root."""
    key = key_of(label)
    depth = 0
    mask = 0
    siblings: list[bytes] = []
    other: tuple[bytes, bytes] | None = None
    value: bytes | None = None
    while True:
        rec = view.state_get(_node_key(depth, key))
        if rec is None:
            break
        if "k" in rec:
            if bytes(rec["k"]) == key:
                value = bytes(rec["v"])
            else:
                other = (bytes(rec["k"]), bytes(rec["v"]))
            break
        sib = _hash_of(view.state_get(_node_key(depth, key, 1 - _bit(key, depth))))
        mask = (mask << 1) | (sib != EMPTY)
        if sib != EMPTY:
            siblings.append(sib)
        depth += 1
    nbytes = (depth + 7) // 8
    mask_bytes = (mask << (8 * nbytes - depth)).to_bytes(nbytes, "big") if depth else b""
    return Proof(depth, mask_bytes, tuple(siblings), other), value


def prove_in(view: Any, label: str) -> Proof:
    """``label``'s path in the map kept in ``view`` (state, or a :class:`RecallTree`)."""
    return path_in(view, label)[0]


# --------------------------------------------------------------------------- blocks


def finish_block(view: Any, genesis: Any) -> bytes | None:
    """The header's ``state_root`` for a block whose events were applied to ``view``:
    the map's root (the rules keep the tree up to date); None for chains without it."""
    if not enabled(genesis):
        return None
    return root_in(view)


# --------------------------------------------------------------------------- proofs


@dataclass(frozen=True)
class Proof:
    depth: int
    mask: bytes
    siblings: tuple[bytes, ...]
    other: tuple[bytes, bytes] | None = None

    def to_value(self) -> dict[str, Any]:
        """The bundle's ``recalls`` map (docs/label-proof.md): the siblings as one byte
        string of 32-byte hashes, ``other`` as 64 bytes (key, value) or empty."""
        return {
            "depth": self.depth,
            "mask": self.mask,
            "siblings": b"".join(self.siblings),
            "other": self.other[0] + self.other[1] if self.other is not None else b"",
        }


def proof_from_value(value: Any) -> Proof:
    """Parse a bundle's ``recalls`` map; raises :class:`ProofError` on any wrong shape."""
    if type(value) is not dict or set(value) != {"depth", "mask", "siblings", "other"}:
        raise ProofError("the recall proof must have exactly depth, mask, siblings and other")
    depth, mask, sibs, other = value["depth"], value["mask"], value["siblings"], value["other"]
    if type(depth) is not int or not 0 <= depth <= MAX_DEPTH:
        raise ProofError("the recall proof's depth must be an integer from 0 to 256")
    if type(mask) is not bytes or len(mask) != (depth + 7) // 8:
        raise ProofError("the recall proof's mask must be (depth + 7) // 8 bytes")
    if type(sibs) is not bytes or len(sibs) % HASH_SIZE or len(sibs) > MAX_DEPTH * HASH_SIZE:
        raise ProofError("the recall proof's siblings must be 32-byte hashes, one after another")
    if type(other) is not bytes or len(other) not in (0, 2 * HASH_SIZE):
        raise ProofError("the recall proof's other must be empty or a key and a value, 32 bytes each")
    siblings = tuple(merkle.split_hashes(sibs))
    return Proof(depth, mask, siblings, (other[:HASH_SIZE], other[HASH_SIZE:]) if other else None)


def check_proof(proof: Proof, label: str, value: bytes | None, root: bytes) -> None:
    """Check that the map with ``root`` holds ``label`` with ``value`` (or, with ``value``
    None, holds no entry for it).  Raises :class:`ProofError` for a proof that is not
    the canonical one's shape, :class:`RootMismatch` when it leads to another root."""
    key = key_of(label)
    d = proof.depth
    bits = int.from_bytes(proof.mask, "big") if proof.mask else 0
    pad = 8 * len(proof.mask) - d
    if bits & ((1 << pad) - 1):
        raise ProofError("the recall proof's mask has bits set past its depth")
    bits >>= pad
    if bin(bits).count("1") != len(proof.siblings):
        raise ProofError("the recall proof lists another number of siblings than its mask says")
    if any(s == EMPTY for s in proof.siblings):
        raise ProofError("the recall proof lists an empty sibling")
    if d and not bits & 1:
        raise ProofError("the recall proof goes below the last non-empty sibling")
    if value is not None:
        if proof.other is not None:
            raise ProofError("the recall proof shows another label's entry where this label's should be")
        node = leaf_node(key, value)
    elif proof.other is not None:
        okey, ovalue = proof.other
        if okey == key:
            raise ProofError("the recall proof shows an entry for this label, but the bundle has no recall")
        if any(_bit(okey, i) != _bit(key, i) for i in range(d)):
            raise ProofError("the recall proof's other entry is not on this label's path")
        node = leaf_node(okey, ovalue)
    else:
        node = EMPTY
    k = len(proof.siblings)
    for depth in range(d - 1, -1, -1):
        present = (bits >> (d - 1 - depth)) & 1
        if present:
            k -= 1
            sib = proof.siblings[k]
        else:
            sib = EMPTY
        node = merkle.node_hash(sib, node) if _bit(key, depth) else merkle.node_hash(node, sib)
    if node != root:
        raise RootMismatch(root, node, "the recall proof does not lead to the checkpoint's state_root")


def chain_of(leaves: Sequence[bytes]) -> bytes | None:
    """The chain value of a label recalled by these events (log order), None if none."""
    value: bytes | None = None
    for leaf in leaves:
        value = chain_step(value, leaf)
    return value
