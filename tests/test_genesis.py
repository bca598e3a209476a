"""A genesis document parses only in the shape the browser's verifier takes (DESIGN §4):
each validator exactly name, banner, alg, pub and power, each with its own key, and at
most ``MAX_VALIDATORS`` of them (a certificate carries at most one precommit from each)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambtrace.config import genesis_from_json, genesis_to_json
from ledger.blocks.certificate import MAX_PRECOMMITS
from ledger.errors import Rejected
from ledger.genesis import MAX_VALIDATORS, Genesis, Params, Validator
from signer import generate, public_key_record


def _genesis_json(validators: int = 4) -> dict[str, Any]:
    office = generate("ed25519")
    g = Genesis(
        chain="xilingol-test", time=1_700_000_000_000,
        validators=tuple(Validator(f"v{i}", "152500", "ed25519", generate("ed25519").public_key, 1)
                         for i in range(validators)),
        trace_office={"id": "office", "banner": "152500", "keys": [public_key_record(office)]},
        params=Params(),
    )
    value: dict[str, Any] = json.loads(genesis_to_json(g))
    return value


def test_a_genesis_survives_its_json() -> None:
    j = _genesis_json()
    g = genesis_from_json(json.dumps(j))
    assert json.loads(genesis_to_json(g)) == j


@pytest.mark.parametrize("change", ["extra", "missing", "not a map"])
def test_a_validator_out_of_shape_is_refused(change: str) -> None:
    j = _genesis_json()
    v = j["validators"][1]
    if change == "extra":
        v["comment"] = "the league's node"  # would be dropped from the hash without a word
    elif change == "missing":
        del v["power"]
    else:
        j["validators"][1] = [v["name"], v["pub"]]
    with pytest.raises(Rejected) as exc:
        genesis_from_json(json.dumps(j))
    assert exc.value.code == "bad_genesis"


def test_at_most_max_validators() -> None:
    assert MAX_PRECOMMITS == MAX_VALIDATORS
    j = _genesis_json(validators=2)
    one = j["validators"][0]
    j["validators"] = [{**one, "name": f"v{i}", "pub": generate("ed25519").public_key.hex()}
                       for i in range(MAX_VALIDATORS)]
    assert len(genesis_from_json(json.dumps(j)).validators) == MAX_VALIDATORS
    j["validators"].append({**one, "name": f"v{MAX_VALIDATORS}", "pub": generate("ed25519").public_key.hex()})
    with pytest.raises(Rejected) as exc:
        genesis_from_json(json.dumps(j))
    assert exc.value.code == "bad_genesis" and str(MAX_VALIDATORS) in exc.value.message
    j["validators"] = {"v0": one}
    with pytest.raises(Rejected):
        genesis_from_json(json.dumps(j))


def test_each_validator_has_its_own_key() -> None:
    """A key named for two validators (a key file passed twice) is refused: whoever held it
    would sign handshakes, votes and precommits as both."""
    j = _genesis_json()
    j["validators"][3]["pub"] = j["validators"][1]["pub"]
    with pytest.raises(Rejected) as exc:
        genesis_from_json(json.dumps(j))
    assert exc.value.code == "bad_genesis" and "v1 and v3" in exc.value.message
    # the same bytes under another algorithm are another key (and not one here: refused as such)
    j["validators"][3]["pub"] = generate("ed25519").public_key.hex()
    assert [v.name for v in genesis_from_json(json.dumps(j)).validators] == ["v0", "v1", "v2", "v3"]


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


@pytest.mark.parametrize("what", ["not a map", "an unknown field", "no chain", "power 0", "power 2**32",
                                  "power true", "no validators", "params not a map", "an unknown parameter",
                                  "a banner outside the league", "a duplicate name", "a negative time"])
def test_each_part_of_genesis_out_of_shape_is_refused_by_name(what: str) -> None:
    """Genesis is the root every verifier trusts: each part broken alone is refused
    with ``bad_genesis`` and a message that names the part, never parsed into defaults."""
    j = _genesis_json()
    v0 = j["validators"][0]
    doc: Any = {
        "not a map": [j],
        "an unknown field": {**j, "comment": "draft"},
        "no chain": _without(j, "chain"),
        "power 0": {**j, "validators": [{**v0, "power": 0}]},
        "power 2**32": {**j, "validators": [{**v0, "power": 2**32}]},
        "power true": {**j, "validators": [{**v0, "power": True}]},
        "no validators": {**j, "validators": []},
        "params not a map": {**j, "params": [1]},
        "an unknown parameter": {**j, "params": {**j["params"], "max_lambs": 5}},
        "a banner outside the league": {**j, "validators": [{**v0, "banner": "110101"}]},
        "a duplicate name": {**j, "validators": [v0, {**j["validators"][1], "name": v0["name"]}]},
        "a negative time": {**j, "time": -1},
    }[what]
    named = {"not a map": "map", "an unknown field": "comment", "no chain": "chain", "power 0": "power",
             "power 2**32": "power", "power true": "power", "no validators": "at least one validator",
             "params not a map": "params", "an unknown parameter": "max_lambs",
             "a banner outside the league": "banner", "a duplicate name": "unique", "a negative time": "time"}[what]
    with pytest.raises(Rejected) as exc:
        genesis_from_json(json.dumps(doc))
    assert exc.value.code == "bad_genesis" and named in exc.value.message, exc.value.message
