"""The seeded season generator against a real node: every event it makes is accepted.

A season of 200 lambs is driven through ``Node.submit`` / ``produce_block`` over an
in-memory store; then its shape (counts, ids, times, masses, prices, check codes) and its
determinism are checked, and a resumed season plus a trickle of extra lambs go onto the
same chain without a collision.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from lambtrace.season import (
    CUTS,
    DAY_MS,
    PILOT_BANNERS,
    PREMIUM_FEN_PER_KG,
    SUMU,
    Cast,
    Season,
    make_cast,
    make_trace_office,
    serial_base,
)
from ledger.events import event_id
from ledger.genesis import Genesis, Params, Validator
from node.kv import MemoryKV
from node.node import Node
from node.store import ChainStore
from signer.software import SoftwareSigner, public_key_record

START = 1_780_000_000_000  # 2026-05-28: the season year is 2025
SPAN = 2 * DAY_MS
LAMBS = 200
SEED = 2018
CHAIN = "season-test"


@dataclass
class Run:
    season: Season
    cast: Cast
    node: Node
    events: list[dict[str, Any]]
    results: list[dict[str, Any]]


def _genesis(cast: Cast, validator: SoftwareSigner, genesis_time: int) -> Genesis:
    office = cast.trace_office
    return Genesis(
        chain=CHAIN,
        time=genesis_time,
        validators=(Validator("league", "152500", "ed25519", validator.public_key),),
        trace_office={
            "id": office.id,
            "banner": office.banner,
            "name": office.name,
            "keys": [public_key_record(office.signer)],
        },
        params=Params(tag_quotas=dict.fromkeys(PILOT_BANNERS, 1_000_000)),
    )


def _node(cast: Cast, now_ms: int) -> Node:
    validator = SoftwareSigner.from_private_bytes("ed25519", hashlib.sha256(b"season-test-validator").digest())
    genesis = _genesis(cast, validator, START - 60_000)
    return Node(ChainStore(MemoryKV(), genesis), genesis, name="league", signer=validator, clock=lambda: now_ms)


def _drive(node: Node, batches: Iterable[list[dict[str, Any]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Submit each batch, commit a block after each; every event must be accepted."""
    events: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for batch in batches:
        res = node.submit(batch)
        bad = [(r, ev["event"]["kind"]) for r, ev in zip(res, batch) if r["status"] != "accepted"]
        assert not bad, f"first rejection: {bad[0][1]} {bad[0][0].get('code')}: {bad[0][0].get('message')}"
        node.produce_block()
        events.extend(batch)
        results.extend(res)
    assert node.mempool_size == 0
    return events, results


def _season(seed: int, lambs: int = LAMBS, **kw: Any) -> tuple[Cast, Season]:
    rng = random.Random(seed)
    office = make_trace_office(rng)
    cast = make_cast(rng, office, lambs=lambs)
    return cast, Season(cast, chain=CHAIN, start_ms=START, lambs=lambs, rng=rng, **kw)


@pytest.fixture(scope="module")
def run() -> Run:
    cast, season = _season(SEED)
    node = _node(cast, START + SPAN + 60_000)
    events, results = _drive(node, season.batches(max_batch=97))
    return Run(season, cast, node, events, results)


def _of(run: Run, kind: str) -> list[dict[str, Any]]:
    return [ev["event"]["body"] for ev in run.events if ev["event"]["kind"] == kind]


# -- the chain accepts the season ---------------------------------------------------------------


def test_every_event_is_accepted_and_committed(run: Run) -> None:
    assert run.results and all(r["status"] == "accepted" for r in run.results)
    assert run.node.store.log_size == len(run.events)
    for ev in run.events:
        assert run.node.store.event_location(event_id(ev["event"])) is not None


def test_counts(run: Run) -> None:
    kinds = collections.Counter(ev["event"]["kind"] for ev in run.events)
    assert kinds["actor.enroll"] == len(run.cast.members)
    assert kinds["lamb.tag"] == LAMBS == len(run.season.tags)
    assert kinds["custody.ship"] == kinds["custody.receive"] > 0
    slaughtered = kinds["lamb.slaughter"]
    assert 0.6 * LAMBS <= slaughtered <= 0.8 * LAMBS  # about 70%, as in the pilot
    labelled_carcasses = {b["carcass"] for b in _of(run, "label.issue")}
    assert 0 < len(labelled_carcasses) < slaughtered  # not every carcass is labelled
    assert len(run.season.labels) == sum(len(b["labels"]) for b in _of(run, "label.issue"))
    st = run.node.store
    for tag in run.season.tags:
        assert st.state_get(f"t/{tag}") is not None
    for lab in run.season.labels:
        assert st.state_get(f"l/{lab}") is not None
    assert run.season.next_lamb == LAMBS


def test_event_times_increase_inside_the_span(run: Run) -> None:
    times = [ev["event"]["time"] for ev in run.events]
    assert all(START <= t <= START + SPAN for t in times)
    assert all(a < b for a, b in itertools.pairwise(times))
    assert times[-1] - times[0] > SPAN // 2  # spread over the span, not bunched


def test_phases_come_in_order(run: Run) -> None:
    order = ["actor.enroll", "tags.issue", "lamb.tag", "custody", "lamb.slaughter", "label.issue"]
    seen = [order.index("custody" if k.startswith("custody.") else k) for k in (e["event"]["kind"] for e in run.events)]
    assert seen == sorted(seen)
    enrolled: list[str] = [b["id"] for b in _of(run, "actor.enroll")]
    for b in _of(run, "actor.enroll"):
        if b["role"] == "herder_agent":
            assert enrolled.index(b["parent"]) < enrolled.index(b["id"])


# -- identifiers --------------------------------------------------------------------------------


def test_ids_are_unique(run: Run) -> None:
    ids = [event_id(ev["event"]) for ev in run.events]
    assert len(set(ids)) == len(ids)
    tags = [b["tag"] for b in _of(run, "lamb.tag")]
    chips = [b["chip"] for b in _of(run, "lamb.tag") if "chip" in b]
    shipments = [b["shipment"] for b in _of(run, "custody.ship")]
    carcasses = [b["carcass"] for b in _of(run, "lamb.slaughter")]
    labels = [lab["label"] for b in _of(run, "label.issue") for lab in b["labels"]]
    for xs in (tags, chips, shipments, carcasses, labels):
        assert xs and len(set(xs)) == len(xs)
    assert len(chips) >= 0.9 * LAMBS


def test_identifier_formats(run: Run) -> None:
    for b in _of(run, "lamb.tag"):
        assert re.fullmatch(r"3(\d{6})\d{8}", b["tag"])
        assert b["tag"][1:7] in PILOT_BANNERS
        assert "chip" not in b or re.fullmatch(r"156\d{12}", b["chip"])
        assert re.fullmatch(r"h-[0-9a-f]{8}", b["herder"])
        assert b["sumu"] in SUMU[b["tag"][1:7]]
        born = dt.date.fromisoformat(b["born"])
        assert born.year == run.season.year and 3 <= born.month <= 5
        assert b["sex"] in ("male", "female") and b["breed"]
    for b in _of(run, "custody.ship"):
        assert b["shipment"].startswith("shp-")
    for b in _of(run, "label.issue"):
        for lab in b["labels"]:
            assert re.fullmatch(r"l[0-9a-z]{10}", lab["label"])
            assert lab["cut"] in CUTS


def test_tag_ranges_are_disjoint_and_cover_the_lambs(run: Run) -> None:
    ranges = sorted((int(b["first"]), b["count"]) for b in _of(run, "tags.issue"))
    for (a, n), (b, _m) in itertools.pairwise(ranges):
        assert a + n <= b
    for body in _of(run, "tags.issue"):
        assert body["year"] == run.season.year
        assert body["to"].startswith(f"coop-{body['first'][1:7]}-")
    issued = sum(n for _a, n in ranges)
    assert LAMBS <= issued <= LAMBS + LAMBS // 10 + len(ranges)


# -- slaughter, labels, prices ---------------------------------------------------------------------


def test_label_masses_fit_their_carcass(run: Run) -> None:
    mass = {b["carcass"]: b["carcass_mass_g"] for b in _of(run, "lamb.slaughter")}
    labelled: collections.Counter[str] = collections.Counter()
    for b in _of(run, "label.issue"):
        assert 1 <= len(b["labels"]) <= 4
        labelled[b["carcass"]] += sum(lab["net_mass_g"] for lab in b["labels"])
    for carcass, m in labelled.items():
        assert 0 < m <= mass[carcass]
        rec = run.node.store.state_get(f"c/{carcass}")
        assert rec is not None
        assert rec["labelled_mass_g"] == m <= rec["carcass_mass_g"]
    assert all(15_000 <= m <= 25_000 for m in mass.values())


def test_dates_follow_the_lamb(run: Run) -> None:
    born = {b["tag"]: dt.date.fromisoformat(b["born"]) for b in _of(run, "lamb.tag")}
    killed = {}
    for b in _of(run, "lamb.slaughter"):
        day = dt.date.fromisoformat(b["date"])
        assert day > born[b["tag"]] + dt.timedelta(days=60)
        assert day.year == run.season.year
        killed[b["carcass"]] = day
    for b in _of(run, "label.issue"):
        day = killed[b["carcass"]]
        for lab in b["labels"]:
            assert day <= dt.date.fromisoformat(lab["packed"]) <= day + dt.timedelta(days=3)


def test_prices_carry_the_premium_mostly(run: Run) -> None:
    kills = _of(run, "lamb.slaughter")
    for b in kills:
        assert b["price_fen_per_kg"] >= 0 and b["market_price_fen_per_kg"] >= 0
        assert 6000 <= b["market_price_fen_per_kg"] <= 7000
        assert b["quarantine_cert"]
    premium = [b for b in kills if b["price_fen_per_kg"] >= b["market_price_fen_per_kg"] + PREMIUM_FEN_PER_KG]
    short = {b["tag"]: b["market_price_fen_per_kg"] + PREMIUM_FEN_PER_KG - b["price_fen_per_kg"]
             for b in kills if b not in premium}
    assert len(premium) > 0.8 * len(kills)
    assert short and short == run.season.underpaid  # a premium audit has something to find


def test_check_codes_open_their_commitments(run: Run) -> None:
    assert set(run.season.check_codes) == set(run.season.labels)
    for b in _of(run, "label.issue"):
        for lab in b["labels"]:
            code, check = run.season.check_codes[lab["label"]]
            assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{12}", code) and check == lab["check"]
            preimage = b"lambtrace/check/v1\x00" + lab["label"].encode() + b"\x00" + code.encode()
            assert hashlib.sha256(preimage).digest() == lab["check"]
    codes = [c for c, _ in run.season.check_codes.values()]
    assert len(set(codes)) == len(codes)


# -- the cast -------------------------------------------------------------------------------------


def test_cast_shape(run: Run) -> None:
    cast = run.cast
    assert cast.trace_office.id == "league-trace-office" and cast.trace_office.banner == "152500"
    offices = cast.by_role("banner_office")
    assert sorted(m.banner for m in offices) == sorted(PILOT_BANNERS)
    for b in PILOT_BANNERS:
        coops = [m for m in cast.by_role("cooperative") if m.banner == b]
        assert 1 <= len(coops) <= 3
        for c in coops:
            assert re.fullmatch(rf"coop-{b}-\d\d", c.id) and c.name.endswith("牧民专业合作社")
            for a in cast.agents_of(c.id):
                assert re.fullmatch(rf"{c.id.replace('coop', 'agent')}-\d\d", a.id)
    plants = cast.by_role("plant")
    assert 2 <= len(plants) <= 17
    assert all(p.signer.alg == "ecdsa-p256" for p in plants)
    assert all(m.signer.alg == "ed25519" for m in cast.members if m.role != "plant")
    assert len(cast.by_role("regulator")) == 1
    ids = [m.id for m in cast.members]
    assert len(set(ids)) == len(ids)


def test_cast_scales_with_the_season() -> None:
    small = make_cast(random.Random(1), make_trace_office(random.Random(0)), lambs=200)
    big = make_cast(random.Random(1), make_trace_office(random.Random(0)), lambs=100_000)
    assert len(small.by_role("plant")) == 2 and len(big.by_role("plant")) == 17
    assert len(big.by_role("herder_agent")) > 3 * len(small.by_role("herder_agent"))


def test_cast_from_other_keys_has_the_same_members() -> None:
    made: dict[str, SoftwareSigner] = {}

    def keys(member_id: str, alg: str) -> SoftwareSigner:
        made[member_id] = SoftwareSigner.from_private_bytes(alg, hashlib.sha256(member_id.encode()).digest())
        return made[member_id]

    a = make_cast(random.Random(5), make_trace_office(random.Random(4)), lambs=500)
    b = make_cast(random.Random(5), make_trace_office(random.Random(4), keys=keys), lambs=500, keys=keys)
    strip = [(m.id, m.role, m.banner, m.name, m.parent) for m in a.members]
    assert strip == [(m.id, m.role, m.banner, m.name, m.parent) for m in b.members]
    assert all(m.signer is made[m.id] for m in b.members)
    assert b.trace_office.signer is made["league-trace-office"]


# -- determinism --------------------------------------------------------------------------------


def _ids(seed: int) -> list[bytes]:
    _cast, season = _season(seed)
    return [event_id(ev["event"]) for batch in season.batches() for ev in batch]


def test_same_seed_same_events_other_seed_other_events(run: Run) -> None:
    ids = [event_id(ev["event"]) for ev in run.events]
    assert _ids(SEED) == ids
    other = _ids(SEED + 1)
    assert other != ids and not set(other) & set(ids)


def test_batches_can_be_replayed() -> None:
    _cast, season = _season(11, lambs=50)
    first = [event_id(ev["event"]) for batch in season.batches(max_batch=7) for ev in batch]
    again = [event_id(ev["event"]) for batch in season.batches(max_batch=1000) for ev in batch]
    assert first == again
    assert all(len(batch) <= 7 for batch in season.batches(max_batch=7))


# -- a later season and a trickle on the same chain -------------------------------------------------


def test_resumed_season_and_trickle_do_not_collide() -> None:
    rng = random.Random(SEED)
    cast = make_cast(rng, make_trace_office(rng), lambs=120)
    node = _node(cast, START + 5 * DAY_MS)
    first = Season(cast, chain=CHAIN, start_ms=START, lambs=120, rng=rng)
    ev1, _ = _drive(node, first.batches())
    second = Season(
        cast, chain=CHAIN, start_ms=START + SPAN + 1, lambs=80, rng=random.Random(99), first_lamb=first.next_lamb
    )
    assert not second.enroll
    ev2, _ = _drive(node, second.batches())
    assert not set(first.tags) & set(second.tags)
    assert not set(first.labels) & set(second.labels)
    trickle_from = second.next_lamb
    ev3, _ = _drive(node, second.extra_lambs(45, chunk=20, clock=lambda: START + 4 * DAY_MS))
    kinds = collections.Counter(e["event"]["kind"] for e in ev3)
    assert kinds["lamb.tag"] == kinds["lamb.slaughter"] == 45 and kinds["label.issue"] >= 45
    assert second.next_lamb == trickle_from + 45
    assert all(e["event"]["time"] >= START + 4 * DAY_MS for e in ev3)
    chips = [e["event"]["body"].get("chip") for e in ev1 + ev2 + ev3 if e["event"]["kind"] == "lamb.tag"]
    chips = [c for c in chips if c]
    assert len(set(chips)) == len(chips)


def test_serial_space_of_consecutive_seasons() -> None:
    for f in range(0, 300, 7):
        for n in range(1, 300):
            assert n + n // 10 <= serial_base(f + n) - serial_base(f)


# -- quotas --------------------------------------------------------------------------------------


def test_quota_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="quota"):
        _season(3, lambs=300, tag_quotas=dict.fromkeys(PILOT_BANNERS, 5))


def test_quota_trims_the_spare_tags() -> None:
    _cast, free = _season(3, lambs=300)
    lambs = collections.Counter(tag[1:7] for tag in free.tags)
    tight = {b: lambs[b] + (n - lambs[b]) // 2 for b, n in free.issued_per_banner.items()}
    assert tight != free.issued_per_banner
    _cast, season = _season(3, lambs=300, tag_quotas=tight)
    assert season.issued_per_banner == tight
    assert season.tags == free.tags
