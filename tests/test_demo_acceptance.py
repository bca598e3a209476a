"""Label checks on the default demo network (four validator processes), end to end:
``lambtrace verify-label`` on a demo label's link passes and fails, naming the reason, on
the same bundle with one byte changed; the consumer page reaches ``verified`` in headless
Chromium; ``lambtrace audit`` passes over HTTP and fails, naming the height, on a
corrupted copy of a node's data directory."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import plyvel
import pytest
import requests
from test_demo import free_port_block

from browser import browser_missing, start_chromium
from helpers import wait_until
from lambtrace.config import NodeConfig
from ledger import codec


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lambtrace", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("demo4")
    port = free_port_block(4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lambtrace", "demo", "--dir", str(tmp / "d"), "--lambs", "40", "--port", str(port),
         "--rate", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    info_path = tmp / "d" / "demo.json"
    try:
        assert proc.stdout is not None  # stdout=PIPE
        assert wait_until(info_path.exists, 240), proc.stdout.read() if proc.poll() is not None else "no demo.json"
        info = json.loads(info_path.read_text())
        info["dir"] = tmp
        info["proc"] = proc
        yield info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)


def _link(demo: dict[str, Any], label: str, node: int = 1) -> str:
    return f"{demo['nodes'][node]['api']}/l/{label}#g={demo['genesis_hash'][:32]}"


def test_verify_label_on_a_demo_label(demo: dict[str, Any], tmp_path: Path) -> None:
    assert demo["labels"], "the demo printed no labels"
    label = demo["labels"][0]
    saved = tmp_path / "bundle.msgpack"
    ok = cli("verify-label", "--url", _link(demo, label), "--genesis", demo["genesis"], "--save", str(saved))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    raw = saved.read_bytes()
    assert codec.decode(raw)["format"] == "lambtrace-label-proof/v3"
    # four validators: the bundle carries a quorum of three precommits, not every one
    assert len(codec.decode(raw)["checkpoint"]["certificate"]["precommits"]) == 3
    # any byte changed: a sample over the whole bundle (the unit tests change every byte)
    for pos in sorted({0, 1, len(raw) // 3, len(raw) // 2, len(raw) - 70, len(raw) - 1}):
        bad = bytearray(raw)
        bad[pos] ^= 0x04
        (tmp_path / "bad.msgpack").write_bytes(bytes(bad))
        out = cli("verify-label", "--bundle", str(tmp_path / "bad.msgpack"), "--label", label,
                  "--genesis", demo["genesis"])
        assert out.returncode == 1, (pos, out.stdout, out.stderr)
        verdict = json.loads(out.stdout.splitlines()[0])
        assert verdict["verified"] is False and verdict["code"] and verdict["message"], verdict
        assert f"error: {verdict['code']}" in out.stderr, out.stderr


def test_the_demo_recall_is_proven_complete(demo: dict[str, Any], tmp_path: Path) -> None:
    """The demo's recall shows on the recalled labels, proven by the recall map, and the
    other labels prove that nothing of theirs was recalled."""
    assert demo["recalled_labels"], "the demo recalled nothing"
    for label, recalled in ((demo["recalled_labels"][0], True), (demo["labels"][0], False)):
        out = cli("verify-label", "--url", _link(demo, label, 2), "--genesis", demo["genesis"])
        assert out.returncode == 0, out.stdout + out.stderr
        report = json.loads(out.stdout.splitlines()[0])
        assert report["recalls_complete"] is True and report["recalled"] is recalled, report
        if recalled:
            assert [r["target_type"] for r in report["recalls"]] == ["carcass"]
            assert "RECALLED (兽药残留抽检阳性); recalls proven complete" in out.stderr, out.stderr
        else:
            assert "no recall (proven)" in out.stderr, out.stderr


@pytest.mark.skipif(browser_missing() is not None, reason=str(browser_missing()))
def test_consumer_page_verifies_demo_labels(demo: dict[str, Any], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = start_chromium(tmp_path / "profile", window="412,915")
    try:
        for node, label in enumerate([*demo["labels"][:2], *demo["recalled_labels"][:1]]):
            driver.get("about:blank")
            driver.get(_link(demo, label, node % len(demo["nodes"])))
            WebDriverWait(driver, 60).until(
                lambda d: d.find_element(By.ID, "verdict").get_attribute("data-verdict") != "pending")
            box = driver.find_element(By.ID, "verdict")
            assert box.get_attribute("data-verdict") == "verified", (label, box.text)
    finally:
        driver.quit()


def test_audit_passes_on_the_demo_and_fails_on_a_corrupted_copy(demo: dict[str, Any], tmp_path: Path) -> None:
    api = demo["nodes"][2]["api"]
    report = tmp_path / "audit.json"
    ok = cli("audit", "--url", api, "--genesis", demo["genesis"], "--quiet", "--json", str(report))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(report.read_text())["intact"] is True
    # a stopped node's data directory, copied and corrupted in one stored leaf
    victim = demo["nodes"][3]
    # the demo keeps driving lambs (--rate), so blocks follow one another
    first = requests.get(victim["api"] + "/v1/blocks/1", timeout=5).json()["header"]["log_size"]

    def leaves_after_block_1() -> bool:
        st = requests.get(victim["api"] + "/v1/status", timeout=5).json()
        return bool(st["height"] >= 3 and st["log_size"] > first)

    assert wait_until(leaves_after_block_1, 60)
    demo["proc"].send_signal(signal.SIGINT)
    demo["proc"].communicate(timeout=60)
    copy = tmp_path / "copy"
    shutil.copytree(NodeConfig.load(victim["config"]).data, copy)
    db = plyvel.DB(str(copy / "chain.ldb"))
    try:
        # the last leaf of the first block after block 1 that holds any (a block may be
        # empty: a heartbeat, or a later round's proposer with nothing to propose)
        h = 2
        while True:
            size = codec.decode(db.get(b"H" + h.to_bytes(8, "big")))["log_size"]
            if size > codec.decode(db.get(b"H" + (h - 1).to_bytes(8, "big")))["log_size"]:
                break
            h += 1
        key = b"L" + (size - 1).to_bytes(8, "big")
        leaf = bytearray(db.get(key))
        leaf[len(leaf) // 2] ^= 0x01
        db.put(key, bytes(leaf))
    finally:
        db.close()
    bad = cli("audit", "--data", str(copy), "--genesis", demo["genesis"], "--quiet", "--json", str(report))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    failure = json.loads(report.read_text())["failure"]
    assert failure["height"] == h, failure
    assert str(h) in bad.stdout + bad.stderr
    assert wait_until(lambda: demo["proc"].poll() is not None, 30)
