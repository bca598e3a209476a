"""ledger.merkle against a naive recursive RFC 9162 §2.1 reference, plus property tests.

The reference (``ref_mth``, ``ref_path``, ``ref_proof``) is transcribed straight from the
RFC's recursive definitions and shares no code with the module under test.  Stores are
plain dicts filled from ``CompactRange.append``; readers refuse any node that is not
complete within the tree size being asked about, as the real store will.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.errors import ProofError, RootMismatch, StorageError, VerificationError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_TREE_SIZE,
    CompactRange,
    consistency_plan,
    consistency_proof,
    consistency_proof_length,
    inclusion_plan,
    inclusion_proof,
    inclusion_proof_length,
    leaf_hash,
    node_hash,
    plan_nodes,
    proof_from_nodes,
    range_hash,
    range_nodes,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    root_from_store,
    verify_consistency,
    verify_inclusion,
)

NodeID = tuple[int, int]
Store = dict[NodeID, bytes]


# --------------------------------------------------------------------------- reference


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH(D[n])."""
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + d[0])
    k = _split(n)
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n])."""
    n = len(d)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""

    def subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if b else [ref_mth(d)]
        k = _split(n)
        if m <= k:
            return [*subproof(m, d[:k], b), ref_mth(d[k:])]
        return [*subproof(m - k, d[k:], False), ref_mth(d[:k])]

    return subproof(m, d, True)


# --------------------------------------------------------------------------- helpers


def leaves_of(count: int, salt: bytes = b"") -> list[bytes]:
    """Distinct leaf payloads (the index is part of each)."""
    return [salt + i.to_bytes(4, "big") + b"lamb" * (i % 3) for i in range(count)]


def build(leaves: Sequence[bytes]) -> tuple[CompactRange, Store]:
    cr = CompactRange()
    store: Store = {}
    for data in leaves:
        for level, index, h in cr.append(leaf_hash(data)):
            assert (level, index) not in store
            store[(level, index)] = h
    return cr, store


def reader(store: Store, size: int, calls: list[NodeID] | None = None) -> Callable[[int, int], bytes]:
    """A get_node that, like the real store, only answers for complete nodes within size."""

    def get_node(level: int, index: int) -> bytes:
        assert level >= 0 and index >= 0
        assert (index + 1) << level <= size, f"read of node ({level}, {index}) beyond size {size}"
        if calls is not None:
            calls.append((level, index))
        return store[(level, index)]

    return get_node


REF_LEAVES = leaves_of(70)
REF_CR, REF_STORE = build(REF_LEAVES)
REF_ROOTS = [ref_mth(REF_LEAVES[:n]) for n in range(71)]


# --------------------------------------------------------------------------- hasher


def test_hasher_primitives() -> None:
    assert HASH_SIZE == 32
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert leaf_hash(b"") == bytes.fromhex("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


# --------------------------------------------------------------------------- reference cross-check


def test_compact_range_roots_match_reference() -> None:
    cr = CompactRange()
    assert cr.root() == EMPTY_ROOT == REF_ROOTS[0]
    for n, data in enumerate(REF_LEAVES, start=1):
        created = cr.append(leaf_hash(data))
        assert cr.size == n
        assert len(cr.hashes) == n.bit_count()
        assert cr.root() == REF_ROOTS[n]
        # Exactly the complete nodes that end at leaf n - 1, in increasing level.
        want = [(lvl, (n >> lvl) - 1) for lvl in range((n & -n).bit_length())]
        assert [(lvl, idx) for lvl, idx, _ in created] == want
        assert created[0] == (0, n - 1, leaf_hash(data))
        for lvl, idx, h in created:
            assert h == ref_mth(REF_LEAVES[idx << lvl : (idx + 1) << lvl])


def test_root_from_store_and_from_store_round_trip() -> None:
    assert root_from_store(0, reader(REF_STORE, 0)) == EMPTY_ROOT
    assert CompactRange.from_store(0, reader(REF_STORE, 0)).root() == EMPTY_ROOT
    for n in range(1, 71):
        get = reader(REF_STORE, n)
        assert root_from_store(n, get) == REF_ROOTS[n]
        loaded = CompactRange.from_store(n, get)
        incremental, _ = build(REF_LEAVES[:n])
        assert loaded.size == n
        assert loaded.hashes == incremental.hashes
        assert loaded.root() == REF_ROOTS[n]
        # Appending to a loaded range yields the same nodes the store already holds.
        if n < 70:
            for lvl, idx, h in loaded.copy().append(leaf_hash(REF_LEAVES[n])):
                assert REF_STORE[(lvl, idx)] == h


def test_range_hash_matches_reference_for_every_subtree() -> None:
    for n in range(1, 41):
        get = reader(REF_STORE, n)
        for begin in range(n):
            for end in range(begin + 1, n + 1):
                width = end - begin
                aligned = begin % (1 << (width - 1).bit_length()) == 0
                if aligned:
                    assert range_hash(begin, end, get) == ref_mth(REF_LEAVES[begin:end])
                else:
                    with pytest.raises(ValueError):
                        range_hash(begin, end, get)


def test_inclusion_matches_reference_for_all_sizes_and_indices() -> None:
    for n in range(1, 71):
        get = reader(REF_STORE, n)
        d = REF_LEAVES[:n]
        root = REF_ROOTS[n]
        for i in range(n):
            want = ref_path(i, d)
            plan = inclusion_plan(i, n)
            assert len(plan) == len(want) == inclusion_proof_length(i, n)
            assert [ref_mth(REF_LEAVES[b:e]) for b, e in plan] == want
            proof = inclusion_proof(i, n, get)
            assert proof == want
            assert proof_from_nodes(plan, [get(*node) for node in plan_nodes(plan)]) == want
            lh = leaf_hash(d[i])
            assert root_from_inclusion_proof(lh, i, n, proof) == root
            verify_inclusion(lh, i, n, proof, root)


def test_consistency_matches_reference_for_all_pairs() -> None:
    for n in range(1, 41):
        get = reader(REF_STORE, n)
        d = REF_LEAVES[:n]
        for m in range(1, n + 1):
            want = ref_proof(m, d)
            plan = consistency_plan(m, n)
            assert len(plan) == len(want) == consistency_proof_length(m, n)
            assert [ref_mth(REF_LEAVES[b:e]) for b, e in plan] == want
            proof = consistency_proof(m, n, get)
            assert proof == want
            assert proof_from_nodes(plan, [get(*node) for node in plan_nodes(plan)]) == want
            assert root_from_consistency_proof(m, n, proof, REF_ROOTS[m]) == REF_ROOTS[n]
            verify_consistency(m, n, proof, REF_ROOTS[m], REF_ROOTS[n])


# --------------------------------------------------------------------------- misuse and edges


def test_compact_range_validation() -> None:
    with pytest.raises(ValueError):
        CompactRange(-1)
    with pytest.raises(ValueError):
        CompactRange(MAX_TREE_SIZE + 1, [b"\x00" * 32] * 65)
    with pytest.raises(ValueError):
        CompactRange(3, [b"\x00" * 32])
    with pytest.raises(ValueError):
        CompactRange(1, [b"\x00" * 31])
    with pytest.raises(ValueError):
        CompactRange().append(b"short")
    full = CompactRange(MAX_TREE_SIZE, [b"\x00" * 32] * 64)
    with pytest.raises(ValueError):
        full.append(b"\x00" * 32)
    with pytest.raises(ValueError):
        CompactRange.from_store(-1, reader(REF_STORE, 0))
    with pytest.raises(ValueError):
        root_from_store(-1, reader(REF_STORE, 0))


def test_copy_is_independent() -> None:
    a, _ = build(REF_LEAVES[:5])
    b = a.copy()
    b.append(leaf_hash(b"x"))
    assert (a.size, len(a.hashes)) == (5, 2)
    assert b.size == 6
    assert "size=5" in repr(a)


def test_range_nodes() -> None:
    assert range_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert range_nodes(8, 12) == [(2, 2)]
    assert range_nodes(8, 11) == [(1, 4), (0, 10)]
    for begin, end in [(0, 0), (3, 2), (-1, 1), (1, 3), (4, 9), (2, 5)]:
        with pytest.raises(ValueError):
            range_nodes(begin, end)


def test_malformed_store_answers_are_storage_errors() -> None:
    with pytest.raises(StorageError):
        root_from_store(3, lambda level, index: b"\x00" * 31)
    with pytest.raises(StorageError):
        inclusion_proof(0, 3, lambda level, index: "not bytes")  # type: ignore[arg-type,return-value]
    with pytest.raises(StorageError):
        proof_from_nodes([(0, 1)], [b"x"])
    with pytest.raises(ValueError):
        proof_from_nodes([(0, 1)], [])
    with pytest.raises(ValueError):
        proof_from_nodes([(0, 1)], [b"\x00" * 32] * 2)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 3), (-1, 4), (0, MAX_TREE_SIZE + 1)])
def test_inclusion_bad_arguments(index: int, size: int) -> None:
    get = reader(REF_STORE, 70)
    for call in (
        lambda: inclusion_plan(index, size),
        lambda: inclusion_proof(index, size, get),
        lambda: inclusion_proof_length(index, size),
        lambda: root_from_inclusion_proof(leaf_hash(b""), index, size, []),
        lambda: verify_inclusion(leaf_hash(b""), index, size, [], EMPTY_ROOT),
    ):
        with pytest.raises(ProofError):
            call()


@pytest.mark.parametrize(("m", "n"), [(0, 0), (0, 5), (6, 5), (-1, 3), (1, MAX_TREE_SIZE + 1)])
def test_consistency_bad_arguments(m: int, n: int) -> None:
    get = reader(REF_STORE, 70)
    root = REF_ROOTS[1]
    for call in (
        lambda: consistency_plan(m, n),
        lambda: consistency_proof(m, n, get),
        lambda: consistency_proof_length(m, n),
        lambda: root_from_consistency_proof(m, n, [], root),
        lambda: verify_consistency(m, n, [], root, root),
    ):
        with pytest.raises(ProofError):
            call()


def test_non_int_sizes_are_proof_errors() -> None:
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b""), True, 2, [b"\x00" * 32], EMPTY_ROOT)  # bool is not a size
    with pytest.raises(ProofError):
        verify_consistency(1, 2.0, [b"\x00" * 32], EMPTY_ROOT, EMPTY_ROOT)  # type: ignore[arg-type]


def test_equal_sizes() -> None:
    r = REF_ROOTS[5]
    verify_consistency(5, 5, [], r, r)
    with pytest.raises(ProofError):
        verify_consistency(5, 5, [r], r, r)
    with pytest.raises(RootMismatch) as exc:
        verify_consistency(5, 5, [], r, REF_ROOTS[4])
    assert exc.value.expected == REF_ROOTS[4]
    assert exc.value.calculated == r


def test_root_mismatch_carries_both_roots() -> None:
    proof = inclusion_proof(3, 9, reader(REF_STORE, 9))
    with pytest.raises(RootMismatch) as exc:
        verify_inclusion(leaf_hash(REF_LEAVES[3]), 3, 9, proof, REF_ROOTS[8])
    assert exc.value.expected == REF_ROOTS[8]
    assert exc.value.calculated == REF_ROOTS[9]
    assert exc.value.code == "root_mismatch"


def test_structure_is_checked_before_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.merkle as merkle

    def no_hashing(*_: object) -> object:
        raise AssertionError("hashed before the structure was checked")

    proof = inclusion_proof(3, 9, reader(REF_STORE, 9))
    cproof = consistency_proof(3, 9, reader(REF_STORE, 9))
    lh = leaf_hash(REF_LEAVES[3])
    monkeypatch.setattr(merkle, "_sha256", no_hashing)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(lh, 3, 9, [*proof, proof[0]], REF_ROOTS[9])
    with pytest.raises(ProofError):
        merkle.verify_inclusion(lh, 3, 9, [*proof[:-1], proof[-1][:31]], REF_ROOTS[9])
    with pytest.raises(ProofError):
        merkle.verify_inclusion(lh, 3, 9, proof, REF_ROOTS[9][:31])
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 9, cproof[:-1], REF_ROOTS[3], REF_ROOTS[9])
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 9, cproof, REF_ROOTS[3], b"")


# --------------------------------------------------------------------------- O(log n) reads


def test_reads_are_logarithmic_on_a_100k_tree() -> None:
    total = 100_000
    leaves = [i.to_bytes(4, "big") for i in range(total)]
    _, store = build(leaves)
    for n in (total, total - 1, 65_537, 65_536, 99_999 - 2**15):
        bound = 4 * math.log2(n)
        calls: list[tuple[int, int]] = []
        get = reader(store, n, calls)
        root = root_from_store(n, get)
        assert len(calls) <= bound
        cr = CompactRange.from_store(n, get)
        assert cr.root() == root
        indices = {0, 1, n // 2, n - 2, n - 1, 12_345 % n, 65_535 % n}
        for i in indices:
            calls.clear()
            proof = inclusion_proof(i, n, get)
            assert len(calls) <= bound, (i, n, len(calls))
            verify_inclusion(leaf_hash(leaves[i]), i, n, proof, root)
        for m in (1, 2, 3, n // 3, n // 2, 65_535, n - 1, n):
            if not 0 < m <= n:
                continue
            calls.clear()
            proof = consistency_proof(m, n, get)
            assert len(calls) <= bound, (m, n, len(calls))
            verify_consistency(m, n, proof, root_from_store(m, reader(store, m)), root)


# --------------------------------------------------------------------------- property tests

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HASHES = st.binary(min_size=32, max_size=32)
# Sizes beyond the generated tree for which no genuine root exists: only ones that are
# structurally impossible, because the root alone binds the size (see
# test_size_is_bound_only_through_the_root).
BEYOND = [MAX_TREE_SIZE + 1, 2**70]


Tree = tuple[list[bytes], Store]


@st.composite
def trees(draw: st.DrawFn, max_leaves: int = 300) -> Tree:
    count = draw(st.integers(1, max_leaves))
    salt = draw(st.binary(max_size=8))
    leaves = leaves_of(count, salt)
    return leaves, build(leaves)[1]


def other_than(value: bytes) -> st.SearchStrategy[bytes]:
    """Any hash, or bytes of a wrong length, except ``value``."""
    return st.one_of(HASHES, st.binary(max_size=40)).filter(lambda v: v != value)


def other_size(total: int, size: int) -> st.SearchStrategy[int]:
    """Any size in [-1, total] or beyond 2**64, except ``size``."""
    return st.one_of(st.integers(-1, total), st.sampled_from(BEYOND)).filter(lambda v: v != size)


def _expect_rejected(call: Callable[[], None], genuine: bool) -> None:
    """A mutation must be rejected unless the mutated statement is itself true."""
    if genuine:
        call()
    else:
        with pytest.raises(VerificationError):
            call()


@PROPS
@given(tree=trees(), data=st.data())
def test_prop_inclusion_round_trip(tree: Tree, data: st.DataObject) -> None:
    leaves, store = tree
    n = data.draw(st.integers(1, len(leaves)), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    get = reader(store, n)
    root = root_from_store(n, get)
    proof = inclusion_proof(i, n, get)
    assert len(proof) == inclusion_proof_length(i, n) <= 64
    verify_inclusion(leaf_hash(leaves[i]), i, n, proof, root)
    assert (
        root_from_inclusion_proof(leaf_hash(leaves[i]), i, n, proof)
        == root
        == CompactRange.from_store(n, get).root()
    )


@PROPS
@given(tree=trees(), data=st.data())
def test_prop_inclusion_mutations_fail(tree: Tree, data: st.DataObject) -> None:
    leaves, store = tree
    total = len(leaves)
    n = data.draw(st.integers(1, total), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    root = root_from_store(n, reader(store, n))
    proof = inclusion_proof(i, n, reader(store, n))
    lh = leaf_hash(leaves[i])
    kinds = ["index", "size", "leaf", "root", "insert", "truncate_root"]
    if proof:
        kinds += ["flip", "drop", "truncate_node", "swap"]
    kind = data.draw(st.sampled_from(kinds), label="kind")
    args: tuple[bytes, int, int, list[bytes], bytes] = (lh, i, n, list(proof), root)
    genuine = False
    if kind == "flip":
        k = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
        bad = bytearray(proof[k])
        bad[bit // 8] ^= 1 << (bit % 8)
        args = (lh, i, n, [*proof[:k], bytes(bad), *proof[k + 1 :]], root)
    elif kind == "drop":
        k = data.draw(st.integers(0, len(proof) - 1))
        args = (lh, i, n, proof[:k] + proof[k + 1 :], root)
    elif kind == "insert":
        k = data.draw(st.integers(0, len(proof)))
        extra = data.draw(st.one_of(HASHES, st.sampled_from([root, lh, EMPTY_ROOT, *proof])))
        args = (lh, i, n, [*proof[:k], extra, *proof[k:]], root)
    elif kind == "truncate_node":
        k = data.draw(st.integers(0, len(proof) - 1))
        args = (lh, i, n, [*proof[:k], proof[k][:-1], *proof[k + 1 :]], root)
    elif kind == "swap":
        k = data.draw(st.integers(0, len(proof) - 1))
        j = data.draw(st.integers(0, len(proof) - 1))
        swapped = list(proof)
        swapped[k], swapped[j] = swapped[j], swapped[k]
        genuine = swapped == proof
        args = (lh, i, n, swapped, root)
    elif kind == "index":
        # Leaves are distinct, so another index can never be proven with this leaf.
        i2 = data.draw(st.integers(-2, 2 * total + 2).filter(lambda v: v != i))
        args = (lh, i2, n, proof, root)
    elif kind == "size":
        # The root binds the size: pair the other size with its genuine root.  The
        # statement is then true only if this very proof is that size's proof.
        n2 = data.draw(other_size(total, n))
        root2 = root
        if 1 <= n2 <= total:
            root2 = root_from_store(n2, reader(store, n2))
            genuine = i < n2 and inclusion_proof(i, n2, reader(store, n2)) == proof
        args = (lh, i, n2, proof, root2)
    elif kind == "leaf":
        args = (data.draw(other_than(lh)), i, n, proof, root)
    elif kind == "root":
        args = (lh, i, n, proof, data.draw(other_than(root)))
    elif kind == "truncate_root":
        args = (lh, i, n, proof, root[:-1])
    _expect_rejected(lambda: verify_inclusion(*args), genuine)


@PROPS
@given(tree=trees(), data=st.data())
def test_prop_consistency_round_trip(tree: Tree, data: st.DataObject) -> None:
    leaves, store = tree
    n = data.draw(st.integers(1, len(leaves)), label="n")
    m = data.draw(st.integers(1, n), label="m")
    root_m = root_from_store(m, reader(store, m))
    root_n = root_from_store(n, reader(store, n))
    proof = consistency_proof(m, n, reader(store, n))
    assert len(proof) == consistency_proof_length(m, n) <= 64
    verify_consistency(m, n, proof, root_m, root_n)
    assert root_from_consistency_proof(m, n, proof, root_m) == root_n


@PROPS
@given(tree=trees(), data=st.data())
def test_prop_consistency_mutations_fail(tree: Tree, data: st.DataObject) -> None:
    leaves, store = tree
    total = len(leaves)
    n = data.draw(st.integers(1, total), label="n")
    m = data.draw(st.integers(1, n), label="m")
    roots = {s: root_from_store(s, reader(store, s)) for s in {m, n}}
    root_m, root_n = roots[m], roots[n]
    proof = consistency_proof(m, n, reader(store, n))
    kinds = ["m", "n", "root_m", "root_n", "insert"]
    if proof:
        kinds += ["flip", "drop", "truncate_node", "swap_roots"]
    kind = data.draw(st.sampled_from(kinds), label="kind")
    args: tuple[int, int, list[bytes], bytes, bytes] = (m, n, list(proof), root_m, root_n)
    genuine = False
    if kind == "flip":
        k = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 8 * HASH_SIZE - 1))
        bad = bytearray(proof[k])
        bad[bit // 8] ^= 1 << (bit % 8)
        args = (m, n, [*proof[:k], bytes(bad), *proof[k + 1 :]], root_m, root_n)
    elif kind == "drop":
        k = data.draw(st.integers(0, len(proof) - 1))
        args = (m, n, proof[:k] + proof[k + 1 :], root_m, root_n)
    elif kind == "insert":
        k = data.draw(st.integers(0, len(proof)))
        extra = data.draw(st.one_of(HASHES, st.sampled_from([root_m, root_n, EMPTY_ROOT, *proof])))
        args = (m, n, [*proof[:k], extra, *proof[k:]], root_m, root_n)
    elif kind == "truncate_node":
        k = data.draw(st.integers(0, len(proof) - 1))
        args = (m, n, [*proof[:k], proof[k][:-1], *proof[k + 1 :]], root_m, root_n)
    elif kind == "swap_roots":
        args = (m, n, proof, root_n, root_m)
    elif kind in ("m", "n"):
        old = m if kind == "m" else n
        other = data.draw(other_size(total, old))
        m2, n2 = (other, n) if kind == "m" else (m, other)
        # Pair the other size with its genuine root where one exists.
        r_m = root_from_store(m2, reader(store, m2)) if 1 <= m2 <= total else root_m
        r_n = root_from_store(n2, reader(store, n2)) if 1 <= n2 <= total else root_n
        if 1 <= m2 <= n2 <= total:
            genuine = consistency_proof(m2, n2, reader(store, n2)) == proof
        args = (m2, n2, proof, r_m, r_n)
    elif kind == "root_m":
        args = (m, n, proof, data.draw(other_than(root_m)), root_n)
    elif kind == "root_n":
        args = (m, n, proof, root_m, data.draw(other_than(root_n)))
    _expect_rejected(lambda: verify_consistency(*args), genuine)


@PROPS
@given(tree=trees(max_leaves=64), data=st.data())
def test_prop_every_bit_of_an_inclusion_bundle_matters(tree: Tree, data: st.DataObject) -> None:
    """STYLE §5: flip each bit position chosen anywhere in (leaf hash, proof, root)."""
    leaves, store = tree
    n = data.draw(st.integers(1, len(leaves)))
    i = data.draw(st.integers(0, n - 1))
    get = reader(store, n)
    root = root_from_store(n, get)
    proof = inclusion_proof(i, n, get)
    blob = bytearray(leaf_hash(leaves[i]) + b"".join(proof) + root)
    bit = data.draw(st.integers(0, 8 * len(blob) - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    parts = [bytes(blob[k : k + HASH_SIZE]) for k in range(0, len(blob), HASH_SIZE)]
    with pytest.raises(RootMismatch):
        verify_inclusion(parts[0], i, n, parts[1:-1], parts[-1])


def test_size_is_bound_only_through_the_root() -> None:
    """Documented limitation (as in RFC 9162 and transparency-dev): a proof shows a leaf
    under a *root*; a size with the same proof shape and no root of its own is not
    detected.  Signed tree heads bind root and size together."""
    get = reader(REF_STORE, 4)
    proof = inclusion_proof(0, 4, get)
    verify_inclusion(leaf_hash(REF_LEAVES[0]), 0, 3, proof, REF_ROOTS[4])
    with pytest.raises(RootMismatch):
        verify_inclusion(leaf_hash(REF_LEAVES[0]), 0, 3, proof, REF_ROOTS[3])
    cproof = consistency_proof(2, 3, reader(REF_STORE, 3))
    verify_consistency(2, 4, cproof, REF_ROOTS[2], REF_ROOTS[3])
    with pytest.raises(RootMismatch):
        verify_consistency(2, 4, cproof, REF_ROOTS[2], REF_ROOTS[4])
