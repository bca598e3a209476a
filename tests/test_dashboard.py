"""The trace offices' dashboard ``GET /dashboard`` and its live feed (issue 6, item 5).

A seasoned one-validator chain (tests/helpers_api.py) is served by a real werkzeug
server (tests/helpers.py ``Served``).  Without a browser: the page and its summary
agree with ``/v1/stats`` and genesis quotas, and ``/dashboard/stream`` (server-sent
events, read with ``requests``) pushes a fresh summary when a block commits, sends
heartbeats, bounds its clients and closes cleanly.  In real headless Chromium: the page
renders the numbers ``/v1/stats`` gives, a block committed while it is open shows up
without a reload (through the stream), and the English switch works.

Screenshots (phone 390x844 at 2x, desktop 1280 wide) go to
``$LAMBTRACE_ARTIFACTS/dashboard`` (default ``<tmp>/lambtrace-artifacts/dashboard``);
their paths are printed.  Without Chromium, chromedriver or selenium the browser tests
skip and say which is missing.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from api import create_app
from api.routes import dashboard
from browser import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    accessibility_violations,
    axe_missing,
    browser_missing,
    full_page_screenshot,
    start_chromium,
)
from helpers import Served, wait_until
from helpers_api import AGENT, ApiWorld
from node.kv import MemoryKV

SHOTS = ARTIFACTS / "dashboard"
COUNTERS = ("tags_issued", "tagged", "shipped", "received", "slaughtered", "labelled")


class Season:
    """A seasoned chain served over HTTP; :meth:`tag_one` commits a block tagging one more lamb."""

    def __init__(self) -> None:
        self.world = ApiWorld(MemoryKV())
        self.world.season()
        self.served = Served(self.world.node)
        self.next_serial = 3

    def tag_one(self) -> int:
        tag = f"3152523{self.next_serial:08d}"
        self.next_serial += 1
        self.world.submit([self.world.lamb_tag(AGENT, tag)])
        return self.world.commit().height

    def get(self, path: str) -> Any:
        r = requests.get(self.served.url + path, timeout=10)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.json()


@pytest.fixture(scope="module")
def season() -> Iterator[Season]:
    s = Season()
    yield s
    s.served.close()


class Stream:
    """A ``text/event-stream`` read with requests: :meth:`next` returns the next event
    (``{"event", "data", "id"}``) or comment (``{"comment": ...}``)."""

    def __init__(self, url: str, timeout_s: float = 30) -> None:
        self.resp = requests.get(url, stream=True, timeout=timeout_s, headers={"Accept": "text/event-stream"})
        self.lines = self.resp.iter_lines(chunk_size=1, decode_unicode=True)

    def next(self) -> dict[str, Any]:
        got: dict[str, Any] = {}
        for line in self.lines:
            if line == "":
                if got:
                    return got
                continue
            if line.startswith(":"):
                return {"comment": line[1:].strip()}
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                got["data"] = json.loads(value)
            else:
                got[field] = value
        raise EOFError("the stream ended")

    def next_event(self, name: str) -> dict[str, Any]:
        while True:
            ev = self.next()
            if ev.get("event") == name:
                return ev

    def close(self) -> None:
        self.resp.close()


# -- without a browser --------------------------------------------------------------------------


def test_page_and_summary_agree_with_stats(season: Season) -> None:
    stats = season.get("/v1/stats")
    summary = season.get("/dashboard/summary")
    assert summary["height"] == stats["height"]
    assert summary["totals"] == {c: stats["totals"].get(c, 0) for c in COUNTERS}
    assert summary["totals"]["tags_issued"] == 10 and summary["totals"]["labelled"] == 2
    assert [b["code"] for b in summary["banners"]] == sorted(stats["banners"])
    assert summary["banners"][0]["name"] == "苏尼特左旗"
    coops = {r["id"]: r for r in summary["cooperatives"]["rows"]}
    assert coops["coop-1"]["name"] == "满都拉图合作社"
    assert coops["coop-1"]["tagged"] == stats["cooperatives"]["coop-1"]["tagged"]
    plants = {r["id"]: r for r in summary["plants"]["rows"]}
    assert plants["plant-1"]["received"] == 1 and plants["plant-1"]["labelled"] == 2
    assert summary["quota"]["year"] == 2026
    assert summary["quota"]["banners"] == [{"code": "152523", "name": "苏尼特左旗", "issued": 10, "quota": None}]
    tip = {"height": stats["height"], "time": summary["time"], "log_size": summary["log_size"]}
    assert summary["series"][-1] == tip
    assert summary["health"]["mode"] == "single" and summary["health"]["up"] == ["league"]

    r = requests.get(season.served.url + "/dashboard", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert 'lang="zh-CN"' in r.text and "已发放耳标" in r.text and 'id="total-tags_issued" data-count="10"' in r.text
    assert "http://" not in r.text.replace("http://www.w3.org", "") and "https://" not in r.text
    en = requests.get(season.served.url + "/dashboard?lang=en", timeout=10).text
    assert 'lang="en"' in en and "Tags issued" in en
    for name in ("dashboard.js", "base.css", "dashboard.css"):
        s = requests.get(f"{season.served.url}/static/{name}", timeout=10)
        assert s.status_code == 200 and "https://" not in s.text


def test_quota_use_counts_against_genesis_quotas() -> None:
    from helpers import OFFICE, World

    w = World(quotas={"152523": 1_000, "152524": 500})
    node = w.new_node()
    node.submit([w.enroll("coop-q", "cooperative", "152523")])
    node.produce_block()
    node.submit([w.issue("coop-q", "315252300000001", 250)])
    node.produce_block()
    app = create_app(node)
    got = app.test_client().get("/dashboard/summary").get_json()
    assert got["quota"]["banners"] == [
        {"code": "152523", "name": "苏尼特左旗", "issued": 250, "quota": 1000},
        {"code": "152524", "name": "苏尼特右旗", "issued": 0, "quota": 500},
    ]
    assert OFFICE  # the trace office issued them


def test_stream_pushes_a_summary_when_a_block_commits(season: Season, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "HEARTBEAT_S", 0.5)  # a gone client is noticed at the next write
    stream = Stream(season.served.url + "/dashboard/stream")
    try:
        assert stream.resp.status_code == 200
        assert stream.resp.headers["Content-Type"].startswith("text/event-stream")
        assert "Content-Encoding" not in stream.resp.headers  # asked for gzip, but each event leaves at once
        first = stream.next_event("summary")
        assert int(first["id"]) == first["data"]["height"] == season.get("/v1/stats")["height"]
        tagged = first["data"]["totals"]["tagged"]
        for k in range(2):
            height = season.tag_one()
            ev = stream.next_event("summary")
            assert int(ev["id"]) == ev["data"]["height"] == height
            assert ev["data"]["totals"]["tagged"] == tagged + k + 1
            assert ev["data"]["totals"] == {c: season.get("/v1/stats")["totals"].get(c, 0) for c in COUNTERS}
    finally:
        stream.close()
    app: Any = season.served.server.app
    hub = app.extensions[dashboard.HUB_EXTENSION]
    assert wait_until(lambda: hub.streams == 0, 20), "a closed client's stream was not let go"


def test_stream_heartbeat_bounds_and_clean_close(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashboard, "HEARTBEAT_S", 0.2)
    w = ApiWorld(MemoryKV())
    w.season()
    app = create_app(w.node, config={"dashboard_max_streams": 1})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub = app.extensions[dashboard.HUB_EXTENSION]
    try:
        stream = Stream(url + "/dashboard/stream")
        assert stream.next_event("summary")["data"]["height"] == 8
        assert stream.next() == {"comment": "heartbeat"}
        # a second client is refused while the first holds the only slot
        r = requests.get(url + "/dashboard/stream", timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "too_many_streams"
        # a burst of commits while the client does not read: its queue stays bounded
        q = next(iter(hub._clients))
        for h in range(100, 120):
            hub.notify(type("H", (), {"height": h})())
        assert q.qsize() <= dashboard.QUEUE_SIZE
        # closing the hub ends the stream with a last event, and the slot is free again
        hub.close()
        assert stream.next_event("bye")["data"] == {"reason": "closed"}
        with pytest.raises(EOFError):
            stream.next()
        stream.close()
        assert wait_until(lambda: hub.streams == 0, 10)
        again = Stream(url + "/dashboard/stream")
        assert again.next_event("summary")["data"]["height"] == 8
        again.close()
    finally:
        server.shutdown()
        thread.join(timeout=5)


# -- in headless Chromium ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = browser_missing()
    if missing:
        pytest.skip(f"no headless browser for the dashboard tests: {missing}")
    d = start_chromium(tmp_path_factory.mktemp("chromium-profile"), window="1280,900")
    yield d
    d.quit()


def _viewport(driver: Any, metrics: dict[str, Any]) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def screenshot(driver: Any, name: str, metrics: dict[str, Any], tmp_path: Path,
               capsys: pytest.CaptureFixture[str]) -> Path:
    return full_page_screenshot(driver, name, metrics, tmp_path, SHOTS, capsys)


def _open(driver: Any, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/healthz")
    driver.execute_script("localStorage.clear()")
    driver.get(url + "/dashboard")
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.getElementById('live').dataset.state") == "live")


def _shown(driver: Any) -> dict[str, int]:
    got = driver.execute_script(
        "const o = {}; for (const n of document.querySelectorAll('[id^=total-]'))"
        " o[n.id.slice(6)] = Number(n.dataset.count); return o;")
    return {str(k): int(v) for k, v in got.items()}


def test_dashboard_in_chromium_renders_updates_live_and_switches_language(
        season: Season, driver: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _viewport(driver, DESKTOP)
    _open(driver, season.served.url)
    stats = season.get("/v1/stats")
    assert _shown(driver) == {c: stats["totals"].get(c, 0) for c in COUNTERS}
    assert driver.find_element(By.ID, "total-tags_issued").text == f"{stats['totals']['tags_issued']:,}"
    assert driver.execute_script("return document.documentElement.lang") == "zh-CN"
    assert driver.find_element(By.CSS_SELECTOR, ".kpi-tagged .kpi-label").text == "已佩标羊只"
    banner_row = driver.find_element(By.CSS_SELECTOR, "#banner-table td[data-banner='152523']")
    assert "苏尼特左旗" in banner_row.text
    assert "满都拉图合作社" in driver.find_element(By.ID, "coop-table").text
    assert driver.find_elements(By.CSS_SELECTOR, "#season-chart svg path.season-line")
    assert driver.find_elements(By.CSS_SELECTOR, "#funnel-chart svg rect.bar")
    assert "单验证节点" in driver.find_element(By.ID, "health").text
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "alerts-body").get_attribute("data-state") != "loading")
    alerts_state = driver.find_element(By.ID, "alerts-body").get_attribute("data-state")
    alerts_status = requests.get(season.served.url + "/v1/alerts", timeout=10).status_code
    assert alerts_state == ("missing" if alerts_status == 404 else "loaded")

    # a block commits while the page is open: the count moves without a reload
    driver.execute_script("window.__notReloaded = true;")
    before = _shown(driver)["tagged"]
    height = season.tag_one()
    WebDriverWait(driver, 20).until(lambda d: _shown(d)["tagged"] == before + 1)
    assert driver.execute_script("return window.__notReloaded === true")
    assert driver.find_element(By.ID, "height").get_attribute("data-height") == str(height)
    assert _shown(driver) == {c: season.get("/v1/stats")["totals"].get(c, 0) for c in COUNTERS}
    screenshot(driver, "dashboard-desktop-zh", DESKTOP, tmp_path, capsys)

    # English, without a reload, and remembered
    switch = driver.find_element(By.ID, "lang-switch")
    assert switch.text == "English"
    switch.click()
    assert driver.execute_script("return document.documentElement.lang") == "en"
    assert driver.find_element(By.CSS_SELECTOR, ".kpi-tagged .kpi-label").text == "Lambs tagged"
    assert "Sonid Left Banner" in driver.find_element(By.ID, "banner-table").text
    assert "single validator" in driver.find_element(By.ID, "health").text
    assert driver.find_element(By.ID, "lang-switch").text == "中文"
    assert driver.execute_script("return window.__notReloaded === true")
    screenshot(driver, "dashboard-desktop-en", DESKTOP, tmp_path, capsys)

    # phone width: one column, nothing wider than the screen
    _viewport(driver, PHONE)
    driver.get(season.served.url + "/dashboard")
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.getElementById('live').dataset.state") == "live")
    assert driver.execute_script("return document.documentElement.lang") == "en"  # remembered
    switch = driver.find_element(By.ID, "lang-switch")
    switch.click()
    time.sleep(0.3)
    assert driver.execute_script("return document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(driver, "dashboard-phone-zh", PHONE, tmp_path, capsys)
    _viewport(driver, DESKTOP)


def test_dashboard_is_accessible_on_a_phone_and_a_desktop(season: Season, driver: Any) -> None:
    """axe-core finds nothing wrong (WCAG 2.x A/AA and best practices) with the dashboard,
    in both languages, at a phone's width (tables scroll sideways) and a desktop's."""
    missing = axe_missing()
    if missing:
        pytest.skip(missing)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    found: dict[str, list[str]] = {}
    for name, metrics in (("phone", PHONE), ("desktop", DESKTOP)):
        _viewport(driver, metrics)
        _open(driver, season.served.url)
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "alerts-body").get_attribute("data-state") != "loading")
        found[f"{name} zh"] = accessibility_violations(driver)
        driver.find_element(By.ID, "lang-switch").click()
        WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.documentElement.lang") == "en")
        found[f"{name} en"] = accessibility_violations(driver)
    bad = {view: lines for view, lines in found.items() if lines}
    assert not bad, json.dumps(bad, ensure_ascii=False, indent=1)
