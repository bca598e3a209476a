"""The recall map (ledger/recallmap.py): roots, proofs, and that only the canonical proof verifies."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import recallmap as R
from ledger.errors import ProofError, RootMismatch, VerificationError
from ledger.merkle import leaf_hash


def _h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _reference_root(entries: dict[str, bytes]) -> bytes:
    """The definition in docs/label-proof.md, written out as plainly as possible."""
    items = [(R.key_of(k), v) for k, v in entries.items()]

    def bit(key: bytes, d: int) -> int:
        return (key[d // 8] >> (7 - d % 8)) & 1

    def tree(s: list[tuple[bytes, bytes]], d: int) -> bytes:
        if not s:
            return bytes(32)
        if len(s) == 1:
            return _h(b"\x00" + s[0][0] + s[0][1])
        return _h(b"\x01" + tree([x for x in s if not bit(x[0], d)], d + 1)
                  + tree([x for x in s if bit(x[0], d)], d + 1))

    return tree(items, 0)


def _entries(n: int, seed: int = 1) -> dict[str, bytes]:
    rnd = random.Random(seed)
    return {f"L{rnd.randrange(10**9):09d}": rnd.randbytes(32) for _ in range(n)}


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 300])
def test_the_root_is_the_documented_tree_and_every_label_proves(n: int) -> None:
    entries = _entries(n, seed=n)
    tree = R.RecallTree(entries)
    assert tree.root == _reference_root(entries)
    for label, value in entries.items():
        p = tree.prove(label)
        assert p.other is None
        R.check_proof(p, label, value, tree.root)
        with pytest.raises(VerificationError):  # present: an absence proof cannot be made of it
            R.check_proof(p, label, None, tree.root)
        with pytest.raises(RootMismatch):
            R.check_proof(p, label, bytes(31) + b"\x01", tree.root)
    for k in range(50):
        label = f"absent-{k}"
        p = tree.prove(label)
        R.check_proof(p, label, None, tree.root)
        with pytest.raises(VerificationError):
            R.check_proof(p, label, b"\x07" * 32, tree.root)


def test_an_empty_map_has_the_zero_root_and_a_depth_0_proof() -> None:
    tree = R.RecallTree({})
    assert tree.root == bytes(32)
    p = tree.prove("anything")
    assert (p.depth, p.mask, p.siblings, p.other) == (0, b"", (), None)
    R.check_proof(p, "anything", None, tree.root)


def test_vectors_in_the_docs_hold() -> None:
    """The values docs/label-proof.md quotes for implementers of other verifiers."""
    leaf = b"example recall leaf"
    v1 = R.chain_step(None, leaf)
    assert v1 == _h(b"\x02" + bytes(32) + leaf_hash(leaf))
    entries = {"L2018000001": v1, "L2018000002": R.chain_step(v1, leaf), "L2018000003": v1}
    tree = R.RecallTree(entries)
    assert R.key_of("L2018000001").hex() == hashlib.sha256(b"lambtrace/recall-key/v1L2018000001").hexdigest()
    assert tree.root.hex() == _reference_root(entries).hex()
    doc = (Path(__file__).resolve().parent.parent / "docs" / "label-proof.md").read_text(encoding="utf-8")
    for v in (R.key_of("L2018000001").hex(), v1.hex(), tree.root.hex()):
        assert v in doc, v


def _mutations(p: R.Proof) -> list[R.Proof]:
    out = []
    d = p.depth
    nb = len(p.mask)
    # one level deeper with an empty sibling (the pad bit becomes a real 0 bit)
    out.append(R.Proof(d + 1, p.mask if (d + 1 + 7) // 8 == nb else p.mask + b"\x00", p.siblings, p.other))
    if d:
        out.append(R.Proof(d - 1, p.mask[: (d - 1 + 7) // 8], p.siblings, p.other))
    for i in range(len(p.mask)):
        for b in range(8):
            m = bytearray(p.mask)
            m[i] ^= 1 << b
            out.append(R.Proof(d, bytes(m), p.siblings, p.other))
    for i in range(len(p.siblings)):
        s = list(p.siblings)
        s[i] = bytes([s[i][0] ^ 1]) + s[i][1:]
        out.append(R.Proof(d, p.mask, tuple(s), p.other))
        out.append(R.Proof(d, p.mask, tuple(s[:i] + s[i + 1:]), p.other))
        out.append(R.Proof(d, p.mask, (*s[:i], bytes(32), *s[i:]), p.other))
    if len(p.siblings) > 1:
        out.append(R.Proof(d, p.mask, tuple(reversed(p.siblings)), p.other))
    if p.other is not None:
        k, v = p.other
        out.append(R.Proof(d, p.mask, p.siblings, None))
        out.append(R.Proof(d, p.mask, p.siblings, (k, bytes([v[0] ^ 1]) + v[1:])))
        out.append(R.Proof(d, p.mask, p.siblings, (bytes([k[0] ^ 0x80]) + k[1:], v)))
    else:
        out.append(R.Proof(d, p.mask, p.siblings, (b"\x01" * 32, b"\x02" * 32)))
    return [m for m in out if m != p]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), seed=st.integers(0, 10**6), probe=st.text(min_size=1, max_size=12))
def test_only_the_canonical_proof_verifies(n: int, seed: int, probe: str) -> None:
    entries = _entries(n, seed)
    tree = R.RecallTree(entries)
    labels = [*list(entries)[:3], probe]
    for label in labels:
        value = entries.get(label)
        p = tree.prove(label)
        R.check_proof(p, label, value, tree.root)
        for bad in _mutations(p):
            with pytest.raises(VerificationError):
                R.check_proof(bad, label, value, tree.root)
                # shape errors are ProofError, a wrong path RootMismatch: both are VerificationError


def test_a_proof_round_trips_through_its_bundle_value_and_shapes_are_checked() -> None:
    tree = R.RecallTree(_entries(50))
    p = next(q for q in (tree.prove(f"nope-{k}") for k in range(1000)) if q.other is not None)
    assert R.proof_from_value(p.to_value()) == p
    empty_end = next(q for q in (tree.prove(f"nope-{k}") for k in range(1000)) if q.other is None)
    assert empty_end.to_value()["other"] == b"" and R.proof_from_value(empty_end.to_value()) == empty_end
    good = p.to_value()
    assert p.other is not None and len(good["other"]) == 64 and len(good["siblings"]) == 32 * len(p.siblings)
    held = tree.prove(next(iter(_entries(50))))
    assert held.other is None and held.to_value()["other"] == b"" and R.proof_from_value(held.to_value()) == held
    bad: object
    for bad in (
        None, [], {**good, "x": 1}, {k: v for k, v in good.items() if k != "other"},
        {**good, "depth": -1}, {**good, "depth": 257}, {**good, "depth": True}, {**good, "depth": 1.0},
        {**good, "mask": "00"}, {**good, "mask": good["mask"] + b"\x00"},
        {**good, "siblings": [b"\x01" * 32]}, {**good, "siblings": "x"},
        {**good, "siblings": good["siblings"] + b"\x01"},
        {**good, "siblings": good["siblings"][:-1]}, {**good, "siblings": b"\x01" * 32 * 257},
        {**good, "other": [b"\x01" * 32, b"\x02" * 32]}, {**good, "other": None}, {**good, "other": b"\x01" * 32},
        {**good, "other": good["other"] + b"\x00"}, {**good, "other": good["other"][:-1]},
    ):
        with pytest.raises(ProofError):
            R.proof_from_value(bad)


def test_the_block_root_follows_recalls_and_stays_between_them() -> None:
    from ledger.genesis import Params
    from ledger.state import MemoryState, StateView

    class G:
        params = Params(state_root=R.KIND)

    class Off:
        params = Params()

    base = MemoryState()
    view = StateView(base)
    assert R.finish_block(view, Off()) is None
    assert R.finish_block(view, G()) == bytes(32)
    R.record_recall(view, ["L1", "L2", "L1"], b"recall one")
    root = R.finish_block(view, G())
    assert root == R.root_of({"L1": R.chain_step(None, b"recall one"), "L2": R.chain_step(None, b"recall one")})
    base.apply(view)
    later = StateView(base)
    assert R.finish_block(later, G()) == root and not later.writes  # a block without recalls writes nothing
    R.record_recall(later, ["L2"], b"recall two")
    assert R.finish_block(later, G()) == R.root_of({
        "L1": R.chain_step(None, b"recall one"),
        "L2": R.chain_step(R.chain_step(None, b"recall one"), b"recall two"),
    })
    assert R.chain_of([b"recall one", b"recall two"]) == R.chain_step(R.chain_step(None, b"recall one"), b"recall two")
    assert R.chain_of([]) is None
    assert R.size_in(later) == 2 and R.value_in(later, "L3") is None


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 120), batches=st.integers(1, 6))
def test_the_tree_kept_in_state_is_the_documented_tree(seed: int, n: int, batches: int) -> None:
    """Recalls applied path by path to the nodes in state (over several blocks, labels
    recalled again, batches) give the root and every proof the whole-map tree gives,
    and touch only the nodes on the recalled labels' paths."""
    from ledger.state import MemoryState, StateView

    rnd = random.Random(seed)
    labels = [f"l-{rnd.randrange(10**6):06d}" for _ in range(n)]
    base = MemoryState()
    want: dict[str, bytes] = {}
    for b in range(batches):
        view = StateView(base)
        for k in range(rnd.randint(1, 4)):
            touched = rnd.sample(labels, rnd.randint(1, min(len(labels), 30)))
            leaf = f"recall {b}.{k}".encode()
            R.record_recall(view, touched, leaf)
            for label in dict.fromkeys(touched):
                want[label] = R.chain_step(want.get(label), leaf)
        assert all(key.startswith(("m/n/", "m/size")) for key in view.writes)
        base.apply(view)
        tree = R.RecallTree(want)
        assert R.root_in(base) == tree.root
        assert R.size_in(base) == len(want)
        for label in [*rnd.sample(labels, min(8, len(labels))), "never-recalled", "l-x"]:
            assert R.value_in(base, label) == want.get(label)
            assert R.prove_in(base, label) == tree.prove(label)
            R.check_proof(R.prove_in(base, label), label, want.get(label), tree.root)
