"""Scan counts and check-code verification over real HTTP (api/checks.py, docs/adr/0008).

None of it is a ledger event: the chain (height, log root, state hash) must be unchanged
by every scan and check, and the records must survive a node restart (LevelDB)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from api import create_app
from api.checks import (
    CheckConfig,
    LabelChecks,
    WrongCodeLimiter,
    check_commitment,
    normalize_code,
    place_key,
)
from helpers import Served, World, post_from
from lambtrace import season
from node.kv import LevelKV, MemoryKV
from test_rejections_http import base, slaughtered

CODE = "7KQ2-M9XD-4HRT"
CANON = "7KQ2M9XD4HRT"
LABEL = "l-0001"
OTHER = "l-0002"


def issue(w: World) -> dict[str, Any]:
    return w.ev("label.issue", "plant", {"carcass": "c-1", "labels": [
        {"label": lid, "cut": "羊腿", "net_mass_g": 3000, "packed": "2026-10-02", "check": check_commitment(lid, CANON)}
        for lid in (LABEL, OTHER)]})


def chain_of(s: Served) -> dict[str, Any]:
    st = s.http.get(s.url + "/v1/status", timeout=10).json()
    return {"height": st["height"], "log_root": st["log_root"], "state": s.node.store.state_hash()}


@pytest.fixture
def world() -> World:
    return World()


def start(w: World, kv: Any, *, setup: bool) -> Served:
    s = Served(w.new_node(kv))
    if setup:
        for batch in (base(w), slaughtered(w), [issue(w)]):
            results = s.submit(batch)
            assert all(r["status"] == "accepted" for r in results), results
            s.commit()
    return s


@pytest.fixture
def served(world: World) -> Iterator[Served]:
    s = start(world, MemoryKV(), setup=True)
    yield s
    s.close()


def post(s: Served, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    return s.http.post(s.url + path, json=body, timeout=10) if body is not None else \
        s.http.post(s.url + path, timeout=10)


def test_scheme_is_the_seasons_and_reads_typed_codes() -> None:
    assert check_commitment(LABEL, CANON) == season.check_commitment(LABEL, CANON) == hashlib.sha256(
        b"lambtrace/check/v1\x00" + LABEL.encode() + b"\x00" + CANON.encode()).digest()
    assert normalize_code(CODE) == normalize_code(" 7kq2 m9xd 4hrt ") == CANON
    assert normalize_code("OIL0-0000-0000") == "011000000000"
    assert normalize_code("7KQ2-M9XD-4HR") is None and normalize_code("7KQ2-M9XD-4HRU") is None
    # a Chinese input method in full-width mode, and a phone's dashes
    assert normalize_code("７ＫＱ２－ｍ９ｘｄ\u3000４ＨＲＴ") == normalize_code("7KQ2\u2013M9XD\u20104HRT") == CANON
    assert normalize_code("7KQ2·M9XD·4HRT") is None
    code = season.new_check_code(random.Random(1))
    assert normalize_code(season.format_check_code(code)) == code and len(code) == 12


def test_right_code_records_the_first_verification(served: Served, world: World) -> None:
    before = chain_of(served)
    r = post(served, f"/v1/labels/{LABEL}/check", {"code": CODE, "place": " 北京  朝阳 "})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["ok"] is True and first["first"] is True
    assert first["first_verified_at"] == world.now + 1000 and first["first_place"] == "北京 朝阳"
    assert first["verifications"] == 1 and first["suspect_clone"] is False and first["reasons"] == []
    again = post(served, f"/v1/labels/{LABEL}/check", {"code": CANON.lower(), "place": "北京 朝阳"}).json()
    assert again["first"] is False and again["verifications"] == 2
    assert (again["first_verified_at"], again["first_place"]) == (first["first_verified_at"], "北京 朝阳")
    assert again["suspect_clone"] is False  # same place, differently spaced
    got = served.http.get(served.url + f"/v1/labels/{LABEL}/check", timeout=10).json()
    assert got["first_place"] == "北京 朝阳" and got["verifications"] == 2
    other = served.http.get(served.url + f"/v1/labels/{OTHER}/scans", timeout=10).json()
    assert other["first_verified_at"] is None and other["verifications"] == 0 and other["scans"] == 0
    assert chain_of(served) == before


def test_wrong_codes_are_refused_then_rate_limited(served: Served) -> None:
    before = chain_of(served)
    for left in (4, 3, 2, 1, 0):
        r = post(served, f"/v1/labels/{LABEL}/check", {"code": "AAAA-AAAA-AAAA"})
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == "bad_code" and err["reason"] == "mismatch" and err["attempts_left"] == left
    r = post(served, f"/v1/labels/{LABEL}/check", {"code": CODE})
    assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_attempts"
    assert r.json()["error"]["retry_after_s"] > 0
    assert r.headers["Retry-After"] == str(r.json()["error"]["retry_after_s"])  # clients back off by the header
    # another label is not locked for this client; malformed codes are not guesses
    bad = post(served, f"/v1/labels/{OTHER}/check", {"code": "123"})
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == "format"
    assert post(served, f"/v1/labels/{OTHER}/check", {"code": CODE}).status_code == 200
    assert post(served, f"/v1/labels/{LABEL}/check", {"place": "x"}).json()["error"]["code"] == "bad_code"
    assert post(served, f"/v1/labels/{LABEL}/check", {"code": CODE, "place": "x" * 65}).status_code == 400
    assert post(served, "/v1/labels/l-9999/check", {"code": CODE}).status_code == 404
    assert post(served, "/v1/labels/bad%20id/check", {"code": CODE}).status_code == 400
    assert chain_of(served) == before


def test_limiter_window_and_bounds() -> None:
    lim = WrongCodeLimiter(limit=2, window_ms=1000, max_keys=3)
    assert lim.add("a", 0) == 1 and lim.add("a", 10) == 0
    assert lim.retry_after_ms("a", 500) == 500 and lim.retry_after_ms("a", 999) == 1
    assert lim.retry_after_ms("a", 1000) == 0  # the first wrong code has left the window
    for k in "bcde":
        lim.add(k, 2000)
    assert len(lim._hits) == 3 and "b" not in lim._hits
    store = LabelChecks(MemoryKV(), CheckConfig(wrong_per_client=5, wrong_per_label=3))
    commitment = check_commitment(LABEL, CANON)
    for client in (b"1", b"2", b"3"):
        with pytest.raises(Exception, match="does not match"):
            store.check_code(LABEL, commitment, "AAAAAAAAAAAA", 0, None, client)
    with pytest.raises(Exception, match="too many"):  # the label's own limit, whoever asks
        store.check_code(LABEL, commitment, CANON, 1, None, b"4")
    assert store.check_code(LABEL, commitment, CANON, 600_000, None, b"4")["ok"] is True



def test_a_wall_clock_stepped_back_does_not_prolong_a_lockout() -> None:
    """The windows run on the monotonic clock; the wall clock only stamps the record."""
    store = LabelChecks(MemoryKV(), CheckConfig(wrong_per_client=2, wrong_per_label=10))
    commitment = check_commitment(LABEL, CANON)
    wall, mono = 1_800_000_000_000, 5_000
    for _ in range(2):
        with pytest.raises(Exception, match="does not match"):
            store.check_code(LABEL, commitment, "AAAAAAAAAAAA", wall, None, b"1", mono_ms=mono)
    with pytest.raises(Exception, match="too many"):
        store.check_code(LABEL, commitment, CANON, wall, None, b"1", mono_ms=mono + 1)
    wall -= 3_600_000  # stepped back an hour
    window = store.config.window_ms
    ok = store.check_code(LABEL, commitment, CANON, wall + window, None, b"1", mono_ms=mono + window)
    assert ok["ok"] is True and ok["first_verified_at"] == wall + window

def test_scans_are_counted_and_flag_a_clone_over_the_threshold(world: World) -> None:
    s = Served(world.new_node(MemoryKV()))
    try:
        app = s.server.app
        assert isinstance(app, Flask)
        checks = app.extensions["lambtrace.checks"]
        assert checks.config.scan_threshold == 50  # the default; create_app's config sets it
        assert create_app(world.new_node(), config={"check_scan_threshold": 3}).extensions[
            "lambtrace.checks"].config.scan_threshold == 3
        checks.config = CheckConfig(scan_threshold=3)
        for batch in (base(world), slaughtered(world), [issue(world)]):
            s.submit(batch)
            s.commit()
        before = chain_of(s)
        for n in (1, 2, 3):
            status, got = post_from(f"127.0.0.{n + 1}", s.url + f"/v1/labels/{LABEL}/scans",
                                    {"place": "锡林浩特"} if n == 1 else None)
            assert status == 200 and got["scans"] == n and got["suspect_clone"] is False
        # one client scanning again and again is one scan an hour: no flag
        for _ in range(10):
            assert post_from("127.0.0.2", s.url + f"/v1/labels/{LABEL}/scans", {})[1]["scans"] == 3
        status, got = post_from("127.0.0.5", s.url + f"/v1/labels/{LABEL}/scans", {})
        assert got["scans"] == 4 and got["suspect_clone"] is True and got["reasons"] == ["scans_over_threshold"]
        assert s.http.get(s.url + f"/v1/labels/{LABEL}/scans", timeout=10).json()["scans"] == 4
        assert s.http.get(s.url + f"/v1/labels/{OTHER}/scans", timeout=10).json()["scans"] == 0
        assert post(s, "/v1/labels/l-9999/scans").status_code == 404
        assert post(s, f"/v1/labels/{LABEL}/scans", {"place": 5}).json()["error"]["code"] == "bad_place"
        assert chain_of(s) == before
    finally:
        s.close()


def test_verifications_from_two_places_flag_a_clone(served: Served) -> None:
    assert post(served, f"/v1/labels/{LABEL}/check", {"code": CODE}).json()["suspect_clone"] is False
    assert post(served, f"/v1/labels/{LABEL}/check", {"code": CODE, "place": "Shanghai"}).json()[
        "suspect_clone"] is False
    got = post(served, f"/v1/labels/{LABEL}/check", {"code": CODE, "place": "shanghai"}).json()
    assert got["suspect_clone"] is False and got["places"] == 1 and got["first_place"] is None
    got = post(served, f"/v1/labels/{LABEL}/check", {"code": CODE, "place": "广州"}).json()
    assert got["suspect_clone"] is True and got["reasons"] == ["verified_in_several_places"]
    assert got["places"] == 2 and got["verifications"] == 4


def test_one_place_written_two_ways_is_one_place() -> None:
    same = [("北京", "北京市"), ("锡林郭勒", "锡林郭勒盟"), ("内蒙古", "内蒙古自治区"), ("Hohhot", " hohhot "),
            ("苏尼特左旗", "苏尼特左"), ("ＢＥＩＪＩＮＧ", "beijing"), ("新疆", "新疆维吾尔自治区")]
    for a, b in same:
        assert place_key(a) == place_key(b), (a, b)
    for a, b in (("北京", "上海"), ("锡林浩特", "呼和浩特"), ("市", "区")):
        assert place_key(a) != place_key(b), (a, b)
    assert place_key("市") == "市" and place_key("沙市") == "沙市"  # a name is never cut below two characters
    checks = LabelChecks(MemoryKV())
    lab = {"check": check_commitment(LABEL, CANON)}
    for where in ("北京", "北京市", " 北京 "):
        got = checks.check_code(LABEL, lab["check"], CODE, 0, where, b"c", mono_ms=0)
    assert got["places"] == 1 and got["suspect_clone"] is False
    got = checks.check_code(LABEL, lab["check"], CODE, 0, "广州市", b"c", mono_ms=0)
    assert got["places"] == 2 and got["reasons"] == ["verified_in_several_places"]


def test_a_clients_scans_count_once_a_window_and_ipv6_counts_by_its_network() -> None:
    checks = LabelChecks(MemoryKV(), CheckConfig(scan_threshold=2, scan_window_ms=1000))
    a, b = checks.client_key("203.0.113.7"), checks.client_key("2001:db8:1:2::1")
    assert checks.client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == b  # the same /64
    assert checks.client_key("2001:db8:1:3::1") != b and checks.client_key("::ffff:203.0.113.7") == a
    assert checks.client_key("fe80::1%eth0") == checks.client_key("fe80::2")
    counts = [checks.record_scan(LABEL, 0, client=a, mono_ms=t)["scans"] for t in (0, 10, 999, 1000, 1500, 2000)]
    assert counts == [1, 1, 1, 2, 2, 3]
    assert checks.record_scan(LABEL, 0, client=b, mono_ms=2000)["scans"] == 4
    assert checks.record_scan(OTHER, 0, client=a, mono_ms=2000)["scans"] == 1  # per label
    assert checks.stats(LABEL)["suspect_clone"] is True
    # without a client (a caller that has none), every scan counts
    assert [checks.record_scan(OTHER, 0)["scans"] for _ in range(2)] == [2, 3]
    # the map of recent scanners is bounded
    small = LabelChecks(MemoryKV(), CheckConfig(max_tracked=3, scan_window_ms=10**9))
    for i in range(5):
        small.record_scan(LABEL, 0, client=bytes([i]), mono_ms=0)
    assert len(small._scanned) == 3
    assert small.record_scan(LABEL, 0, client=bytes([0]), mono_ms=1)["scans"] == 6  # forgotten: counts again


def test_records_survive_a_restart_and_stay_off_the_chain(world: World, tmp_path: Path) -> None:
    s = start(world, LevelKV(str(tmp_path / "db")), setup=True)
    before = chain_of(s)
    post_from("127.0.0.2", s.url + f"/v1/labels/{LABEL}/scans")
    post_from("127.0.0.3", s.url + f"/v1/labels/{LABEL}/scans")
    first = post(s, f"/v1/labels/{LABEL}/check", {"code": CODE, "place": "呼和浩特"}).json()
    assert chain_of(s) == before
    s.close()
    s.node.store.close()
    s = start(world, LevelKV(str(tmp_path / "db")), setup=False)
    try:
        got = s.http.get(s.url + f"/v1/labels/{LABEL}/scans", timeout=10).json()
        assert got["scans"] == 2 and got["verifications"] == 1
        assert (got["first_verified_at"], got["first_place"]) == (first["first_verified_at"], "呼和浩特")
        assert chain_of(s) == before
        assert not any(k.startswith(b"V") for k, _ in s.node.store.kv.scan(b"S"))
    finally:
        s.close()
        s.node.store.close()
