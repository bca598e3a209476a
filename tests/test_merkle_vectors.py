"""Run every case and every mutation in tests/vectors/merkle.json against ledger.merkle.

The vectors are data (STYLE §9): the standard Certificate Transparency leaves, their
published roots and proofs, and corruptions with the error class each must raise.
``tests/vectors/gen_merkle.py`` regenerates the file; the last test checks that the
committed file is exactly what it writes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from ledger import errors
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_plan,
    consistency_proof,
    consistency_proof_length,
    inclusion_plan,
    inclusion_proof,
    inclusion_proof_length,
    leaf_hash,
    node_hash,
    root_from_consistency_proof,
    root_from_inclusion_proof,
    root_from_store,
    verify_consistency,
    verify_inclusion,
)

VECTORS_DIR = Path(__file__).parent / "vectors"
VECTORS_PATH = VECTORS_DIR / "merkle.json"
DOC: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))

# Published values (transparency-dev/merkle testonly/constants.go), written out here
# too so that a regenerated file cannot silently move them.
ROOT_OF_1 = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
ROOT_OF_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
STANDARD_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]


def _store() -> dict[tuple[int, int], bytes]:
    cr = CompactRange()
    store: dict[tuple[int, int], bytes] = {}
    for data in DOC["leaves"]:
        for level, index, h in cr.append(leaf_hash(bytes.fromhex(data))):
            store[(level, index)] = h
    return store


STORE = _store()


def get_node(level: int, index: int) -> bytes:
    return STORE[(level, index)]


def _b(value: str) -> bytes:
    return bytes.fromhex(value)


def _proof(case: dict[str, Any]) -> list[bytes]:
    return [_b(x) for x in case["proof"]]


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


def test_document_shape() -> None:
    assert DOC["hash"] == "sha256"
    assert (DOC["leaf_prefix"], DOC["node_prefix"]) == ("00", "01")
    assert DOC["leaves"] == STANDARD_LEAVES
    assert len(DOC["inclusion"]) == sum(range(1, 9))
    assert len(DOC["consistency"]) == sum(range(1, 9))
    assert {m["error"] for m in DOC["mutations"]} == {"ProofError", "RootMismatch"}
    assert sum(case["published"] for case in DOC["inclusion"]) == 7
    assert sum(case["published"] for case in DOC["consistency"]) == 5


def test_published_roots() -> None:
    roots = {r["size"]: r["root"] for r in DOC["roots"]}
    assert roots[0] == EMPTY_ROOT.hex()
    assert roots[1] == ROOT_OF_1
    assert roots[8] == ROOT_OF_8
    cr = CompactRange()
    assert cr.root().hex() == roots[0]
    for size in range(1, 9):
        cr.append(_b(DOC["leaf_hashes"][size - 1]))
        assert cr.root().hex() == roots[size]
        assert root_from_store(size, get_node).hex() == roots[size]
        assert CompactRange.from_store(size, get_node).hashes == cr.hashes


def test_leaf_hashes() -> None:
    assert [leaf_hash(_b(d)).hex() for d in DOC["leaves"]] == DOC["leaf_hashes"]


@pytest.mark.parametrize("vec", DOC["hasher"], ids=_ids(DOC["hasher"]))
def test_hasher(vec: dict[str, Any]) -> None:
    if vec["kind"] == "empty":
        got = EMPTY_ROOT
    elif vec["kind"] == "leaf":
        got = leaf_hash(_b(vec["data"]))
    else:
        got = node_hash(_b(vec["left"]), _b(vec["right"]))
    assert got.hex() == vec["hash"]


@pytest.mark.parametrize("case", DOC["inclusion"], ids=_ids(DOC["inclusion"]))
def test_inclusion_case(case: dict[str, Any]) -> None:
    index, size, proof = case["index"], case["size"], _proof(case)
    assert inclusion_proof(index, size, get_node) == proof
    assert len(inclusion_plan(index, size)) == inclusion_proof_length(index, size) == len(proof)
    assert root_from_inclusion_proof(_b(case["leaf_hash"]), index, size, proof).hex() == case["root"]
    verify_inclusion(_b(case["leaf_hash"]), index, size, proof, _b(case["root"]))


@pytest.mark.parametrize("case", DOC["consistency"], ids=_ids(DOC["consistency"]))
def test_consistency_case(case: dict[str, Any]) -> None:
    m, n, proof = case["m"], case["n"], _proof(case)
    assert consistency_proof(m, n, get_node) == proof
    assert len(consistency_plan(m, n)) == consistency_proof_length(m, n) == len(proof)
    assert root_from_consistency_proof(m, n, proof, _b(case["root_m"])).hex() == case["root_n"]
    verify_consistency(m, n, proof, _b(case["root_m"]), _b(case["root_n"]))


@pytest.mark.parametrize("mutation", DOC["mutations"], ids=_ids(DOC["mutations"]))
def test_mutation(mutation: dict[str, Any]) -> None:
    error = getattr(errors, mutation["error"])
    assert issubclass(error, errors.VerificationError)
    args = mutation["input"]
    with pytest.raises(error) as exc:
        if mutation["verify"] == "inclusion":
            verify_inclusion(
                _b(args["leaf_hash"]), args["index"], args["size"], _proof(args), _b(args["root"])
            )
        else:
            verify_consistency(args["m"], args["n"], _proof(args), _b(args["root_m"]), _b(args["root_n"]))
    assert type(exc.value) is error


def test_file_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("gen_merkle", VECTORS_DIR / "gen_merkle.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.render(gen.build()) == VECTORS_PATH.read_text(encoding="utf-8")
