"""Fraud and anomaly signals (``GET /v1/alerts``) and the premium audit route
(``GET /v1/reports/premium``), each signal provoked over real HTTP."""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections.abc import Iterator
from typing import Any

import pytest

from api.alerts import LedgerFold, RejectLog
from helpers import OFFICE, Served, World, post_from
from lambtrace.epcis import Committed
from ledger.events import parse_unverified
from node.kv import MemoryKV
from test_rejections_http import A, B, base, slaughtered, to_plant


@pytest.fixture
def served() -> Iterator[tuple[World, Served]]:
    w = World()
    s = Served(w.new_node())
    results = s.submit(base(w))
    assert all(r["status"] == "accepted" for r in results), results
    s.commit()
    yield w, s
    s.close()


def _alerts(s: Served, **params: Any) -> dict[str, Any]:
    r = s.http.get(s.url + "/v1/alerts", params=params, timeout=30)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _commit(s: Served, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = s.submit(events)
    assert all(r["status"] == "accepted" for r in results), results
    s.commit()
    return results


def _refused(s: Served, event: dict[str, Any], code: str) -> str:
    (r,) = s.submit([event])
    assert (r["status"], r["code"]) == ("rejected", code), r
    return str(r["id"])


def _one(s: Served, kind: str) -> dict[str, Any]:
    found = _alerts(s, kind=kind)["alerts"]
    assert len(found) == 1, found
    return dict(found[0])


def _slaughter_at(w: World, tag: str, carcass: str, price: int, market: int = 6500,
                  mass_g: int = 20_000) -> dict[str, Any]:
    return w.ev("lamb.slaughter", "plant", {
        "tag": tag, "carcass": carcass, "carcass_mass_g": mass_g, "quarantine_cert": "QC-1",
        "price_fen_per_kg": price, "market_price_fen_per_kg": market, "date": "2026-10-01"})


def test_no_alerts_on_an_honest_chain(served: tuple[World, Served]) -> None:
    w, s = served
    _commit(s, slaughtered(w))  # pays market + 100 fen/kg exactly
    answer = _alerts(s)
    assert answer["total"] == 0 and answer["alerts"] == []
    assert set(answer["counts"]) >= {"premium_shortfall", "tag_outside_banner", "double_receipt"}
    assert answer["height"] == s.node.store.height


def test_premium_shortfall_from_the_ledger(served: tuple[World, Served]) -> None:
    w, s = served
    results = _commit(s, [*to_plant(w), _slaughter_at(w, A, "c-1", price=6550)])
    a = _one(s, "premium_shortfall")
    assert a["source"] == "ledger"
    assert a["evidence"]["events"] == [results[-1]["id"]]
    assert a["evidence"]["shortfall_fen_per_kg"] == 50
    assert a["evidence"]["shortfall_fen"] == 1000  # 50 fen/kg x 20 kg
    assert a["subject"]["plant"] == "plant" and a["subject"]["tags"] == [A]
    last = s.node.store.last_header
    assert last is not None and a["time"] == last.time


def test_tag_applied_outside_its_banner_is_recorded(served: tuple[World, Served]) -> None:
    w, s = served
    tag = "315252400000001"  # issued to coop2 of banner 152524
    rid = _refused(s, w.tag("agent", tag), "tag_wrong_owner")
    a = _one(s, "tag_outside_banner")
    assert a["source"] == "rejected_attempt"
    rej = a["evidence"]["rejected"]
    assert (rej["id"], rej["actor"], rej["code"], rej["kind"]) == (rid, "agent", "tag_wrong_owner", "lamb.tag")
    assert a["subject"]["issued_to"] == "coop2" and a["subject"]["tags"] == [tag]
    assert a["evidence"]["events"], "the tags.issue event of the range is evidence"
    # re-sending the same attempt records nothing new; the ledger is untouched
    before = s.http.get(s.url + "/v1/status").json()["log_size"]
    _refused(s, w.tag("agent", tag), "tag_wrong_owner")
    assert _alerts(s)["total"] == 1
    s.commit()
    assert s.http.get(s.url + "/v1/status").json()["log_size"] == before


def test_tag_presented_again_after_slaughter(served: tuple[World, Served]) -> None:
    w, s = served
    results = _commit(s, slaughtered(w))
    slaughter_id = results[-1]["id"]
    r1 = _refused(s, w.slaughter("plant", A, "c-2"), "lamb_slaughtered")
    r2 = _refused(s, w.ev("lamb.tag", "coop", w.tag("agent", A)["event"]["body"]), "tag_already_applied")
    found = _alerts(s, kind="tag_after_slaughter")["alerts"]
    assert {a["evidence"]["rejected"]["id"] for a in found} == {r1, r2}
    for a in found:
        assert slaughter_id in a["evidence"]["events"]
    # a tag applied twice to a live lamb is its own kind
    _commit(s, [w.tag("agent", B)])
    _refused(s, w.ev("lamb.tag", "coop", w.tag("agent", B)["event"]["body"]), "tag_already_applied")
    assert _one(s, "tag_reapplied")["subject"]["tags"] == [B]


def test_lamb_shipped_by_two_holders_or_received_twice(served: tuple[World, Served]) -> None:
    w, s = served
    _commit(s, to_plant(w))
    r_ship = _refused(s, w.ship("agent", "shp-2", "coop", [A]), "not_holder")  # the agent shipped it away
    r_recv = _refused(s, w.ev("custody.receive", "plant", {"shipment": "shp-1"}, t=w.now + 1), "shipment_received")
    ship = _one(s, "double_shipment")
    assert ship["evidence"]["rejected"]["id"] == r_ship and ship["subject"]["actor"] == "agent"
    recv = _one(s, "double_receipt")
    assert recv["evidence"]["rejected"]["id"] == r_recv
    assert recv["subject"]["shipment"] == "shp-1" and recv["subject"]["tags"] == [A]
    assert len(recv["evidence"]["events"]) == 2  # the committed ship and receive of shp-1


def test_plant_slaughtering_a_lamb_it_never_received(served: tuple[World, Served]) -> None:
    w, s = served
    rid = _refused(s, w.slaughter("plant2", A, "c-9"), "not_holder")
    a = _one(s, "slaughter_without_receipt")
    assert a["evidence"]["rejected"]["id"] == rid and a["subject"]["actor"] == "plant2"


def test_slaughter_without_receipt_on_the_ledger_is_flagged() -> None:
    """The rules refuse it, so the fold is fed directly (as if the rules were bypassed)."""
    w = World()
    fold = LedgerFold()
    events = [w.enroll("plant", "plant", "152502"), w.slaughter("plant", A, "c-1")]
    for i, e in enumerate(events):
        fold.feed(Committed(1, w.now, i, parse_unverified(e)))
    (a,) = fold.alerts
    assert a["kind"] == "slaughter_without_receipt" and a["subject"] == {"plant": "plant", "tags": [A]}


def test_label_scanned_beyond_the_threshold(served: tuple[World, Served]) -> None:
    w, s = served
    _commit(s, [*slaughtered(w), w.label("plant", "c-1", [("L1", 1000)])])
    # 51 scanners (a client's own scans count once an hour)
    for i in range(51):
        assert post_from(f"127.0.0.{i + 2}", s.url + "/v1/labels/L1/scans")[0] == 200
    a = _one(s, "label_suspect_clone")
    assert a["subject"]["label"] == "L1" and a["evidence"]["scans"]["scans"] == 51
    assert "scans_over_threshold" in a["message"]


def test_filters_order_and_bad_params(served: tuple[World, Served]) -> None:
    w, s = served
    _commit(s, [*to_plant(w), _slaughter_at(w, A, "c-1", price=6500)])
    _refused(s, w.tag("agent", "315252400000001"), "tag_wrong_owner")
    answer = _alerts(s)
    assert answer["total"] == 2
    times = [a["time"] for a in answer["alerts"]]
    assert times == sorted(times, reverse=True)
    assert {a["kind"] for a in answer["alerts"]} == {"tag_outside_banner", "premium_shortfall"}
    assert _alerts(s, limit=1)["alerts"] == answer["alerts"][:1]
    assert _alerts(s, limit=1)["total"] == 2
    assert _alerts(s, since=times[0] + 1)["total"] == 0
    assert _alerts(s, since=times[-1])["total"] == 2
    for bad in ({"kind": "nope"}, {"since": "-1"}, {"limit": "0"}, {"limit": "x"}):
        r = s.http.get(s.url + "/v1/alerts", params=bad, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_param", (bad, r.text)
    r = s.http.get(s.url + "/v1/alerts", headers={"Accept": "application/msgpack"}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/msgpack"


def test_reject_log_is_bounded_and_survives_reopening() -> None:
    w = World()
    node = w.new_node()
    kv = MemoryKV()
    log = RejectLog(kv, max_records=3)
    w.enroll("agent", "herder_agent", "152523", parent="coop")  # a key to sign with
    for n in range(5):
        e = w.tag("agent", f"3152524000000{n:02d}")
        eid = hashlib.sha256(str(n).encode()).hexdigest()
        r = {"id": eid, "status": "rejected", "code": "tag_wrong_owner", "message": "m"}
        assert log.record(node, [e], [r]) == 1
        assert log.record(node, [e], [r]) == 0
    assert len(log) == 3
    recs = log.records()
    assert [rec["id"].hex() for rec in recs] == [hashlib.sha256(str(n).encode()).hexdigest() for n in (2, 3, 4)]
    assert sum(1 for _ in kv.scan(b"A")) == 6
    again = RejectLog(kv, max_records=3)
    assert len(again) == 3
    ok = {"id": "00" * 32, "status": "rejected", "code": "bad_signature", "message": "m"}
    assert again.record(node, [w.tag("agent", B)], [ok]) == 0  # not a fraud code


def test_premium_report_json_and_csv(served: tuple[World, Served]) -> None:
    w, s = served
    _commit(s, [w.tag("agent", B), *to_plant(w), *to_plant(w, B, "shp-2"),
                _slaughter_at(w, A, "c-1", price=6600), _slaughter_at(w, B, "c-2", price=6520)])
    r = s.http.get(s.url + "/v1/reports/premium", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    rep = r.json()
    assert rep["chain"] == w.chain and rep["height"] == s.node.store.height
    assert rep["premium_due_fen_per_kg"] == 100
    (plant,) = rep["plants"]
    assert (plant["id"], plant["lambs"], plant["carcass_mass_g"]) == ("plant", 2, 40_000)
    assert plant["premium_due_fen"] == 4000 and plant["premium_paid_fen"] == 2000 + 400
    assert plant["shortfall_fen"] == 1600 and plant["lambs_short"] == 1
    (coop,) = rep["cooperatives"]
    assert coop["id"] == "coop" and coop["shortfall_fen"] == 1600
    assert rep["herders"][0]["id"] == "h-0001" and rep["total"]["lambs"] == 2
    c = s.http.get(s.url + "/v1/reports/premium", params={"format": "csv"}, timeout=30)
    assert c.status_code == 200 and c.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert [row["scope"] for row in rows] == ["plant", "cooperative", "herder", "total"]
    assert rows[0]["shortfall_fen"] == "1600"
    bad = s.http.get(s.url + "/v1/reports/premium", params={"format": "xml"}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_param"
    # cached by height: a later block is folded in on the next request
    _commit(s, [w.ev("recall", OFFICE, {"targets": [{"type": "lamb", "id": A}], "reason": "r"})])
    assert s.http.get(s.url + "/v1/reports/premium", timeout=30).json()["height"] == s.node.store.height


def test_season_dishonest_attempts_become_alerts() -> None:
    """The demo's dishonest actors: every attempt refused with its code, listed as its alert."""
    from test_season import LAMBS, SEED, SPAN, START, _drive, _node

    from lambtrace.season import Season, make_cast, make_trace_office

    rng = random.Random(SEED)
    cast = make_cast(rng, make_trace_office(rng), lambs=LAMBS)
    node = _node(cast, START + SPAN + 60_000)
    season = Season(cast, chain="season-test", start_ms=START, lambs=LAMBS, rng=rng)
    _events, results = _drive(node, season.batches())
    assert all(r["status"] == "accepted" for r in results)
    attempts = season.dishonest_attempts()
    assert {a.alert for a in attempts} >= {"tag_outside_banner", "tag_after_slaughter", "double_shipment",
                                           "double_receipt", "slaughter_without_receipt"}
    s = Served(node)
    try:
        results = s.submit([a.event for a in attempts])
        assert [(r["status"], r["code"]) for r in results] == [("rejected", a.code) for a in attempts]
        answer = _alerts(s, limit=10_000)
        kinds = [a["kind"] for a in answer["alerts"] if a["source"] == "rejected_attempt"]
        assert sorted(kinds) == sorted(a.alert for a in attempts)
        assert answer["counts"]["premium_shortfall"] == len(season.underpaid) > 0
    finally:
        s.close()
