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
