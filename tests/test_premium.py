"""The traced-lamb premium audit: per plant, cooperative and herder pseudonym."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from helpers import T0, Served, World
from lambtrace.cli import main
from lambtrace.epcis import Committed
from lambtrace.premium import csv_text, premium_report
from ledger.events import parse_unverified
from test_rejections_http import base, slaughtered

T1, T2, T3 = "315252300000011", "315252300000012", "315252400000013"


def _tag(w: World, actor: str, tag: str, herder: str) -> dict[str, Any]:
    return w.ev("lamb.tag", actor, {"tag": tag, "herder": herder, "born": "2026-03-10", "breed": "苏尼特羊",
                                    "sex": "male", "sumu": "满都拉图镇"})


def _kill(w: World, plant: str, tag: str, carcass: str, mass_g: int, price: int, market: int) -> dict[str, Any]:
    return w.ev("lamb.slaughter", plant, {
        "tag": tag, "carcass": carcass, "carcass_mass_g": mass_g, "quarantine_cert": "QC-1",
        "price_fen_per_kg": price, "market_price_fen_per_kg": market, "date": "2026-10-01"})


def _report() -> dict[str, Any]:
    """Two plants, two cooperatives, three herders; the audit is a pure fold, so the
    events are fed to it directly (the rules' checks are covered elsewhere)."""
    w = World()
    events = [
        w.enroll("coop", "cooperative", "152523"),
        w.enroll("agent", "herder_agent", "152523", parent="coop"),
        w.enroll("coop2", "cooperative", "152524"),
        w.enroll("honest", "plant", "152502"),
        w.enroll("stingy", "plant", "152502"),
        _tag(w, "agent", T1, "h-0001"),   # coop, through its herder agent
        _tag(w, "agent", T2, "h-0002"),
        _tag(w, "coop2", T3, "h-0001"),   # same pseudonym, another cooperative: another herder
        _kill(w, "honest", T1, "c-1", 18_000, 6600, 6500),   # market + 1 yuan/kg: premium in full
        _kill(w, "stingy", T2, "c-2", 17_500, 6550, 6500),   # half the premium
        _kill(w, "stingy", T3, "c-3", 20_000, 6400, 6500),   # below market
    ]
    return premium_report(Committed(1, T0, i, parse_unverified(e)) for i, e in enumerate(events))


def test_plant_paying_market_plus_one_yuan_has_no_shortfall() -> None:
    r = _report()
    honest = next(p for p in r["plants"] if p["id"] == "honest")
    assert honest["lambs"] == 1 and honest["carcass_mass_g"] == 18_000 and honest["carcass_kg"] == 18.0
    assert (honest["premium_due_fen"], honest["premium_paid_fen"], honest["shortfall_fen"]) == (1800, 1800, 0)
    assert (honest["paid_fen"], honest["market_value_fen"]) == (6600 * 18, 6500 * 18)
    assert honest["lambs_short"] == 0


def test_plant_paying_less_shows_the_exact_shortfall() -> None:
    r = _report()
    stingy = next(p for p in r["plants"] if p["id"] == "stingy")
    # c-2: due 100 x 17.5 = 1750, paid 50 x 17.5 = 875 -> 875 short
    # c-3: due 100 x 20 = 2000, paid -100 x 20 = -2000 -> 4000 short
    assert stingy["lambs"] == 2 and stingy["carcass_mass_g"] == 37_500
    assert stingy["premium_due_fen"] == 3750
    assert stingy["premium_paid_fen"] == 875 - 2000
    assert stingy["shortfall_fen"] == 875 + 4000
    assert stingy["lambs_short"] == 2
    assert stingy["paid_fen"] == 6550 * 175 // 10 + 6400 * 20
    assert stingy["avg_market_price_fen_per_kg"] == 6500


def test_sums_per_cooperative_and_herder() -> None:
    r = _report()
    coops = {c["id"]: c for c in r["cooperatives"]}
    assert set(coops) == {"coop", "coop2"}
    assert (coops["coop"]["lambs"], coops["coop"]["shortfall_fen"]) == (2, 875)
    assert (coops["coop"]["premium_due_fen"], coops["coop"]["premium_paid_fen"]) == (1800 + 1750, 1800 + 875)
    assert (coops["coop2"]["lambs"], coops["coop2"]["shortfall_fen"]) == (1, 4000)
    herders = {(h["cooperative"], h["id"]): h for h in r["herders"]}
    assert set(herders) == {("coop", "h-0001"), ("coop", "h-0002"), ("coop2", "h-0001")}
    assert herders[("coop", "h-0001")]["shortfall_fen"] == 0
    assert herders[("coop", "h-0002")]["shortfall_fen"] == 875
    assert herders[("coop2", "h-0001")]["shortfall_fen"] == 4000
    total = r["total"]
    assert total["lambs"] == 3 and total["shortfall_fen"] == 4875
    for scope in ("plants", "cooperatives", "herders"):
        assert sum(x["shortfall_fen"] for x in r[scope]) == total["shortfall_fen"]
        assert sum(x["carcass_mass_g"] for x in r[scope]) == total["carcass_mass_g"]
    rows = list(csv.DictReader(io.StringIO(csv_text(r))))
    assert len(rows) == 2 + 2 + 3 + 1
    assert {(x["scope"], x["id"], x["shortfall_fen"]) for x in rows} >= {
        ("plant", "stingy", "4875"), ("cooperative", "coop2", "4000"), ("herder", "h-0002", "875"),
        ("total", "all", "4875")}


def test_report_premium_command_over_url(tmp_path: Path, capsys: Any) -> None:
    w = World()
    s = Served(w.new_node())
    try:
        assert all(r["status"] == "accepted" for r in s.submit([*base(w), *slaughtered(w)]))
        s.commit()
        assert main(["report", "premium", "--quiet", "--url", s.url]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["height"] == 1 and report["chain"] == w.chain
        assert [(p["id"], p["lambs"], p["shortfall_fen"]) for p in report["plants"]] == [("plant", 1, 0)]
        assert [(h["cooperative"], h["id"]) for h in report["herders"]] == [("coop", "h-0001")]
        out = tmp_path / "premium.csv"
        assert main(["report", "premium", "--quiet", "--url", s.url, "--out", str(out), "--format", "csv"]) == 0
        rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
        assert [r["scope"] for r in rows] == ["plant", "cooperative", "herder", "total"]
        assert rows[0]["premium_due_fen"] == rows[0]["premium_paid_fen"] == "1800"
    finally:
        s.close()
