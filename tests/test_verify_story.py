"""Every rule of a label's story, broken one at a time, in both verifiers.

A test "validator" (tests/helpers_api.py ``forge_bundle``) certifies a log we write
event by event: the smallest story of label ``l-0001`` that verifies (a cooperative, a
plant and the cooperative's herder agent enrolled, a tag range, the lamb tagged, shipped
to the plant, received, slaughtered, labelled), and, case by case, that story with
exactly one rule broken: an event moved, added, re-addressed or signed by someone else.
For each case ``verify.verify_label`` must raise the precise error class, with the
message of that check (so a case that fails earlier, for another reason, is caught) and
the details it reports (the leaf ``index`` where the check names one); and
``api/static/verify.js``, run in node on the bundle's JSON form (all cases in one node
process), must give the same code.  A few controls (the genuine story, a terminal filed
by a banner office of its own banner, a range filed with the tagger's banner office, an
HSM key under ``slaughter_requires_hsm``) must verify in both.  The story's other
checks (a missing or an extra event, keys unproven, expired or revoked, ...), which
tests/test_verify_label.py reaches in Python only, are here too, for verify.js.

Checks no bundle can reach (an earlier check always answers first) are listed at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_verify_js_differential import NODE, run_js

from helpers_api import AGENT, BANNER_OFFICE, CHAIN, COOP, FIRST, OFFICE, PLANT, TAG_A, ApiWorld, forge_bundle
from ledger import codec
from ledger import events as E
from ledger.errors import VerificationError
from ledger.genesis import Genesis
from ledger.schema import to_json
from node.kv import MemoryKV
from signer import SoftwareSigner, generate
from signer.software import public_key_record
from verify import errors as VE
from verify import verify_label
from verify.label import MAX_BUNDLE_BYTES

LABEL = "l-0001"
COOP_2 = "coop-2"
PLANT_2 = "plant-2"
TERMINAL = "term-9"
T = 1_790_000_000_100
"""The first event's time; each later event is 10 ms after the one before (unless a case dates it)."""


# -- a log written event by event -------------------------------------------------------------


@dataclass(frozen=True)
class Ev:
    """One event of the log: ``name`` (unique in a log) lets a case find, move or replace it."""

    name: str
    kind: str
    actor: str
    body: dict[str, Any]
    signer: str = ""
    """The key that signs it (a name in :class:`Keys`); the actor's own key by default."""
    time: int | None = None


class Keys:
    """Named signers: the trace office's is genesis's, every other one is made on first use."""

    def __init__(self, w: ApiWorld) -> None:
        self._keys: dict[str, SoftwareSigner] = {OFFICE: w.keys[OFFICE]}

    def __getitem__(self, name: str) -> SoftwareSigner:
        if name not in self._keys:
            self._keys[name] = generate("ed25519")
        return self._keys[name]

    def record(self, name: str, storage: str = "software") -> dict[str, Any]:
        return {**public_key_record(self[name]), "storage": storage}

    def kid(self, name: str) -> str:
        return self[name].key_id


def enroll(k: Keys, aid: str, role: str, banner: str, *, parent: str | None = None, name: str = "",
           storage: str = "software") -> Ev:
    body: dict[str, Any] = {"id": aid, "role": role, "banner": banner, "keys": [k.record(aid, storage)]}
    if parent is not None:
        body["parent"] = parent
    return Ev(name or aid, "actor.enroll", OFFICE, body)


def terminal(k: Keys, by: str, owner: str) -> Ev:
    """A terminal ``TERMINAL`` filed by ``by`` for ``owner``; its key is ``k[TERMINAL]``."""
    return Ev("terminal", "device.register", by, {"device": TERMINAL, "owner": owner, "key": k.record(TERMINAL),
                                                   "model": "HT-100"})


def ship(name: str, by: str, shipment: str, to: str) -> Ev:
    return Ev(name, "custody.ship", by, {"shipment": shipment, "to": to, "lambs": [TAG_A]})


def receive(name: str, by: str, shipment: str) -> Ev:
    return Ev(name, "custody.receive", by, {"shipment": shipment})


def slaughter(name: str = "slaughter", by: str = PLANT, mass: int = 18_000) -> Ev:
    return Ev(name, "lamb.slaughter", by, {
        "tag": TAG_A, "carcass": "c-1", "carcass_mass_g": mass, "quarantine_cert": "QC-2026-0001",
        "price_fen_per_kg": 6600, "market_price_fen_per_kg": 6500, "date": "2026-10-01"})


def label_issue(name: str = "label", cut: str = "羊腿") -> Ev:
    return Ev(name, "label.issue", PLANT, {"carcass": "c-1", "labels": [
        {"label": LABEL, "cut": cut, "net_mass_g": 3000, "packed": "2026-10-02",
         "check": hashlib.sha256(b"salt" + LABEL.encode()).digest()}]})


def lamb_tag(name: str = "tag", sex: str = "male") -> Ev:
    return Ev(name, "lamb.tag", AGENT, {"tag": TAG_A, "herder": "h-0001", "born": "2026-03-10", "breed": "苏尼特羊",
                                        "sex": sex, "sumu": "满都拉图镇"})


def tags_issue(name: str = "issue", to: str = COOP, count: int = 10) -> Ev:
    return Ev(name, "tags.issue", OFFICE, {"to": to, "first": FIRST, "count": count, "year": 2026})


def story(k: Keys) -> list[Ev]:
    """The smallest story of LABEL that verifies: nothing in it is not needed."""
    return [
        enroll(k, COOP, "cooperative", "152523", name="coop"),
        enroll(k, PLANT, "plant", "152502", name="plant"),
        enroll(k, AGENT, "herder_agent", "152523", parent=COOP, name="agent"),
        tags_issue(),
        lamb_tag(),
        ship("ship", AGENT, "shp-1", PLANT),
        receive("receive", PLANT, "shp-1"),
        slaughter(),
        label_issue(),
    ]


def at(log: list[Ev], name: str) -> int:
    """The leaf index of the event ``name`` (every event of the log is a leaf, in order)."""
    return next(i for i, e in enumerate(log) if e.name == name)


def insert(log: list[Ev], after: str, *events: Ev) -> list[Ev]:
    i = at(log, after) + 1
    return [*log[:i], *events, *log[i:]]


def move(log: list[Ev], name: str, *, after: str | None = None, before: str | None = None) -> list[Ev]:
    ev = log[at(log, name)]
    rest = [e for e in log if e.name != name]
    i = at(rest, after) + 1 if after is not None else at(rest, before or "")
    return [*rest[:i], ev, *rest[i:]]


def edit(log: list[Ev], name: str, **changes: Any) -> list[Ev]:
    return [dataclasses.replace(e, **changes) if e.name == name else e for e in log]


def leaves(k: Keys, log: list[Ev]) -> list[bytes]:
    assert len({e.name for e in log}) == len(log), "event names must be unique"
    return [codec.encode(E.sign(E.envelope(CHAIN, e.kind, e.actor, T + 10 * i if e.time is None else e.time, e.body),
                                k[e.signer or e.actor])) for i, e in enumerate(log)]


# -- the cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    log: list[Ev]
    error: type[VerificationError] | None
    """None: the bundle verifies."""
    message: str
    """A fragment of the error's message ("" for a verifying bundle)."""
    details: dict[str, Any] = field(default_factory=dict)
    """The error's details exactly; ``index`` names a leaf by its event's name (resolved by :func:`at`)."""
    hsm: bool = False
    """Under a genesis with ``slaughter_requires_hsm``."""


CASES: dict[str, Callable[[Keys], Case]] = {}


def case(fn: Callable[[Keys], Case]) -> Callable[[Keys], Case]:
    CASES[fn.__name__] = fn
    return fn


# controls: each verifies in both, so each case below breaks nothing but its rule


@case
def genuine(k: Keys) -> Case:
    return Case(story(k), None, "")


@case
def terminal_of_the_banner_offices_own_banner(k: Keys) -> Case:
    log = insert(story(k), "agent", enroll(k, BANNER_OFFICE, "banner_office", "152523", name="bo"),
                 terminal(k, BANNER_OFFICE, AGENT))
    return Case(edit(log, "tag", signer=TERMINAL), None, "")


@case
def range_filed_with_the_taggers_banner_office(k: Keys) -> Case:
    log = insert(story(k), "agent", enroll(k, BANNER_OFFICE, "banner_office", "152523", name="bo"))
    return Case(edit(log, "issue", body={**tags_issue().body, "to": BANNER_OFFICE}), None, "")


@case
def hsm_key_where_slaughter_requires_hsm(k: Keys) -> Case:
    log = [enroll(k, PLANT, "plant", "152502", name="plant", storage="hsm") if e.name == "plant" else e
           for e in story(k)]
    return Case(log, None, "", hsm=True)


# membership (_members)


@case
def actor_enrolled_twice(k: Keys) -> Case:
    again = Ev("again", "actor.enroll", OFFICE, {"id": COOP, "role": "cooperative", "banner": "152523",
                                                 "keys": [k.record(COOP_2)]})
    return Case(insert(story(k), "agent", again), VE.InconsistentStory, f"actor {COOP} is enrolled twice",
                {"index": "again", "actor": COOP})


@case
def rotation_revokes_another_actors_key(k: Keys) -> Case:
    rot = Ev("rotate", "key.rotate", OFFICE, {"id": PLANT, "revoke": [k.kid(COOP)]})
    return Case(insert(story(k), "agent", rot), VE.InconsistentStory,
                f"key.rotate revokes key {k.kid(COOP)}, which is not a key of {PLANT}",
                {"index": "rotate", "key": k.kid(COOP)})


@case
def rotation_revokes_a_terminal_key(k: Keys) -> Case:
    # the terminal is the agent's, but a terminal is retired (device.retire), not rotated out
    rot = Ev("rotate", "key.rotate", OFFICE, {"id": AGENT, "revoke": [k.kid(TERMINAL)]})
    log = insert(story(k), "agent", terminal(k, OFFICE, AGENT), rot)
    return Case(log, VE.InconsistentStory, f"key.rotate revokes key {k.kid(TERMINAL)}, which is not a key of {AGENT}",
                {"index": "rotate", "key": k.kid(TERMINAL)})


# the story (_story): one of each event


@case
def two_labels_name_the_label(k: Keys) -> Case:
    log = insert(story(k), "label", label_issue("label-2", cut="羊排"))
    return Case(log, VE.InconsistentStory, f"the bundle has 2 of label.issue naming label {LABEL}",
                {"indexes": ["label", "label-2"], "label": LABEL})


@case
def two_slaughters_of_the_carcass(k: Keys) -> Case:
    log = insert(story(k), "slaughter", slaughter("slaughter-2", mass=17_500))
    return Case(log, VE.InconsistentStory, "the bundle has 2 of lamb.slaughter of carcass c-1",
                {"indexes": ["slaughter", "slaughter-2"], "carcass": "c-1"})


@case
def two_taggings_of_the_tag(k: Keys) -> Case:
    log = insert(story(k), "tag", lamb_tag("tag-2", sex="female"))
    return Case(log, VE.InconsistentStory, f"the bundle has 2 of lamb.tag of ear tag {TAG_A}",
                {"indexes": ["tag", "tag-2"], "tag": TAG_A})


@case
def two_ranges_hold_the_tag(k: Keys) -> Case:
    log = insert(story(k), "issue", tags_issue("issue-2", count=5))
    return Case(log, VE.InconsistentStory, f"the bundle has 2 of tags.issue of a range holding ear tag {TAG_A}",
                {"indexes": ["issue", "issue-2"], "tag": TAG_A})


@case
def shipment_received_twice(k: Keys) -> Case:
    log = insert(story(k), "receive", receive("receive-2", PLANT, "shp-1"))
    return Case(log, VE.InconsistentStory, "the bundle has 2 of custody.receive of shipment shp-1",
                {"indexes": ["receive", "receive-2"], "shipment": "shp-1"})


# the story: who and when


@case
def slaughtered_by_another_plant(k: Keys) -> Case:
    log = insert(story(k), "plant", enroll(k, PLANT_2, "plant", "152502", name="plant-2"))
    return Case(edit(log, "slaughter", actor=PLANT_2), VE.InconsistentStory,
                f"carcass c-1 was slaughtered by {PLANT_2}, labelled by {PLANT}", {"index": "label"})


@case
def label_issued_before_its_carcass(k: Keys) -> Case:
    return Case(move(story(k), "label", before="slaughter"), VE.InconsistentStory,
                "the label was issued before its carcass existed", {"index": "label"})


@case
def slaughtered_before_tagged(k: Keys) -> Case:
    return Case(move(story(k), "slaughter", before="tag"), VE.InconsistentStory,
                "the lamb was slaughtered before it was tagged", {"index": "slaughter"})


@case
def tagged_before_issued(k: Keys) -> Case:
    return Case(move(story(k), "tag", before="issue"), VE.InconsistentStory,
                "the tag was applied before it was issued", {"index": "tag"})


# the story: custody


@case
def two_shipments_share_an_id(k: Keys) -> Case:
    log = insert(story(k), "receive", ship("ship-2", PLANT, "shp-1", AGENT))
    return Case(log, VE.InconsistentStory, "two shipments of this lamb share an id", {})


@case
def shipped_before_tagged(k: Keys) -> Case:
    return Case(move(story(k), "ship", before="tag"), VE.InconsistentStory,
                "shipment shp-1 is out of order in the custody chain", {"index": "ship"})


@case
def shipped_on_before_received(k: Keys) -> Case:
    # agent -> cooperative -> plant, the second shipment committed before the first is received
    log = [e for e in story(k) if e.name not in ("ship", "receive")]
    log = insert(log, "tag", ship("ship-1", AGENT, "shp-1", COOP), ship("ship-2", COOP, "shp-2", PLANT),
                 receive("receive-1", COOP, "shp-1"), receive("receive-2", PLANT, "shp-2"))
    return Case(log, VE.InconsistentStory, "shipment shp-2 is out of order in the custody chain", {"index": "ship-2"})


@case
def received_before_sent(k: Keys) -> Case:
    return Case(move(story(k), "receive", before="ship"), VE.InconsistentStory,
                "shipment shp-1 was received before it was sent", {"index": "receive"})


@case
def slaughtered_while_in_custody_elsewhere(k: Keys) -> Case:
    return Case(move(story(k), "receive", after="slaughter"), VE.InconsistentStory,
                "the lamb was slaughtered while still in custody elsewhere", {"index": "slaughter"})


# the story: recalls


@case
def label_recalled_before_issued(k: Keys) -> Case:
    recall = Ev("recall", "recall", OFFICE, {"targets": [{"type": "label", "id": LABEL}], "reason": "抽检不合格"})
    return Case(insert(story(k), "slaughter", recall), VE.InconsistentStory,
                f"a recall of label {LABEL} precedes its creation", {"index": "recall"})


@case
def lamb_recalled_before_tagged(k: Keys) -> Case:
    recall = Ev("recall", "recall", OFFICE, {"targets": [{"type": "lamb", "id": TAG_A}], "reason": "布病"})
    return Case(insert(story(k), "issue", recall), VE.InconsistentStory,
                f"a recall of lamb {TAG_A} precedes its creation", {"index": "recall"})


# who may sign (_check_authorised)


@case
def signed_before_enrolment(k: Keys) -> Case:
    return Case(move(story(k), "agent", after="tag"), VE.KeyNotValidAtTime,
                f"is signed by {AGENT} before its enrolment", {"index": "tag"})


@case
def key_put_on_the_ledger_after_its_leaf(k: Keys) -> Case:
    rot = Ev("rotate", "key.rotate", OFFICE, {"id": PLANT, "add": [k.record("plant-new")]})
    log = insert(edit(story(k), "label", signer="plant-new"), "label", rot)
    return Case(log, VE.KeyNotValidAtTime, f"key {k.kid('plant-new')} came onto the ledger after leaf",
                {"index": "label", "key": k.kid("plant-new")})


@case
def slaughter_with_a_software_key_where_hsm_is_required(k: Keys) -> Case:
    return Case(story(k), VE.NotAuthorised, "slaughter attestations must be signed with HSM keys",
                {"index": "slaughter"}, hsm=True)


@case
def names_an_actor_before_its_enrolment(k: Keys) -> Case:
    # the range goes to the cooperative (and the agent names it) before it is enrolled
    log = move(move(story(k), "coop", after="issue"), "agent", after="coop")
    return Case(log, VE.InconsistentStory,
                f"names actor {COOP} before its enrolment", {"index": "issue", "actor": COOP})


@case
def names_an_actor_revoked_earlier(k: Keys) -> Case:
    revoke = Ev("revoke", "actor.revoke", OFFICE, {"id": COOP, "reason": "dissolved"})
    return Case(insert(story(k), "agent", revoke), VE.InconsistentStory,
                f"names actor {COOP}, revoked earlier in the log", {"index": "issue", "actor": COOP})


@case
def herder_agent_without_a_cooperative(k: Keys) -> Case:
    log = [enroll(k, AGENT, "herder_agent", "152523", name="agent") if e.name == "agent" else e for e in story(k)]
    return Case(log, VE.InconsistentStory, f"herder agent {AGENT} needs an enrolled cooperative", {"index": "agent"})


@case
def herder_agent_under_a_plant(k: Keys) -> Case:
    log = [enroll(k, AGENT, "herder_agent", "152523", parent=PLANT, name="agent") if e.name == "agent" else e
           for e in story(k)]
    return Case(log, VE.InconsistentStory, f"herder agent {AGENT} needs an enrolled cooperative", {"index": "agent"})


@case
def plant_names_a_parent(k: Keys) -> Case:
    log = [enroll(k, PLANT, "plant", "152502", parent=COOP, name="plant") if e.name == "plant" else e
           for e in story(k)]
    return Case(log, VE.InconsistentStory, "only herder agents name a parent cooperative", {"index": "plant"})


@case
def terminal_for_an_unfit_owner(k: Keys) -> Case:
    # a terminal of the trace office itself, which then signs the tag range with it
    log = insert(story(k), "agent", terminal(k, OFFICE, OFFICE))
    return Case(edit(log, "issue", signer=TERMINAL), VE.InconsistentStory,
                f"terminal {TERMINAL} is filed for an unfit owner", {"index": "terminal"})


@case
def banner_office_files_a_terminal_of_another_banner(k: Keys) -> Case:
    # the banner office of 152523 files a terminal for the plant of 152502, which slaughters with it
    log = insert(story(k), "agent", enroll(k, BANNER_OFFICE, "banner_office", "152523", name="bo"),
                 terminal(k, BANNER_OFFICE, PLANT))
    return Case(edit(log, "slaughter", signer=TERMINAL), VE.NotAuthorised,
                "a banner office files terminals for its own banner only", {"index": "terminal"})


@case
def shipped_to_itself(k: Keys) -> Case:
    log = insert(story(k), "tag", ship("ship-0", AGENT, "shp-0", AGENT), receive("receive-0", AGENT, "shp-0"))
    return Case(log, VE.InconsistentStory, "shipment shp-0 goes to an unfit addressee", {"index": "ship-0"})


@case
def shipped_to_a_banner_office(k: Keys) -> Case:
    # agent -> banner office -> plant: a banner office holds no lambs
    log = [e for e in story(k) if e.name not in ("ship", "receive")]
    log = insert(log, "agent", enroll(k, BANNER_OFFICE, "banner_office", "152523", name="bo"))
    log = insert(log, "tag", ship("ship-1", AGENT, "shp-1", BANNER_OFFICE),
                 receive("receive-1", BANNER_OFFICE, "shp-1"), ship("ship-2", BANNER_OFFICE, "shp-2", PLANT),
                 receive("receive-2", PLANT, "shp-2"))
    return Case(log, VE.InconsistentStory, "shipment shp-1 goes to an unfit addressee", {"index": "ship-1"})


# whose range the tag is from (_check_tagger)


@case
def range_of_another_cooperative(k: Keys) -> Case:
    log = insert(story(k), "agent", enroll(k, COOP_2, "cooperative", "152523", name="coop-2"))
    return Case(edit(log, "issue", body={**tags_issue().body, "to": COOP_2}), VE.InconsistentStory,
                f"ear tag {TAG_A} was issued to {COOP_2}, not to the tagger's cooperative or banner", {"index": "tag"})


@case
def range_of_another_banner(k: Keys) -> Case:
    # the range went to the banner office of 152523; the agent (of coop-1) is enrolled in 152502
    log = [enroll(k, AGENT, "herder_agent", "152502", parent=COOP, name="agent") if e.name == "agent" else e
           for e in story(k)]
    log = insert(log, "agent", enroll(k, BANNER_OFFICE, "banner_office", "152523", name="bo"))
    return Case(edit(log, "issue", body={**tags_issue().body, "to": BANNER_OFFICE}), VE.InconsistentStory,
                f"ear tag {TAG_A} was issued to {BANNER_OFFICE}, not to the tagger's cooperative or banner",
                {"index": "tag"})


# the other checks of the story, membership and signers: already reached by
# tests/test_verify_label.py in Python, here so that verify.js is held to each of them too


@case
def no_slaughter_of_the_carcass(k: Keys) -> Case:
    return Case([e for e in story(k) if e.name != "slaughter"], VE.MissingEvent,
                "the bundle has no lamb.slaughter of carcass c-1", {"carcass": "c-1"})


@case
def shipment_never_received(k: Keys) -> Case:
    return Case([e for e in story(k) if e.name != "receive"], VE.MissingEvent,
                "the bundle has no custody.receive of shipment shp-1", {"shipment": "shp-1"})


@case
def an_event_the_story_does_not_need(k: Keys) -> Case:
    log = insert(story(k), "agent", enroll(k, BANNER_OFFICE, "banner_office", "152523", name="bo"))
    return Case(log, VE.UnexpectedEvent, "(actor.enroll) is not part of this label's proof", {"index": "bo"})


@case
def cuts_weigh_more_than_the_carcass(k: Keys) -> Case:
    return Case(edit(story(k), "slaughter", body={**slaughter().body, "carcass_mass_g": 2_999}), VE.InconsistentStory,
                "labelled cuts weigh more than the carcass", {"index": "label"})


@case
def shipped_by_someone_not_holding_the_lamb(k: Keys) -> Case:
    return Case(edit(story(k), "ship", actor=COOP), VE.InconsistentStory,
                f"shipment shp-1 was sent by {COOP}, but {AGENT} held the lamb", {"index": "ship"})


@case
def received_by_someone_else_than_the_addressee(k: Keys) -> Case:
    return Case(edit(story(k), "receive", actor=COOP), VE.InconsistentStory,
                f"shipment shp-1 was received by {COOP}, not its addressee", {"index": "receive"})


@case
def custody_ends_away_from_the_plant(k: Keys) -> Case:
    log = edit(edit(story(k), "ship", body={**ship("", AGENT, "shp-1", COOP).body}), "receive", actor=COOP)
    return Case(log, VE.InconsistentStory, f"the custody chain ends with {COOP}, not with the plant {PLANT}",
                {"index": "slaughter"})


@case
def key_put_on_the_ledger_twice(k: Keys) -> Case:
    rot = Ev("rotate", "key.rotate", OFFICE, {"id": PLANT, "add": [k.record(COOP)]})
    return Case(insert(story(k), "agent", rot), VE.InconsistentStory,
                f"key {k.kid(COOP)} is put on the ledger twice", {"index": "rotate", "key": k.kid(COOP)})


@case
def revocation_of_an_actor_not_in_the_bundle(k: Keys) -> Case:
    revoke = Ev("revoke", "actor.revoke", OFFICE, {"id": "ghost-1", "reason": "never was"})
    return Case(insert(story(k), "agent", revoke), VE.ActorNotProven,
                "actor.revoke of ghost-1, whose enrolment is not in the bundle",
                {"index": "revoke", "actor": "ghost-1"})


@case
def enrolment_left_out(k: Keys) -> Case:
    # from the last leaf down, the first leaf that relies on the cooperative is the agent's enrolment
    return Case([e for e in story(k) if e.name != "coop"], VE.ActorNotProven,
                f"(actor.enroll) relies on actor {COOP}, whose enrolment is not in the bundle",
                {"index": "agent", "actor": COOP})


@case
def signed_by_a_key_nobody_enrolled(k: Keys) -> Case:
    return Case(edit(story(k), "slaughter", signer="stranger"), VE.KeyNotProven,
                f"is signed by key {k.kid('stranger')}, which is neither a genesis key nor enrolled",
                {"index": "slaughter", "key": k.kid("stranger")})


@case
def signed_by_a_role_that_may_not(k: Keys) -> Case:
    return Case(edit(story(k), "issue", actor=COOP), VE.NotAuthorised, "a cooperative may not sign tags.issue",
                {"index": "issue", "actor": COOP})


@case
def signed_after_its_actor_was_revoked(k: Keys) -> Case:
    revoke = Ev("revoke", "actor.revoke", OFFICE, {"id": AGENT, "reason": "left the cooperative"})
    return Case(insert(story(k), "agent", revoke), VE.KeyNotValidAtTime, f"is signed by {AGENT} after it was revoked",
                {"index": "tag"})


@case
def signed_after_its_actors_revocation_though_dated_before(k: Keys) -> Case:
    # the revocation is committed before the agent's events but dated after them: the rules
    # refuse anything from a revoked actor, backdated or not, so the chain broke them
    revoke = Ev("revoke", "actor.revoke", OFFICE, {"id": AGENT, "reason": "left the cooperative"}, time=T + 5_000)
    return Case(insert(story(k), "agent", revoke), VE.KeyNotValidAtTime,
                f"is signed by {AGENT}, revoked earlier in the log (leaf 3)", {"index": "tag"})


@case
def signed_with_another_actors_key(k: Keys) -> Case:
    return Case(edit(story(k), "ship", signer=PLANT), VE.KeyNotProven,
                f"key {k.kid(PLANT)} belongs to {PLANT}, not to {AGENT}", {"index": "ship", "key": k.kid(PLANT)})


@case
def signed_before_its_key_was_enrolled(k: Keys) -> Case:
    # the new key is committed before the label, but the label is dated before the rotation
    rot = Ev("rotate", "key.rotate", OFFICE, {"id": PLANT, "add": [k.record("plant-new")]})
    log = edit(insert(story(k), "slaughter", rot), "label", signer="plant-new", time=T)
    return Case(log, VE.KeyNotValidAtTime, f"key {k.kid('plant-new')} was not yet enrolled at leaf",
                {"index": "label", "key": k.kid("plant-new")})


@case
def signed_with_an_expired_key(k: Keys) -> Case:
    plant = enroll(k, PLANT, "plant", "152502", name="plant")
    plant.body["keys"][0]["not_after"] = T + 55  # after the shipment (T + 50), before its receipt (T + 60)
    log = [plant if e.name == "plant" else e for e in story(k)]
    return Case(log, VE.KeyNotValidAtTime, f"key {k.kid(PLANT)} had expired at leaf",
                {"index": "receive", "key": k.kid(PLANT)})


@case
def signed_with_a_revoked_key(k: Keys) -> Case:
    rot = Ev("rotate", "key.rotate", OFFICE, {"id": PLANT, "revoke": [k.kid(PLANT)]})
    return Case(insert(story(k), "ship", rot), VE.KeyNotValidAtTime, f"key {k.kid(PLANT)} was revoked at leaf",
                {"index": "receive", "key": k.kid(PLANT)})


@case
def signed_after_its_keys_revocation_though_dated_before(k: Keys) -> Case:
    # likewise the plant's key, revoked by a rotation committed before the receiving
    rot = Ev("rotate", "key.rotate", OFFICE, {"id": PLANT, "revoke": [k.kid(PLANT)]}, time=T + 5_000)
    return Case(insert(story(k), "ship", rot), VE.KeyNotValidAtTime,
                f"key {k.kid(PLANT)} was revoked earlier in the log (leaf 6) than leaf 7",
                {"index": "receive", "key": k.kid(PLANT)})


@case
def range_for_an_unfit_recipient(k: Keys) -> Case:
    return Case(edit(story(k), "issue", body={**tags_issue().body, "to": PLANT}), VE.InconsistentStory,
                f"ear tags {FIRST}.. went to an unfit recipient {PLANT}", {"index": "issue"})


@case
def range_coded_for_another_banner_than_its_recipients(k: Keys) -> Case:
    log = [enroll(k, COOP, "cooperative", "152502", name="coop") if e.name == "coop" else e for e in story(k)]
    return Case(log, VE.InconsistentStory, f"ear tags {FIRST}.. went to an unfit recipient {COOP}", {"index": "issue"})


# the instants themselves: a key is valid from its enrolment's time to its not_after, both
# included; a revocation takes effect at its own time


@case
def signed_at_the_instant_its_key_was_enrolled(k: Keys) -> Case:
    rot = Ev("rotate", "key.rotate", OFFICE, {"id": PLANT, "add": [k.record("plant-new")]}, time=T + 75)
    log = edit(insert(story(k), "slaughter", rot), "label", signer="plant-new", time=T + 75)
    return Case(log, None, "")


@case
def signed_at_the_instant_its_key_expires(k: Keys) -> Case:
    plant = enroll(k, PLANT, "plant", "152502", name="plant")
    plant.body["keys"][0]["not_after"] = T + 80  # the label's time, the plant's last leaf
    return Case([plant if e.name == "plant" else e for e in story(k)], None, "")


@case
def signed_at_the_instant_its_key_was_revoked(k: Keys) -> Case:
    rot = Ev("rotate", "key.rotate", OFFICE, {"id": PLANT, "revoke": [k.kid(PLANT)]}, time=T + 70)
    log = insert(story(k), "ship", rot)  # the receipt, after it, is dated T + 70 too
    assert log[at(log, "receive")].time is None and at(log, "receive") == 7
    return Case(log, VE.KeyNotValidAtTime, f"key {k.kid(PLANT)} was revoked at leaf",
                {"index": "receive", "key": k.kid(PLANT)})


@case
def signed_at_the_instant_its_actor_was_revoked(k: Keys) -> Case:
    revoke = Ev("revoke", "actor.revoke", OFFICE, {"id": AGENT, "reason": "left the cooperative"}, time=T + 50)
    log = insert(story(k), "agent", revoke)  # the tagging, two leaves later, is dated T + 50 too
    assert log[at(log, "tag")].time is None and at(log, "tag") == 5
    return Case(log, VE.KeyNotValidAtTime, f"is signed by {AGENT} after it was revoked", {"index": "tag"})


# -- running them ------------------------------------------------------------------------------


@dataclass
class Built:
    case: Case
    bundle: bytes
    genesis: Genesis
    details: dict[str, Any]
    """The expected details, leaf names resolved to indexes."""


@pytest.fixture(scope="module")
def world() -> ApiWorld:
    w = ApiWorld(MemoryKV())
    w.season()  # forge_bundle certifies the next block of this chain
    return w


@pytest.fixture(scope="module")
def hsm_genesis(world: ApiWorld) -> Genesis:
    d = world.genesis.to_dict()
    return Genesis.from_dict({**d, "params": {**d["params"], "slaughter_requires_hsm": True}})


@pytest.fixture(scope="module")
def built(world: ApiWorld, hsm_genesis: Genesis) -> dict[str, Built]:
    k = Keys(world)
    out = {}
    for name, make in CASES.items():
        c = make(k)
        g = hsm_genesis if c.hsm else world.genesis
        ls = leaves(k, c.log)
        details = {key: (at(c.log, v) if key == "index" else [at(c.log, x) for x in v] if key == "indexes" else v)
                   for key, v in c.details.items()}
        out[name] = Built(c, forge_bundle(world, ls, list(range(len(ls))), label=LABEL, genesis=g), g, details)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_verify_label_names_the_broken_rule(name: str, built: dict[str, Built]) -> None:
    b = built[name]
    if b.case.error is None:
        report = verify_label(b.bundle, b.genesis, label=LABEL)
        assert report.label == LABEL and report.warnings == ()
        return
    with pytest.raises(VerificationError) as e:
        verify_label(b.bundle, b.genesis, label=LABEL)
    exc = e.value
    assert type(exc) is b.case.error, (exc.code, exc.message)
    assert b.case.message in exc.message, exc.message
    assert exc.details == b.details


_HARNESS = r"""
import { readFileSync } from "node:fs";

const V = await import(process.argv[2]);
const vectors = JSON.parse(readFileSync(process.argv[3], "utf8"));
const out = {};
for (const [name, c] of Object.entries(vectors.cases)) {
  try {
    const genesis = vectors.genesis[c.genesis];
    await V.verifyLabelBundle(c.bundle, { label: c.label, fingerprint: null, genesis });
    out[name] = [null, ""];
  } catch (e) {
    out[name] = e instanceof V.VerificationError ? [e.code, e.message] : ["crash", `${e && e.stack || e}`];
  }
}
process.stdout.write(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def js_verdicts(built: dict[str, Built], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """verify.js's [code, message] for every case's JSON bundle: one node process for all."""
    if not Path(NODE).exists():
        pytest.skip("node is not installed")
    geneses = {"plain": None, "hsm": None}
    cases = {}
    for name, b in built.items():
        which = "hsm" if b.case.hsm else "plain"
        geneses[which] = to_json(b.genesis.to_dict())
        cases[name] = {"bundle": to_json(codec.decode(b.bundle)), "label": LABEL, "genesis": which}
    got: dict[str, list[Any]] = run_js(tmp_path_factory.mktemp("story-js"), _HARNESS,
                                       {"cases": cases, "genesis": geneses})
    return got


@pytest.mark.parametrize("name", list(CASES))
def test_verify_js_gives_the_same_code(name: str, built: dict[str, Built], js_verdicts: dict[str, list[Any]]) -> None:
    b = built[name]
    code, message = js_verdicts[name]
    assert code == (b.case.error.code if b.case.error else None), message
    if b.case.error is not None:
        assert b.case.message in message, message


# -- a bundle past the size limit ---------------------------------------------------------------


def test_a_bundle_past_the_size_limit_is_refused_unread(built: dict[str, Built]) -> None:
    """Bytes or text longer than MAX_BUNDLE_BYTES are refused before they are parsed: the
    genuine JSON bundle padded with whitespace to the limit verifies, one byte more does not.
    (verify.js takes a parsed bundle: what it reads is bounded by the page's fetch, not here.)"""
    b = built["genuine"]
    text = json.dumps(to_json(codec.decode(b.bundle)))
    at_limit = text + " " * (MAX_BUNDLE_BYTES - len(text))
    assert verify_label(at_limit, b.genesis, label=LABEL).label == LABEL
    assert verify_label(at_limit.encode(), b.genesis, label=LABEL).label == LABEL
    with pytest.raises(VE.MalformedBundle, match="bundle text is too large"):
        verify_label(at_limit + " ", b.genesis, label=LABEL)
    with pytest.raises(VE.MalformedBundle, match=f"bundle is {MAX_BUNDLE_BYTES + 1} bytes; at most"):
        verify_label((at_limit + " ").encode(), b.genesis, label=LABEL)


# -- what no bundle reaches ----------------------------------------------------------------------
#
# * verify/label.py ``_verify``, InsufficientSignatures from verify_commit (-> InsufficientPower):
#   ``_check_certificate_shape`` has already summed the same (known, sorted, distinct)
#   precommits' power against the same total, and verify_commit raises for a bad signature
#   (-> BadCertificate) before it tallies, so the tally always reaches the quorum.
# * ``_check_authorised``: a herder agent whose cooperative is enrolled *after* it, a terminal
#   or a shipment naming an owner or addressee enrolled after it: the parent, owner and
#   addressee are referenced actors, so "names actor ... before its enrolment" answers first.
