"""Every rejection code, provoked over real HTTP against a node on 127.0.0.1.

Each case commits a common base (actors of every role, two tag ranges, one tagged lamb),
then its own set-up, then submits one offending event and expects its code.  After each
case the committed chain must be unchanged by the rejection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from helpers import OFFICE, Served, World
from ledger import codec
from signer import generate, public_key_record

A = "315252300000001"  # the lamb tagged in the base
B = "315252300000002"
DAY = 86_400_000
Case = Callable[[World], tuple[list[dict[str, Any]], dict[str, Any]]]


def base(w: World) -> list[dict[str, Any]]:
    return [
        w.enroll("bo", "banner_office", "152523"),
        w.enroll("coop", "cooperative", "152523"),
        w.enroll("agent", "herder_agent", "152523", parent="coop"),
        w.enroll("coop2", "cooperative", "152524"),
        w.enroll("plant", "plant", "152502", alg="ecdsa-p256"),
        w.enroll("plant2", "plant", "152502"),
        w.enroll("reg", "regulator", "152500"),
        w.issue("coop", "315252300000001", 100),
        w.issue("coop2", "315252400000001", 100),
        w.tag("agent", A),
    ]


def to_plant(w: World, tag: str = A, shipment: str = "shp-1") -> list[dict[str, Any]]:
    return [w.ship("agent", shipment, "plant", [tag]), w.receive("plant", shipment)]


def slaughtered(w: World) -> list[dict[str, Any]]:
    return [*to_plant(w), w.slaughter("plant", A, "c-1")]


def tampered(e: dict[str, Any]) -> dict[str, Any]:
    sig = bytearray(e["sigs"][0]["sig"])
    sig[5] ^= 1
    return {"event": e["event"], "sigs": [{"key": e["sigs"][0]["key"], "sig": bytes(sig)}]}


def resigned(w: World, e: dict[str, Any], signer: Any) -> dict[str, Any]:
    env = e["event"]
    return w.ev(env["kind"], env["actor"], env["body"], signer=signer, t=env["time"])


def with_envelope(e: dict[str, Any], **changes: Any) -> dict[str, Any]:
    env = dict(e["event"])
    env.update(changes)
    return {"event": env, "sigs": e["sigs"]}


def retired_terminal(w: World) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A terminal filed for the herder agent, then retired: its key signs nothing more."""
    key = generate("ed25519")
    setup = [w.ev("device.register", OFFICE, {"device": "d-lost", "owner": "agent", "key": public_key_record(key)}),
             w.ev("device.retire", OFFICE, {"device": "d-lost", "reason": "lost on the steppe"})]
    return setup, w.tag("agent", B, signer=key)


CASES: dict[str, Case] = {
    # -- structure --------------------------------------------------------------------
    "malformed": lambda w: ([], {"event": w.tag("agent", B)["event"]}),
    "bad_version": lambda w: ([], with_envelope(w.tag("agent", B), v=2)),
    "unknown_kind": lambda w: ([], with_envelope(w.tag("agent", B), kind="lamb.fly")),
    "unknown_field": lambda w: ([], w.ev("custody.receive", "plant", {"shipment": "s", "note": "x"})),
    "missing_field": lambda w: ([], w.ev("custody.receive", "plant", {})),
    "bad_field": lambda w: ([], w.tag("agent", "12345")),
    "missing_signature": lambda w: ([], {"event": w.tag("agent", B)["event"], "sigs": []}),
    "too_large": lambda w: ([], w.ev("recall", OFFICE, {
        "targets": [{"type": "lamb", "id": "x" * 500} for _ in range(100)], "reason": "r"})),
    # -- membership and signatures ----------------------------------------------------
    "wrong_chain": lambda w: ([], w.ev("custody.receive", "plant", {"shipment": "s"}, chain="other-chain")),
    "time_in_future": lambda w: ([], w.ev("lamb.tag", "agent", w.tag("agent", B)["event"]["body"],
                                           t=w.now + 10 * 60_000)),
    "too_late": lambda w: ([], w.ev("lamb.tag", "agent", w.tag("agent", B)["event"]["body"], t=w.now - 31 * DAY)),
    "unknown_actor": lambda w: ([], w.ev("custody.receive", "ghost", {"shipment": "s"}, signer=generate("ed25519"))),
    "actor_revoked": lambda w: (
        [w.ev("actor.revoke", OFFICE, {"id": "coop2", "reason": "left the pilot"})],
        w.tag("coop2", "315252400000001", signer=w.keys["coop2"])),
    "wrong_role": lambda w: ([], w.tag("plant", B)),
    "unknown_key": lambda w: ([], w.tag("agent", B, signer=generate("ed25519"))),
    "key_not_actor": lambda w: ([], w.tag("agent", B, signer=w.keys["coop"])),
    "key_revoked": lambda w: (
        [w.ev("key.rotate", OFFICE, {"id": "coop", "revoke": [w.keys["coop"].key_id],
                                     "add": [public_key_record(generate("ed25519"))]})],
        w.tag("coop", B)),
    "key_expired": lambda w: ([w.enroll("coopx", "cooperative", "152523", not_after=w.now - 1)],
                              w.ev("custody.receive", "coopx", {"shipment": "s"})),
    "key_not_yet_valid": lambda w: ([], w.ev("custody.receive", "agent", {"shipment": "s"}, t=w.now - 30_000)),
    "bad_signature": lambda w: ([], tampered(w.tag("agent", B))),
    "actor_exists": lambda w: ([], w.enroll("coop", "cooperative", "152523")),
    "bad_parent": lambda w: ([], w.enroll("agent2", "herder_agent", "152523", parent="plant")),
    "bad_key": lambda w: ([], w.ev("actor.enroll", OFFICE, {
        "id": "c9", "role": "cooperative", "banner": "152523",
        "keys": [{"alg": "ed25519", "pub": b"\x01" * 31, "storage": "software"}]})),
    "key_exists": lambda w: ([], w.ev("actor.enroll", OFFICE, {
        "id": "c9", "role": "cooperative", "banner": "152523", "keys": [public_key_record(w.keys["coop"])]})),
    "nothing_to_do": lambda w: ([], w.ev("key.rotate", OFFICE, {"id": "coop"})),
    "last_key": lambda w: ([], w.ev("key.rotate", OFFICE, {"id": OFFICE, "revoke": [w.keys[OFFICE].key_id]})),
    "device_exists": lambda w: (
        [w.ev("device.register", OFFICE, {"device": "d1", "owner": "agent",
                                          "key": public_key_record(generate("ed25519"))})],
        w.ev("device.register", OFFICE, {"device": "d1", "owner": "agent",
                                         "key": public_key_record(generate("ed25519"))})),
    "wrong_banner": lambda w: ([], w.ev("device.register", "bo", {
        "device": "d2", "owner": "coop2", "key": public_key_record(generate("ed25519"))})),
    "unknown_device": lambda w: ([], w.ev("device.retire", OFFICE, {"device": "d-none", "reason": "lost"})),
    "device_retired": lambda w: retired_terminal(w),
    # -- ear tags ---------------------------------------------------------------------
    "bad_recipient": lambda w: ([], w.issue("plant", "315250200000001", 10)),
    "tag_county_mismatch": lambda w: ([], w.issue("coop", "315252400000500", 10)),
    "tag_range_overlap": lambda w: ([], w.issue("coop", "315252300000050", 10)),
    "quota_exceeded": lambda w: ([], w.issue("coop", "315252300010000", 950)),
    "tag_not_issued": lambda w: ([], w.tag("agent", "315252300009999")),
    "tag_wrong_owner": lambda w: ([], w.tag("agent", "315252400000001")),
    "tag_already_applied": lambda w: ([], w.ev("lamb.tag", "coop", w.tag("agent", A)["event"]["body"])),
    "chip_taken": lambda w: ([w.tag("agent", B, chip="156000000000001")],
                             w.tag("agent", "315252300000003", chip="156000000000001")),
    # -- custody ----------------------------------------------------------------------
    "shipment_exists": lambda w: ([w.tag("agent", B), w.ship("agent", "shp-1", "plant", [A])],
                                  w.ship("agent", "shp-1", "plant", [B])),
    "unknown_lamb": lambda w: ([], w.ship("agent", "shp-9", "plant", ["315252300000077"])),
    "not_holder": lambda w: ([], w.ship("coop", "shp-9", "plant", [A])),
    "lamb_in_transit": lambda w: ([w.ship("agent", "shp-1", "plant", [A])], w.ship("agent", "shp-2", "coop", [A])),
    "unknown_shipment": lambda w: ([], w.receive("plant", "shp-x")),
    "not_addressee": lambda w: ([w.ship("agent", "shp-1", "plant", [A])], w.receive("plant2", "shp-1")),
    "shipment_received": lambda w: (to_plant(w), w.ev("custody.receive", "plant", {"shipment": "shp-1"},
                                                       t=w.now + 1)),
    "lamb_recalled": lambda w: ([w.ev("recall", OFFICE, {"targets": [{"type": "lamb", "id": A}], "reason": "r"})],
                                w.ship("agent", "shp-1", "plant", [A])),
    # -- plants -----------------------------------------------------------------------
    "lamb_slaughtered": lambda w: (slaughtered(w), w.slaughter("plant", A, "c-2")),
    "carcass_taken": lambda w: ([*slaughtered(w), w.tag("agent", B), *to_plant(w, B, "shp-2")],
                                w.slaughter("plant", B, "c-1")),
    "unknown_carcass": lambda w: ([], w.label("plant", "c-x", [("L1", 1000)])),
    "carcass_not_owned": lambda w: (slaughtered(w), w.label("plant2", "c-1", [("L1", 1000)])),
    "carcass_recalled": lambda w: (
        [*slaughtered(w), w.ev("recall", OFFICE, {"targets": [{"type": "carcass", "id": "c-1"}], "reason": "r"})],
        w.label("plant", "c-1", [("L1", 1000)])),
    "label_taken": lambda w: ([*slaughtered(w), w.label("plant", "c-1", [("L1", 1000)])],
                              w.label("plant", "c-1", [("L1", 2000)])),
    "mass_exceeds_carcass": lambda w: (slaughtered(w), w.label("plant", "c-1", [("L1", 10_000), ("L2", 9_000)])),
    "unknown_target": lambda w: ([], w.ev("recall", OFFICE, {"targets": [{"type": "lamb", "id": B}], "reason": "r"})),
}


@pytest.fixture
def served() -> Any:
    w = World()
    s = Served(w.new_node())
    results = s.submit(base(w))
    assert [r["status"] for r in results] == ["accepted"] * len(results), results
    s.commit()
    yield w, s
    s.close()


@pytest.mark.parametrize("code", sorted(CASES))
def test_rejection_code_over_http(served: Any, code: str) -> None:
    w, s = served
    setup, bad = CASES[code](w)
    if setup:
        results = s.submit(setup)
        assert all(r["status"] == "accepted" for r in results), results
        s.commit()
    before = s.http.get(s.url + "/v1/status").json()
    r = s.post_events([bad])
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["status"] == "rejected", result
    assert result["code"] == code, result
    assert result["message"]
    s.commit()
    after = s.http.get(s.url + "/v1/status").json()
    assert (after["height"], after["log_root"]) == (before["height"], before["log_root"])


def test_hsm_required_over_http() -> None:
    w = World(hsm=True)
    s = Served(w.new_node())
    try:
        setup = [*base(w), *to_plant(w)]
        assert all(r["status"] == "accepted" for r in s.submit(setup))
        s.commit()
        (result,) = s.submit([w.slaughter("plant", A, "c-1")])
        assert (result["status"], result["code"]) == ("rejected", "hsm_required")
        # the same slaughter by a plant enrolled with an HSM-held key is accepted
        hsm_plant = w.enroll("plant-h", "plant", "152502", storage="hsm")
        (ok,) = s.submit([hsm_plant])
        assert ok["status"] == "accepted"
        s.submit([w.ship("plant", "shp-h", "plant-h", [A]), w.receive("plant-h", "shp-h")])
        (res,) = s.submit([w.slaughter("plant-h", A, "c-1")])
        assert res["status"] == "accepted", res
    finally:
        s.close()


def test_device_quota_exceeded_over_http() -> None:
    """Terminal quotas live in genesis: a world whose banner 152523 may have one terminal."""
    from ledger.genesis import Genesis

    w = World()
    d = w.genesis.to_dict()
    d["params"]["terminal_quotas"] = {"152523": 1}
    w.genesis = Genesis.from_dict(d)
    s = Served(w.new_node())
    try:
        assert all(r["status"] == "accepted" for r in s.submit(base(w)))
        s.commit()
        reg = [w.ev("device.register", OFFICE, {"device": f"d{i}", "owner": "agent",
                                                "key": public_key_record(generate("ed25519"))}) for i in (1, 2)]
        first, second = s.submit(reg)
        assert first["status"] == "accepted"
        assert (second["status"], second["code"]) == ("rejected", "device_quota_exceeded")
    finally:
        s.close()


def test_duplicate_is_idempotent_over_http(served: Any) -> None:
    w, s = served
    e = w.tag("agent", B)
    (first,) = s.submit([e])
    (again,) = s.submit([e])
    assert first["status"] == "accepted"
    assert (again["status"], again["code"], again["id"]) == ("duplicate", "duplicate", first["id"])
    s.commit()
    (committed,) = s.submit([e])
    assert (committed["status"], committed["code"], committed["id"]) == ("duplicate", "duplicate", first["id"])
    assert committed["state"] == "committed"


def test_every_rule_code_is_covered() -> None:
    import re

    from ledger import rules

    documented = set(re.findall(r"``([a-z_]+)``", rules.__doc__ or ""))
    covered = set(CASES) | {"hsm_required", "duplicate", "device_quota_exceeded"}
    assert documented - covered == set(), f"codes without an HTTP test: {sorted(documented - covered)}"


@pytest.mark.parametrize(
    ("payload", "ctype", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed"),
        (b"\xc1\x00", "application/msgpack", 400, "malformed"),
        (b"\x82\xa1b\x01\xa1a\x02", "application/msgpack", 400, "non_canonical"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "too_deep"),
        (b"\x91" * 50 + b"\x01", "application/msgpack", 400, "too_deep"),
    ],
)
def test_bad_bodies_get_a_code_and_lose_nothing(
    served: Any, payload: bytes, ctype: str, status: int, code: str
) -> None:
    w, s = served
    before = s.http.get(s.url + "/v1/status").json()
    r = s.http.post(s.url + "/v1/events", data=payload, headers={"Content-Type": ctype})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    after = s.http.get(s.url + "/v1/status").json()
    assert after["log_size"] == before["log_size"] and after["log_root"] == before["log_root"]


def test_oversized_request_is_413(served: Any) -> None:
    w, s = served
    r = s.http.post(s.url + "/v1/events", data=b"\x00" * (s.node.limits.max_request_bytes + 1),
                    headers={"Content-Type": "application/msgpack"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


def test_mempool_full_is_429() -> None:
    from ledger.limits import Limits

    w = World()
    node = w.new_node()
    node.limits = Limits(max_mempool_events=12)
    s = Served(node)
    try:
        assert all(r["status"] == "accepted" for r in s.submit(base(w)))
        r = s.post_events([w.tag("agent", f"3152523000000{i:02d}") for i in range(10, 15)])
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "mempool_full"
        s.commit()  # drains the mempool; the same batch now fits
        r = s.post_events([w.tag("agent", f"3152523000000{i:02d}") for i in range(10, 15)])
        assert r.status_code == 200
    finally:
        s.close()


def test_json_and_msgpack_give_the_same_ids(served: Any) -> None:
    w, s = served
    e = w.tag("agent", B)
    r_json = s.post_events([e], msgpack=False)
    assert r_json.status_code == 200, r_json.text
    r_mp = s.post_events([e])
    assert r_json.json()["results"][0]["id"] == r_mp.json()["results"][0]["id"]
    assert r_mp.json()["results"][0]["status"] == "duplicate"
    assert codec.decode(codec.encode(e)) == e


@pytest.mark.parametrize("recall_map", [True, False])
def test_labels_of_a_recalled_lamb_over_http(recall_map: bool) -> None:
    """On a chain with a recall map a plant cannot label the carcass of a lamb recalled after
    slaughter (``lamb_recalled``: the label could not join that recall's chain in the map);
    chains made before the map keep their old rule, so their history replays unchanged."""
    w = World(recall_map=recall_map)
    s = Served(w.new_node())
    try:
        setup = [*base(w), *slaughtered(w),
                 w.ev("recall", OFFICE, {"targets": [{"type": "lamb", "id": A}], "reason": "r"})]
        assert all(r["status"] == "accepted" for r in s.submit(setup))
        s.commit()
        (result,) = s.submit([w.label("plant", "c-1", [("L1", 1000)])])
        if recall_map:
            assert (result["status"], result["code"]) == ("rejected", "lamb_recalled")
        else:
            assert result["status"] == "accepted", result
    finally:
        s.close()
