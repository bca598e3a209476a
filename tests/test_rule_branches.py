"""Branches of ledger/rules.py that no other test reaches, each with a valid neighbour.

Every case runs in a fresh :class:`ApiWorld` after its season (a one-validator node
in-process, about 15 ms): it submits its own set-up, then the offending event over the
HTTP API, and expects that event's exact code, message fragment and ``field`` (the
fragment tells the branch apart from an earlier check with the same code); then a
neighbouring valid event that differs in the one thing the rule looks at must be
accepted, and committed in the next block (so block execution agrees with admission).

One branch is dead and not forced here: ``_count`` with an empty ident (every caller
passes a banner code, an actor id, or a herder agent's parent, which ``actor.enroll``
requires: ``bad_parent``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from helpers_api import AGENT, BANNER_OFFICE, CHAIN, COOP, OFFICE, PLANT, TAG_A, TAG_B, ApiWorld
from ledger import events as E
from node.kv import MemoryKV
from signer import generate, public_key_record

Event = dict[str, Any]
LAMB_C = "315252300000003"  # in the season's range issued to COOP, not yet tagged
BO_FIRST = "315252300000101"  # first of a range a case issues to the banner office


@dataclass(frozen=True)
class Case:
    """``build(w)`` gives (set-up, offending event, valid neighbour)."""

    build: Callable[[ApiWorld], tuple[list[Event], Event, Event]]
    code: str
    fragment: str
    field: str | None = None


def at(w: ApiWorld, kind: str, actor: str, body: dict[str, Any], t: int) -> Event:
    return E.sign(E.envelope(CHAIN, kind, actor, t, body), w.keys[actor])


def enroll_body(aid: str, *keys: dict[str, Any]) -> dict[str, Any]:
    return {"id": aid, "role": "cooperative", "banner": "152523", "keys": list(keys)}


def rotate(w: ApiWorld, aid: str, revoke: list[str]) -> Event:
    return w.ev("key.rotate", OFFICE, {"id": aid, "revoke": revoke})


def revoke(w: ApiWorld, aid: str) -> Event:
    return w.ev("actor.revoke", OFFICE, {"id": aid, "reason": "left the pilot"})


def register(w: ApiWorld, device: str, owner: str) -> Event:
    return w.ev("device.register", OFFICE, {"device": device, "owner": owner,
                                            "key": public_key_record(generate("ed25519"))})


def issue(w: ApiWorld, to: str, first: str, count: int) -> Event:
    return w.ev("tags.issue", OFFICE, {"to": to, "first": first, "count": count, "year": 2026})


def ship(w: ApiWorld, actor: str, to: str, lambs: list[str], shipment: str = "shp-x") -> Event:
    return w.ev("custody.ship", actor, {"shipment": shipment, "to": to, "lambs": lambs})


# -- the cases ------------------------------------------------------------------------


def before_genesis(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    # the node's clock is a minute past genesis: lateness lets g-1 through to the genesis check
    body = enroll_body("coop-early", public_key_record(generate("ed25519")))
    g = w.genesis.time
    return [], at(w, "actor.enroll", OFFICE, body, g - 1), at(w, "actor.enroll", OFFICE, body, g)


def parent_on_cooperative(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    return ([], w.enroll("coop-p", "cooperative", "152523", parent=COOP),
            w.enroll("coop-p", "cooperative", "152523"))


def revoke_revoked(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    setup = [w.enroll("coop-r", "cooperative", "152523"), w.enroll("coop-s", "cooperative", "152523"),
             revoke(w, "coop-r")]
    return setup, revoke(w, "coop-r"), revoke(w, "coop-s")


def ship_to_revoked(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    setup = [w.enroll("plant-r", "plant", "152502"), revoke(w, "plant-r")]
    return setup, ship(w, AGENT, "plant-r", [TAG_B]), ship(w, AGENT, PLANT, [TAG_B])


def revoke_root_office(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    # another trace office, enrolled, may be revoked; the genesis one may not
    return [w.enroll("office-2", "trace_office", "152500")], revoke(w, OFFICE), revoke(w, "office-2")


def revoke_never_enrolled_key(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    return [], rotate(w, COOP, ["0" * 32]), rotate(w, COOP, [w.keys[COOP].key_id])


def revoke_other_actors_key(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    return [], rotate(w, COOP, [w.keys[PLANT].key_id]), rotate(w, COOP, [w.keys[COOP].key_id])


def revoke_terminal_key(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    # term-1 is filed for AGENT: its key belongs to AGENT, but only device.retire takes it out
    return [], rotate(w, AGENT, [w.keys["term-1"].key_id]), rotate(w, AGENT, [w.keys[AGENT].key_id])


def revoke_revoked_key(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    new = generate("ed25519")
    old = w.keys[COOP].key_id
    setup = [w.ev("key.rotate", OFFICE, {"id": COOP, "add": [public_key_record(new)], "revoke": [old]})]
    return setup, rotate(w, COOP, [old]), rotate(w, COOP, [new.key_id])


def revoke_key_twice_in_one_event(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    kid = w.keys[COOP].key_id
    return [], rotate(w, COOP, [kid, kid]), rotate(w, COOP, [kid])


def revoke_last_root_key(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    # the genesis office's one key may go only with a new one coming in
    kid, new = w.keys[OFFICE].key_id, generate("ed25519")
    return [], rotate(w, OFFICE, [kid]), w.ev("key.rotate", OFFICE, {
        "id": OFFICE, "revoke": [kid], "add": [public_key_record(new)]})


def leave_root_only_an_expired_key(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    # a key that expires at once does not count; one valid a while longer does
    kid, new = w.keys[OFFICE].key_id, generate("ed25519")

    def swap(not_after: int) -> Event:
        return w.ev("key.rotate", OFFICE, {"id": OFFICE, "revoke": [kid], "add": [
            {**public_key_record(new), "not_after": not_after}]})

    return [], swap(w.now), swap(w.now + 86_400_000)


def terminal_for_regulator(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    return ([w.enroll("reg-1", "regulator", "152500")], register(w, "pda-9", "reg-1"),
            register(w, "pda-9", PLANT))


def terminal_for_trace_office(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    return [], register(w, "pda-9", OFFICE), register(w, "pda-9", BANNER_OFFICE)


def range_past_last_serial(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    # the schema takes any tag and count <= 100000; only the rule bounds first + count
    return [], issue(w, COOP, "315252399999999", 2), issue(w, COOP, "315252399999999", 1)


def banner_range_other_banner(who: str) -> Callable[[ApiWorld], tuple[list[Event], Event, Event]]:
    def build(w: ApiWorld) -> tuple[list[Event], Event, Event]:
        setup = [issue(w, BANNER_OFFICE, BO_FIRST, 10), w.enroll("coop-x", "cooperative", "152524")]
        return setup, w.lamb_tag("coop-x", BO_FIRST), w.lamb_tag(who, BO_FIRST)

    return build


def ship_slaughtered(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    # the plant holds TAG_A (slaughtered in the season) and, after the set-up, LAMB_C
    setup = [w.lamb_tag(AGENT, LAMB_C), ship(w, AGENT, PLANT, [LAMB_C], "shp-c"),
             w.ev("custody.receive", PLANT, {"shipment": "shp-c"})]
    return setup, ship(w, PLANT, COOP, [TAG_A]), ship(w, PLANT, COOP, [LAMB_C])


def ship_to(bad_to: str, good_to: str) -> Callable[[ApiWorld], tuple[list[Event], Event, Event]]:
    def build(w: ApiWorld) -> tuple[list[Event], Event, Event]:
        return [], ship(w, AGENT, bad_to, [TAG_B]), ship(w, AGENT, good_to, [TAG_B])

    return build


def label_listed_twice(w: ApiWorld) -> tuple[list[Event], Event, Event]:
    return [], w.label("c-1", [("l-dup", 1000), ("l-dup", 1000)]), w.label("c-1", [("l-dup", 1000), ("l-dup2", 1000)])


SHIP_TO = "lambs are shipped to another herder agent, cooperative or plant"
TERMINAL_FOR = "terminals are filed for cooperatives, herder agents, plants, banner offices"

CASES: dict[str, Case] = {
    "time-before-genesis": Case(before_genesis, "too_late", "before genesis"),
    "parent-on-cooperative": Case(parent_on_cooperative, "bad_parent", "only herder agents name a parent"),
    "revoke-revoked-actor": Case(revoke_revoked, "actor_revoked", "actor 'coop-r' is revoked"),
    "ship-to-revoked-plant": Case(ship_to_revoked, "actor_revoked", "actor 'plant-r' is revoked"),
    "revoke-genesis-office": Case(revoke_root_office, "wrong_role", "genesis trace office cannot be revoked"),
    "revoke-last-root-key": Case(revoke_last_root_key, "last_key", "must keep at least one key"),
    "leave-root-an-expired-key": Case(leave_root_only_an_expired_key, "last_key", "neither revoked nor expired"),
    "rotate-never-enrolled-key": Case(revoke_never_enrolled_key, "unknown_key", f"'{COOP}' has no key 000"),
    "rotate-other-actors-key": Case(revoke_other_actors_key, "unknown_key", f"'{COOP}' has no key"),
    "rotate-terminal-key": Case(revoke_terminal_key, "unknown_key", f"'{AGENT}' has no key"),
    "rotate-revoked-key": Case(revoke_revoked_key, "key_revoked", "is already revoked"),
    "rotate-key-twice-in-one-event": Case(revoke_key_twice_in_one_event, "key_revoked", "is already revoked"),
    "terminal-for-regulator": Case(terminal_for_regulator, "bad_recipient", TERMINAL_FOR),
    "terminal-for-trace-office": Case(terminal_for_trace_office, "bad_recipient", TERMINAL_FOR),
    "range-past-last-serial": Case(range_past_last_serial, "bad_field", "past the last serial", "body.count"),
    "banner-range-tagged-by-agent-of-banner": Case(
        banner_range_other_banner(AGENT), "tag_wrong_owner", f"issued to '{BANNER_OFFICE}'"),
    "banner-range-tagged-by-coop-of-banner": Case(
        banner_range_other_banner(COOP), "tag_wrong_owner", f"issued to '{BANNER_OFFICE}'"),
    "ship-slaughtered-lamb": Case(ship_slaughtered, "lamb_slaughtered", f"lamb {TAG_A} is already slaughtered"),
    "ship-to-oneself": Case(ship_to(AGENT, COOP), "bad_recipient", SHIP_TO),
    "ship-to-banner-office": Case(ship_to(BANNER_OFFICE, PLANT), "bad_recipient", SHIP_TO),
    "ship-to-trace-office": Case(ship_to(OFFICE, COOP), "bad_recipient", SHIP_TO),
    "label-listed-twice": Case(label_listed_twice, "label_taken", "a label id is listed twice"),
}


@pytest.fixture
def world() -> Iterator[ApiWorld]:
    w = ApiWorld(MemoryKV())
    w.season()
    yield w
    w.node.stop()
    w.store.close()


def result_of(w: ApiWorld, e: Event) -> dict[str, Any]:
    r = w.post([e])
    assert r.status_code == 200, r.get_data(as_text=True)
    (res,) = r.get_json()["results"]
    assert isinstance(res, dict)
    return res


def state_of(w: ApiWorld, hexid: str) -> str | None:
    st = w.node.event_status(bytes.fromhex(hexid))
    return None if st is None else str(st["state"])


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_rule_branch(world: ApiWorld, case: Case) -> None:
    w = world
    setup, bad, good = case.build(w)
    if setup:
        w.submit(setup)
        w.commit()
    res = result_of(w, bad)
    assert res["status"] == "rejected", res
    assert res["code"] == case.code, res
    assert case.fragment in res["message"], res
    assert res.get("field") == case.field, res
    ok = result_of(w, good)
    assert ok["status"] == "accepted", ok
    w.commit()
    assert state_of(w, ok["id"]) == "committed"
    assert state_of(w, res["id"]) != "committed"


@pytest.mark.parametrize("storages", [("software", "software"), ("software", "hsm")], ids=["same-record", "same-pub"])
def test_key_listed_twice(world: ApiWorld, storages: tuple[str, str]) -> None:
    """The same key twice in one enrolment (same alg and pub, whatever the storage: one key
    id) is ``key_exists``, and said to be listed twice, not already enrolled."""
    w = world
    k = generate("ed25519")
    twice = [{**public_key_record(k), "storage": s} for s in storages]
    res = result_of(w, w.ev("actor.enroll", OFFICE, enroll_body("coop-k", *twice)))
    assert (res["status"], res["code"]) == ("rejected", "key_exists"), res
    assert f"key {k.key_id} is listed twice" in res["message"], res
    assert "field" not in res
    ok = result_of(w, w.ev("actor.enroll", OFFICE, enroll_body("coop-k", public_key_record(k),
                                                               public_key_record(generate("ed25519")))))
    assert ok["status"] == "accepted", ok
