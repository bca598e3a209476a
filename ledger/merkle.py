"""RFC 9162 Merkle tree over the log's leaves: hashing, proofs and their verification.

The workflow, shaped like transparency-dev/merkle:

* **The hasher** is the three RFC 9162 §2.1.1 primitives below, with no domain tag
  beyond the RFC prefixes: ``leaf_hash(d) = SHA-256(0x00 || d)``,
  ``node_hash(l, r) = SHA-256(0x01 || l || r)`` and ``EMPTY_ROOT = SHA-256("")``.
* **Writing.** The committer keeps a :class:`CompactRange` (the right frontier of the
  tree).  ``append`` returns every *complete* node the new leaf creates; the store
  persists exactly those, addressed by ``(level, index)``: level 0 index ``i`` is leaf
  ``i``'s leaf hash, level ``L`` index ``i`` is the root of leaves
  ``[i * 2**L, (i + 1) * 2**L)``.
* **Planning, then fetching.** ``inclusion_plan`` / ``consistency_plan`` say which
  leaf ranges ``[begin, end)`` a proof is made of, in proof order, without touching
  the store.  ``plan_nodes`` turns a plan into the complete nodes to read (a store
  may batch them) and ``proof_from_nodes`` folds what was read back into the proof.
  A range that is not itself a complete node (the "ephemeral" node at the right edge
  of an unbalanced tree) is rebuilt from the complete nodes that cover it, so every
  proof costs O(log n) reads.
* **Multiproofs.**  One proof for many leaves at once (``multiproof_plan``,
  ``multiproof``, ``root_from_multiproof``; docs/label-proof.md): walk the RFC 9162
  tree shape from the root, and every maximal subtree that holds none of the proven
  leaves contributes its hash, left to right.  It is the union of the leaves'
  inclusion paths with the shared and the computable hashes left out.
* **Verifying** (client side, untrusted input).  Cheap structure is checked before
  any hashing: integer sizes in range, ``index < size``, every hash exactly
  ``HASH_SIZE`` bytes and the proof exactly as long as the sizes demand.  Only then
  is anything hashed.  Structural failures raise :class:`~ledger.errors.ProofError`;
  a recomputed root that differs raises :class:`~ledger.errors.RootMismatch`.  Both
  are :class:`~ledger.errors.VerificationError`.  ``root_from_*`` are the
  result-returning twins for callers that want the computed root.

Note that an inclusion proof authenticates a leaf against a *root*; the tree size is
bound only through the root (a signed tree head carries both).  A verifier told a
wrong size may still accept when that size gives the proof the same shape.

Pure: hashlib only; no I/O, clocks or randomness.  Programmer misuse (a negative
size given to :class:`CompactRange`, a range that is not a subtree) raises
``ValueError``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

from ledger.errors import ProofError, RootMismatch, StorageError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "MAX_TREE_SIZE",
    "NODE_PREFIX",
    "CompactRange",
    "GetNode",
    "consistency_plan",
    "consistency_proof",
    "consistency_proof_length",
    "inclusion_plan",
    "inclusion_proof",
    "inclusion_proof_length",
    "leaf_hash",
    "multiproof",
    "multiproof_length",
    "multiproof_plan",
    "node_hash",
    "plan_nodes",
    "proof_from_nodes",
    "range_hash",
    "range_nodes",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "root_from_multiproof",
    "root_from_store",
    "verify_consistency",
    "verify_inclusion",
    "verify_multiproof",
]

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
MAX_TREE_SIZE = (1 << 64) - 1
"""Largest tree size accepted anywhere; it keeps every proof and frontier at most 64 hashes."""

_sha256 = hashlib.sha256

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""Root of the tree with no leaves (RFC 9162 §2.1.1: the hash of the empty string)."""

GetNode = Callable[[int, int], bytes]
"""``(level, index) -> hash`` of a stored complete node; see the module docstring."""

LeafRange = tuple[int, int]
"""Leaves ``[begin, end)`` of one node of the tree (complete, or imperfect at the right edge)."""

NodeID = tuple[int, int]
"""``(level, index)`` of a complete node."""


# --------------------------------------------------------------------------- hasher


def split_hashes(data: bytes) -> list[bytes]:
    """32-byte hashes sent one after another in one byte string (a v3 label bundle's
    multiproof and recall path) as a list; the caller checks the length is a multiple."""
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the RFC 9162 hash of one leaf.  Never raises for bytes."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the RFC 9162 hash of an interior node.

    Does not check the lengths of its arguments (it is on the hot path); the verifiers
    check every untrusted hash before they get here.
    """
    return _sha256(NODE_PREFIX + left + right).digest()


# --------------------------------------------------------------------------- writer


class CompactRange:
    """The right frontier of a tree of ``size`` leaves: the roots of the perfect subtrees
    in ``size``'s binary decomposition (at most 64).

    ``hashes`` runs left to right, so the largest subtree comes first.  This is all the
    state needed to append leaves and to compute the root.
    """

    __slots__ = ("hashes", "size")

    size: int
    hashes: list[bytes]

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        """Adopt a frontier.

        Raises ``ValueError`` unless ``0 <= size <= MAX_TREE_SIZE``, ``len(hashes)`` is
        ``popcount(size)`` and every hash is ``HASH_SIZE`` bytes.
        """
        if type(size) is not int or not 0 <= size <= MAX_TREE_SIZE:
            raise ValueError(f"tree size must be an int in [0, 2**64 - 1], got {size!r}")
        hashes = list(hashes)
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of size {size} needs {size.bit_count()} hashes, got {len(hashes)}")
        for h in hashes:
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise ValueError(f"every frontier hash must be {HASH_SIZE} bytes")
        self.size = size
        self.hashes = hashes

    def __repr__(self) -> str:
        return f"CompactRange(size={self.size}, hashes=[{', '.join(h.hex()[:8] for h in self.hashes)}])"

    def copy(self) -> CompactRange:
        """An independent copy (appending to one does not change the other)."""
        out = CompactRange.__new__(CompactRange)
        out.size = self.size
        out.hashes = self.hashes.copy()
        return out

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf (given by its *leaf hash*) and return the new complete nodes.

        The result is every complete node this append creates, as ``(level, index,
        hash)`` in increasing level, starting with ``(0, leaf_index, leaf_hash)``; these
        are exactly the nodes a store must persist.  Raises ``ValueError`` if the hash is
        not ``HASH_SIZE`` bytes or the tree is full.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
        index = self.size
        if index >= MAX_TREE_SIZE:
            raise ValueError("tree is full")
        created = [(0, index, leaf_hash)]
        hashes = self.hashes
        h = leaf_hash
        level = 0
        i = index
        # Each trailing 1 bit of the old size is a frontier subtree of the same size as
        # the one being carried: merge them, like binary addition.
        while i & 1:
            h = _sha256(NODE_PREFIX + hashes.pop() + h).digest()
            level += 1
            i >>= 1
            created.append((level, i, h))
        hashes.append(h)
        self.size = index + 1
        return created

    def root(self) -> bytes:
        """The RFC 9162 root of the current tree (``EMPTY_ROOT`` for size 0).  Never raises."""
        hashes = self.hashes
        n = len(hashes)
        if n == 0:
            return EMPTY_ROOT
        h = hashes[n - 1]
        for k in range(n - 2, -1, -1):
            h = _sha256(NODE_PREFIX + hashes[k] + h).digest()
        return h

    @classmethod
    def from_store(cls, size: int, get_node: GetNode) -> CompactRange:
        """Load the frontier of a tree of ``size`` leaves with ``popcount(size)`` reads.

        Raises ``ValueError`` for a bad size and ``StorageError`` if the store returns
        something that is not a ``HASH_SIZE``-byte hash; whatever ``get_node`` raises
        propagates.
        """
        if type(size) is not int or not 0 <= size <= MAX_TREE_SIZE:
            raise ValueError(f"tree size must be an int in [0, 2**64 - 1], got {size!r}")
        nodes = range_nodes(0, size) if size else []
        return cls(size, [_read(get_node, level, index) for level, index in nodes])


# --------------------------------------------------------------------------- reading nodes


def _read(get_node: GetNode, level: int, index: int) -> bytes:
    h = get_node(level, index)
    if not isinstance(h, bytes) or len(h) != HASH_SIZE:
        raise StorageError(f"store returned a malformed hash for node ({level}, {index})")
    return h


def range_nodes(begin: int, end: int) -> list[NodeID]:
    """The complete nodes that exactly cover leaves ``[begin, end)``, left to right.

    ``[begin, end)`` must be a node of some tree: ``0 <= begin < end`` and ``begin`` a
    multiple of the smallest power of two ``>= end - begin``.  The nodes are then the
    binary decomposition of ``end - begin``, largest first (at most 64).  Raises
    ``ValueError`` otherwise.
    """
    if type(begin) is not int or type(end) is not int or not 0 <= begin < end:
        raise ValueError(f"not a leaf range: [{begin!r}, {end!r})")
    width = end - begin
    if begin & ((1 << (width - 1).bit_length()) - 1):
        raise ValueError(f"[{begin}, {end}) is not a subtree: begin is not aligned")
    out: list[NodeID] = []
    for level in range(width.bit_length() - 1, -1, -1):
        if (width >> level) & 1:
            out.append((level, begin >> level))
            begin += 1 << level
    return out


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    # RFC 9162 splits a subtree at its largest power of two, so the root of a range
    # covered by perfect subtrees of decreasing size folds them from the right.
    h = hashes[-1]
    for k in range(len(hashes) - 2, -1, -1):
        h = _sha256(NODE_PREFIX + hashes[k] + h).digest()
    return h


def range_hash(begin: int, end: int, get_node: GetNode) -> bytes:
    """The RFC 9162 hash of the subtree over leaves ``[begin, end)``.

    ``[begin, end)`` must be a subtree that appears in the tree (possibly imperfect at
    the right edge); see :func:`range_nodes`.  Reads at most 64 nodes (one per set bit
    of ``end - begin``).  Raises ``ValueError`` for a bad range and ``StorageError``
    for a malformed stored hash.
    """
    return _fold_right([_read(get_node, level, index) for level, index in range_nodes(begin, end)])


def root_from_store(size: int, get_node: GetNode) -> bytes:
    """The RFC 9162 root of the tree of ``size`` leaves, with ``popcount(size)`` reads.

    ``EMPTY_ROOT`` for size 0.  Raises ``ValueError`` for a bad size and
    ``StorageError`` for a malformed stored hash.
    """
    if type(size) is not int or not 0 <= size <= MAX_TREE_SIZE:
        raise ValueError(f"tree size must be an int in [0, 2**64 - 1], got {size!r}")
    if size == 0:
        return EMPTY_ROOT
    return range_hash(0, size, get_node)


# --------------------------------------------------------------------------- shapes


def _check_size(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= MAX_TREE_SIZE:
        raise ProofError(f"{name} must be an int in [0, 2**64 - 1], got {value!r}")


def _check_index(index: int, size: int) -> None:
    _check_size("size", size)
    _check_size("index", index)
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}")


def _check_consistency_sizes(m: int, n: int) -> None:
    _check_size("m", m)
    _check_size("n", n)
    if m == 0:
        raise ProofError("a consistency proof needs a non-empty first tree (m > 0)")
    if m > n:
        raise ProofError(f"first tree size {m} exceeds second tree size {n}")


def _inclusion_shape(index: int, size: int) -> tuple[int, int]:
    # ``inner``: levels where the paths to ``index`` and to the last leaf differ, each
    # contributing one sibling on either side.  ``border``: above that the path runs
    # along the right border and only the levels where ``index`` has a 1 bit have a
    # (left) sibling.
    inner = (index ^ (size - 1)).bit_length()
    return inner, (index >> inner).bit_count()


def inclusion_proof_length(index: int, size: int) -> int:
    """The exact number of hashes in the inclusion proof of leaf ``index`` in a tree of
    ``size`` leaves.  Raises ``ProofError`` unless ``0 <= index < size <= MAX_TREE_SIZE``.
    """
    _check_index(index, size)
    inner, border = _inclusion_shape(index, size)
    return inner + border


def _consistency_shape(m: int, n: int) -> tuple[int, int, int, int]:
    # The proof is (unless m is a power of two) the root of the largest perfect subtree
    # ending at m, then that node's inclusion path in the tree of size n.  Returns
    # (start, inner, border, shift); requires 0 < m < n.
    shift = (m & -m).bit_length() - 1
    inner, border = _inclusion_shape(m - 1, n)
    start = 0 if m == 1 << shift else 1
    return start, inner - shift, border, shift


def consistency_proof_length(m: int, n: int) -> int:
    """The exact number of hashes in the consistency proof from size ``m`` to size ``n``.

    0 when ``m == n``.  Raises ``ProofError`` unless ``0 < m <= n <= MAX_TREE_SIZE``.
    """
    _check_consistency_sizes(m, n)
    if m == n:
        return 0
    start, inner, border, _ = _consistency_shape(m, n)
    return start + inner + border


# --------------------------------------------------------------------------- planning


def inclusion_plan(index: int, size: int) -> list[LeafRange]:
    """The leaf ranges whose hashes make the RFC 9162 §2.1.3.1 inclusion proof (PATH)
    of leaf ``index`` in a tree of ``size`` leaves, in proof order (bottom up).

    Touches no store.  Raises ``ProofError`` unless ``0 <= index < size <= MAX_TREE_SIZE``.
    """
    _check_index(index, size)
    inner, _ = _inclusion_shape(index, size)
    plan: list[LeafRange] = []
    for level in range(inner):
        begin = ((index >> level) ^ 1) << level
        # Only the topmost inner sibling can reach past the end of the tree; it is then
        # the ephemeral node covering [begin, size).
        plan.append((begin, min(begin + (1 << level), size)))
    rest = index >> inner
    level = inner
    while rest:
        if rest & 1:
            plan.append(((rest - 1) << level, rest << level))
        rest >>= 1
        level += 1
    return plan


def consistency_plan(m: int, n: int) -> list[LeafRange]:
    """The leaf ranges whose hashes make the RFC 9162 §2.1.4.1 consistency proof
    (SUBPROOF) from size ``m`` to size ``n``, in proof order.  Empty when ``m == n``.

    Touches no store.  Raises ``ProofError`` unless ``0 < m <= n <= MAX_TREE_SIZE``.
    """
    _check_consistency_sizes(m, n)
    if m == n:
        return []
    start, _, _, shift = _consistency_shape(m, n)
    # The path of leaf m - 1 starts with ``shift`` siblings inside the perfect subtree
    # [m - 2**shift, m); the verifier already knows that subtree (it is root_m itself
    # when m is a power of two, else the first proof hash), so they are skipped.
    plan = [(m - (1 << shift), m)] if start else []
    plan.extend(inclusion_plan(m - 1, n)[shift:])
    return plan


def plan_nodes(plan: Sequence[LeafRange]) -> list[NodeID]:
    """Every complete node ``(level, index)`` a plan needs, in order, so a store can read
    them in one batch.  Raises ``ValueError`` if an entry is not a subtree range.
    """
    out: list[NodeID] = []
    for begin, end in plan:
        out.extend(range_nodes(begin, end))
    return out


def proof_from_nodes(plan: Sequence[LeafRange], node_hashes: Sequence[bytes]) -> list[bytes]:
    """Fold the hashes of ``plan_nodes(plan)`` (same order) back into the proof.

    Raises ``ValueError`` if the number of hashes does not match the plan and
    ``StorageError`` if a hash is not ``HASH_SIZE`` bytes.
    """
    for h in node_hashes:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise StorageError("store returned a malformed hash")
    proof: list[bytes] = []
    pos = 0
    for begin, end in plan:
        count = (end - begin).bit_count()
        if pos + count > len(node_hashes):
            raise ValueError("fewer node hashes than the plan needs")
        proof.append(node_hashes[pos] if count == 1 else _fold_right(node_hashes[pos : pos + count]))
        pos += count
    if pos != len(node_hashes):
        raise ValueError("more node hashes than the plan needs")
    return proof


def inclusion_proof(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """The RFC 9162 §2.1.3.1 inclusion proof (PATH) of leaf ``index`` in the tree of
    ``size`` leaves, with O(log size) reads (at most two per level).

    Raises ``ProofError`` unless ``0 <= index < size <= MAX_TREE_SIZE`` and
    ``StorageError`` for a malformed stored hash.
    """
    return [range_hash(begin, end, get_node) for begin, end in inclusion_plan(index, size)]


def consistency_proof(m: int, n: int, get_node: GetNode) -> list[bytes]:
    """The RFC 9162 §2.1.4.1 consistency proof (SUBPROOF) from size ``m`` to size ``n``,
    with O(log n) reads; ``[]`` when ``m == n``.

    Raises ``ProofError`` unless ``0 < m <= n <= MAX_TREE_SIZE`` and ``StorageError``
    for a malformed stored hash.
    """
    return [range_hash(begin, end, get_node) for begin, end in consistency_plan(m, n)]


# --------------------------------------------------------------------------- verifying


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{name} must be {HASH_SIZE} bytes")


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofError(f"wrong proof length {len(proof)}, want {want}")
    for k, h in enumerate(proof):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ProofError(f"proof[{k}] must be {HASH_SIZE} bytes")


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` implies for leaf ``index`` (hash ``leaf_hash``) in a tree of
    ``size`` leaves (RFC 9162 §2.1.3.2 without the final comparison).

    Checks all structure before hashing; raises ``ProofError`` unless
    ``0 <= index < size <= MAX_TREE_SIZE``, ``leaf_hash`` and every proof hash are
    ``HASH_SIZE`` bytes and ``len(proof) == inclusion_proof_length(index, size)``.
    """
    _check_index(index, size)
    _check_hash("leaf_hash", leaf_hash)
    inner, border = _inclusion_shape(index, size)
    _check_proof(proof, inner + border)
    h = leaf_hash
    for k in range(inner):
        if (index >> k) & 1:
            h = _sha256(NODE_PREFIX + proof[k] + h).digest()
        else:
            h = _sha256(NODE_PREFIX + h + proof[k]).digest()
    for k in range(inner, inner + border):
        h = _sha256(NODE_PREFIX + proof[k] + h).digest()
    return h


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` shows leaf ``index`` (hash ``leaf_hash``) in the tree of ``size``
    leaves with root ``root`` (RFC 9162 §2.1.3.2).  Returns ``None`` on success.

    Raises ``ProofError`` for any structural problem (see
    :func:`root_from_inclusion_proof`; also a ``root`` that is not ``HASH_SIZE`` bytes),
    checked before any hashing, and ``RootMismatch(root, calculated)`` when the proof
    leads to another root.
    """
    _check_index(index, size)
    _check_hash("root", root)
    calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if calculated != root:
        raise RootMismatch(root, calculated)


def root_from_consistency_proof(m: int, n: int, proof: Sequence[bytes], root_m: bytes) -> bytes:
    """Check ``proof`` against the trusted ``root_m`` of the tree of size ``m`` and return
    the root it implies for the tree of size ``n`` (RFC 9162 §2.1.4.2 without the final
    comparison with the second root).

    Raises ``ProofError`` unless ``0 < m <= n <= MAX_TREE_SIZE``, ``root_m`` and every
    proof hash are ``HASH_SIZE`` bytes and ``len(proof) == consistency_proof_length(m,
    n)`` (so ``m == n`` needs an empty proof); raises ``RootMismatch(root_m,
    calculated)`` if the proof does not lead back to ``root_m``.
    """
    _check_consistency_sizes(m, n)
    _check_hash("root_m", root_m)
    if m == n:
        _check_proof(proof, 0)
        return root_m
    start, inner, border, shift = _consistency_shape(m, n)
    _check_proof(proof, start + inner + border)
    # ``seed`` is the root of the largest perfect subtree ending at m; walk its
    # inclusion path in tree n.  Left siblings rebuild root_m, all siblings root_n.
    seed = proof[0] if start else root_m
    path_bits = (m - 1) >> shift
    h_m = h_n = seed
    for k in range(start, start + inner):
        p = proof[k]
        if (path_bits >> (k - start)) & 1:
            h_m = _sha256(NODE_PREFIX + p + h_m).digest()
            h_n = _sha256(NODE_PREFIX + p + h_n).digest()
        else:
            h_n = _sha256(NODE_PREFIX + h_n + p).digest()
    for k in range(start + inner, start + inner + border):
        p = proof[k]
        h_m = _sha256(NODE_PREFIX + p + h_m).digest()
        h_n = _sha256(NODE_PREFIX + p + h_n).digest()
    if h_m != root_m:
        raise RootMismatch(root_m, h_m)
    return h_n


def verify_consistency(m: int, n: int, proof: Sequence[bytes], root_m: bytes, root_n: bytes) -> None:
    """Check that the tree of size ``n`` with root ``root_n`` extends the tree of size ``m``
    with root ``root_m`` (RFC 9162 §2.1.4.2).  Returns ``None`` on success.

    Requires ``0 < m <= n``; ``m == n`` requires an empty proof and equal roots.  Raises
    ``ProofError`` for structural problems (sizes, hash lengths, proof length), checked
    before any hashing, and ``RootMismatch(expected, calculated)`` when the proof does
    not lead to ``root_m`` or to ``root_n``.
    """
    _check_consistency_sizes(m, n)
    _check_hash("root_m", root_m)
    _check_hash("root_n", root_n)
    calculated = root_from_consistency_proof(m, n, proof, root_m)
    if calculated != root_n:
        raise RootMismatch(root_n, calculated)


# --------------------------------------------------------------------------- multiproofs
#
# A multiproof of the leaves at ``indexes`` (a non-empty set) in the tree of ``size``
# leaves is defined by one recursion over the RFC 9162 tree shape:
#
#     root(lo, hi) = the next proof hash                 if no proven leaf lies in [lo, hi)
#                  = leaf_hash(leaf)                     if hi - lo == 1 (a proven leaf)
#                  = node_hash(root(lo, lo + k), root(lo + k, hi))
#                                                        k = largest power of two < hi - lo
#
# evaluated left to right from root(0, size).  The proof is exactly the hashes that
# recursion consumes, in that order; a verifier requires every one to be consumed, no
# more and no fewer.  For one index it holds the inclusion proof's hashes, in tree
# order (left to right) rather than bottom up.


def _split(width: int) -> int:
    # the largest power of two smaller than ``width`` (>= 2)
    return 1 << ((width - 1).bit_length() - 1)


def _check_multi_indexes(indexes: Sequence[int], size: int) -> None:
    _check_size("size", size)
    if not indexes:
        raise ProofError("a multiproof proves at least one leaf")
    prev = -1
    for index in indexes:
        _check_size("index", index)
        if index <= prev:
            raise ProofError("multiproof indexes must be strictly ascending")
        if index >= size:
            raise ProofError(f"index {index} is not below tree size {size}")
        prev = index


def _multi_walk(indexes: Sequence[int], size: int, visit_empty: Callable[[int, int], None]) -> None:
    # Calls visit_empty(lo, hi) for every maximal subtree holding no proven leaf, left to
    # right.  Recursion depth is at most 64; work is O(len(indexes) * log size).
    def walk(lo: int, hi: int, a: int, b: int) -> None:
        if a == b:
            visit_empty(lo, hi)
            return
        if hi - lo == 1:
            return
        mid = lo + _split(hi - lo)
        m = a
        while m < b and indexes[m] < mid:
            m += 1
        walk(lo, mid, a, m)
        walk(mid, hi, m, b)

    walk(0, size, 0, len(indexes))


def multiproof_plan(indexes: Sequence[int], size: int) -> list[LeafRange]:
    """The leaf ranges whose hashes make the multiproof of ``indexes`` in a tree of
    ``size`` leaves, in proof order (see above).  Touches no store.

    Raises ``ProofError`` unless ``indexes`` is non-empty, strictly ascending and every
    index is below ``size <= MAX_TREE_SIZE``.
    """
    _check_multi_indexes(indexes, size)
    plan: list[LeafRange] = []
    _multi_walk(indexes, size, lambda lo, hi: plan.append((lo, hi)))
    return plan


def multiproof_length(indexes: Sequence[int], size: int) -> int:
    """The exact number of hashes in the multiproof of ``indexes`` in ``size`` leaves.

    Raises ``ProofError`` as :func:`multiproof_plan` does.
    """
    return len(multiproof_plan(indexes, size))


def multiproof(indexes: Sequence[int], size: int, get_node: GetNode) -> list[bytes]:
    """The multiproof of the leaves at ``indexes`` in the tree of ``size`` leaves, with
    at most 64 reads per hash.

    Raises ``ProofError`` as :func:`multiproof_plan` does and ``StorageError`` for a
    malformed stored hash.
    """
    return [range_hash(begin, end, get_node) for begin, end in multiproof_plan(indexes, size)]


def root_from_multiproof(leaf_hashes: Mapping[int, bytes], size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` implies for the leaves ``{index: leaf_hash}`` in a tree of
    ``size`` leaves.

    Checks all structure before hashing; raises ``ProofError`` unless there is at least
    one leaf, every index is an int below ``size <= MAX_TREE_SIZE``, every leaf hash and
    proof hash is ``HASH_SIZE`` bytes and ``len(proof) == multiproof_length(indexes,
    size)`` (every proof hash is consumed, none is missing).
    """
    indexes = sorted(leaf_hashes) if all(type(i) is int for i in leaf_hashes) else list(leaf_hashes)
    _check_multi_indexes(indexes, size)
    for index in indexes:
        _check_hash(f"leaf_hash[{index}]", leaf_hashes[index])
    _check_proof(proof, multiproof_length(indexes, size))
    pos = 0

    def walk(lo: int, hi: int, a: int, b: int) -> bytes:
        nonlocal pos
        if a == b:
            pos += 1
            return proof[pos - 1]
        if hi - lo == 1:
            return leaf_hashes[lo]
        mid = lo + _split(hi - lo)
        m = a
        while m < b and indexes[m] < mid:
            m += 1
        left = walk(lo, mid, a, m)
        return _sha256(NODE_PREFIX + left + walk(mid, hi, m, b)).digest()

    root = walk(0, size, 0, len(indexes))
    if pos != len(proof):  # pragma: no cover - the length was checked above
        raise ProofError("the multiproof was not consumed exactly")
    return root


def verify_multiproof(leaf_hashes: Mapping[int, bytes], size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``proof`` shows every leaf of ``{index: leaf_hash}`` in the tree of
    ``size`` leaves with root ``root``.  Returns ``None`` on success.

    Raises ``ProofError`` for any structural problem (see :func:`root_from_multiproof`;
    also a ``root`` that is not ``HASH_SIZE`` bytes), checked before any hashing, and
    ``RootMismatch(root, calculated)`` when the proof leads to another root.
    """
    _check_hash("root", root)
    calculated = root_from_multiproof(leaf_hashes, size, proof)
    if calculated != root:
        raise RootMismatch(root, calculated)
