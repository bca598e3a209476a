"""ledger.merkle multiproofs (one proof for many leaves; docs/label-proof.md, format v2).

Cross-checked against two references that share no code with the module: a naive
recursion over the leaf list transcribed from the definition (``ref_multiproof``,
built on tests/test_merkle.py's ``ref_mth``), and the union of the leaves' RFC 9162
inclusion paths (``ref_path``) less the hashes a verifier can compute.  Then Hypothesis:
random trees and index sets round-trip, and every mutation — an extra hash, a missing
hash, a changed hash, swapped hashes, a moved, added or dropped index, a changed leaf —
fails.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_merkle import Store, _split, build, leaves_of, reader, ref_mth, ref_path

from ledger.errors import ProofError, RootMismatch, StorageError, VerificationError
from ledger.merkle import (
    HASH_SIZE,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    multiproof,
    multiproof_length,
    multiproof_plan,
    root_from_multiproof,
    root_from_store,
    verify_multiproof,
)

# --------------------------------------------------------------------------- references


def ref_multiproof(picks: set[int], d: Sequence[bytes], offset: int = 0) -> list[bytes]:
    """The definition, over the leaf list: a subtree with no picked leaf is one hash."""
    n = len(d)
    if not any(offset <= i < offset + n for i in picks):
        return [ref_mth(d)]
    if n == 1:
        return []
    k = _split(n)
    return [*ref_multiproof(picks, d[:k], offset), *ref_multiproof(picks, d[k:], offset + k)]


def ref_union_of_paths(picks: set[int], d: Sequence[bytes]) -> set[bytes]:
    """Every hash of every picked leaf's inclusion path, less those of subtrees that hold
    a picked leaf (the verifier computes them).  As a set: the order is the module's."""
    ranges = {r for i in picks for r in inclusion_plan(i, len(d))}
    computable = {ref_mth(d[b:e]) for b, e in ranges if any(b <= j < e for j in picks)}
    return {h for i in picks for h in ref_path(i, d)} - computable


LEAVES = leaves_of(70)
STORE: Store = build(LEAVES)[1]


def _proved(picks: Sequence[int], n: int, leaves: Sequence[bytes] = LEAVES) -> dict[int, bytes]:
    return {i: leaf_hash(leaves[i]) for i in picks}


# --------------------------------------------------------------------------- exhaustive, small


def test_matches_the_references_for_small_trees() -> None:
    for n in range(1, 12):
        d = LEAVES[:n]
        get = reader(STORE, n)
        root = root_from_store(n, get)
        assert root == ref_mth(d)
        for mask in range(1, 1 << n):
            picks = [i for i in range(n) if mask >> i & 1]
            proof = multiproof(picks, n, get)
            assert proof == ref_multiproof(set(picks), d), (n, picks)
            assert set(proof) == ref_union_of_paths(set(picks), d)
            assert len(proof) == multiproof_length(picks, n) == len(multiproof_plan(picks, n))
            assert root_from_multiproof(_proved(picks, n), n, proof) == root
            verify_multiproof(_proved(picks, n), n, proof, root)


def test_one_leaf_is_its_inclusion_proof_in_tree_order() -> None:
    for n in range(1, 70):
        get = reader(STORE, n)
        for i in range(n):
            path = inclusion_proof(i, n, get)
            multi = multiproof([i], n, get)
            assert sorted(multi) == sorted(path)
            # tree order: left siblings (deepest last) then right siblings (deepest first)
            plan = inclusion_plan(i, n)
            assert multiproof_plan([i], n) == sorted(plan)


def test_every_leaf_needs_no_hash_and_no_leaf_is_refused() -> None:
    n = 70
    get = reader(STORE, n)
    assert multiproof(list(range(n)), n, get) == []
    assert root_from_multiproof(_proved(range(n), n), n, []) == root_from_store(n, get)
    with pytest.raises(ProofError):
        multiproof([], n, get)
    with pytest.raises(ProofError):
        root_from_multiproof({}, n, [root_from_store(n, get)])


def test_shared_paths_are_sent_once() -> None:
    """Neighbouring leaves share most of their paths: the point of a multiproof."""
    n = 1_000_000
    picks = [500_000, 500_001, 500_003, 500_010]
    assert sum(len(inclusion_plan(i, n)) for i in picks) == 80
    assert multiproof_length(picks, n) == 21


@pytest.mark.parametrize(
    ("picks", "size"),
    [([0], 0), ([1], 1), ([3, 2], 5), ([2, 2], 5), ([-1], 5), ([5], 5), ([0], 2**64), ([1.0], 3), (["1"], 3)],
)
def test_bad_index_sets_are_proof_errors(picks: list[int], size: int) -> None:
    with pytest.raises(ProofError):
        multiproof_plan(picks, size)
    if len(set(picks)) == len(picks):
        with pytest.raises(ProofError):
            root_from_multiproof(dict.fromkeys(picks, bytes(32)), size, [bytes(32)] * 3)


def test_structure_is_checked_before_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    import ledger.merkle as M

    n = 20
    picks = [3, 9]
    proof = multiproof(picks, n, reader(STORE, n))
    good = _proved(picks, n)

    def no_hashing(*_: object) -> object:
        raise AssertionError("hashed before the structure was checked")

    monkeypatch.setattr(M, "_sha256", no_hashing)
    for leaves, p in [
        (good, [*proof, bytes(32)]),
        (good, proof[:-1]),
        (good, [*proof[:-1], b"short"]),
        ({**good, 9: b"short"}, proof),
        ({**good, 20: bytes(32)}, proof),
    ]:
        with pytest.raises(ProofError):
            root_from_multiproof(leaves, n, p)
    with pytest.raises(ProofError):
        verify_multiproof(good, n, proof, b"short root")


def test_root_mismatch_carries_both_roots() -> None:
    n = 33
    get = reader(STORE, n)
    proof = multiproof([1, 32], n, get)
    wrong = bytes(32)
    with pytest.raises(RootMismatch) as e:
        verify_multiproof(_proved([1, 32], n), n, proof, wrong)
    assert e.value.expected == wrong and e.value.calculated == root_from_store(n, get)


def test_malformed_store_answers_are_storage_errors() -> None:
    with pytest.raises(StorageError):
        multiproof([0], 4, lambda level, index: b"short")


# --------------------------------------------------------------------------- properties

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[bytes], Store, int, list[int]]:
    total = draw(st.integers(1, 300), label="leaves")
    leaves = leaves_of(total, draw(st.binary(max_size=8), label="salt"))
    n = draw(st.integers(1, total), label="size")
    picks = sorted(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=min(n, 40)), label="picks"))
    return leaves, build(leaves)[1], n, picks


@PROPS
@given(case=cases())
def test_prop_round_trip(case: tuple[list[bytes], Store, int, list[int]]) -> None:
    leaves, store, n, picks = case
    get = reader(store, n)
    proof = multiproof(picks, n, get)
    root = root_from_store(n, get)
    assert len(proof) == multiproof_length(picks, n) <= sum(len(inclusion_plan(i, n)) for i in picks)
    assert all(len(h) == HASH_SIZE for h in proof)
    verify_multiproof(_proved(picks, n, leaves), n, proof, root)
    assert proof == ref_multiproof(set(picks), leaves[:n])


@PROPS
@given(case=cases(), data=st.data())
def test_prop_every_mutation_fails(case: tuple[list[bytes], Store, int, list[int]], data: st.DataObject) -> None:
    leaves, store, n, picks = case
    get = reader(store, n)
    proof = multiproof(picks, n, get)
    root = root_from_store(n, get)
    proved = _proved(picks, n, leaves)
    k = len(proof)
    kind = data.draw(st.sampled_from(["extra", "missing", "changed", "moved", "added", "dropped", "leaf",
                                      "swap"]), label="mutation")
    # (Another tree size is not a mutation a proof must catch: as with inclusion proofs,
    # the size is bound through the root, which the certified header carries with it.)
    p, leaf_map = list(proof), dict(proved)
    if kind == "extra":
        p.insert(data.draw(st.integers(0, k)), data.draw(st.binary(min_size=32, max_size=32)))
    elif kind == "missing":
        if not k:
            return
        del p[data.draw(st.integers(0, k - 1))]
    elif kind == "changed":
        if not k:
            return
        j = data.draw(st.integers(0, k - 1))
        bit = data.draw(st.integers(0, 255))
        p[j] = bytes(b ^ (1 << (bit % 8)) if x == bit // 8 else b for x, b in enumerate(p[j]))
    elif kind == "swap":
        if k < 2:
            return
        j = data.draw(st.integers(0, k - 2))
        p[j], p[j + 1] = p[j + 1], p[j]
    elif kind == "moved":
        free = [i for i in range(n + 2) if i not in proved]
        if not free:
            return
        old = data.draw(st.sampled_from(sorted(proved)))
        leaf_map[data.draw(st.sampled_from(free))] = leaf_map.pop(old)
    elif kind == "added":
        free = [i for i in range(n) if i not in proved]
        if not free:
            return
        new = data.draw(st.sampled_from(free))
        leaf_map[new] = data.draw(st.sampled_from([leaf_hash(leaves[new]), leaf_hash(b"forged")]))
    elif kind == "dropped":
        del leaf_map[data.draw(st.sampled_from(sorted(proved)))]
    elif kind == "leaf":
        i = data.draw(st.sampled_from(sorted(proved)))
        leaf_map[i] = leaf_hash(leaves[i] + b"!")
    with pytest.raises(VerificationError):
        verify_multiproof(leaf_map, n, p, root)
