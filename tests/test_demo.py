"""``lambtrace demo --nodes 1``: real node process, season over HTTP, demo.json, resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from helpers import pid_alive, wait_until

pytestmark = pytest.mark.cluster


def demo(tmp: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lambtrace", "demo", "--dir", str(tmp / "d"), "--nodes", "1", "--lambs", "200",
         "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def test_demo_runs_serves_and_resumes(tmp_path: Path) -> None:
    port = free_port_block(1)
    proc = demo(tmp_path, port)
    info_path = tmp_path / "d" / "demo.json"
    try:
        assert proc.stdout is not None  # stdout=PIPE
        assert wait_until(info_path.exists, 240), proc.stdout.read() if proc.poll() is not None else "no demo.json"
        info = json.loads(info_path.read_text())
        assert set(info) >= {"chain_id", "genesis", "nodes", "actors", "labels"}
        (node,) = info["nodes"]
        assert node["api"] == f"http://127.0.0.1:{port}"
        os.kill(node["pid"], 0)  # the node is its own, live process
        status = requests.get(node["api"] + "/v1/status", timeout=5).json()
        assert status["chain"] == info["chain_id"] and status["log_size"] > 0
        assert info["labels"]
        for label in info["labels"][:5]:
            summary = requests.get(f"{node['api']}/v1/labels/{label}", timeout=5)
            assert summary.status_code == 200, summary.text
            tag = summary.json()["tag"]
            history = requests.get(f"{node['api']}/v1/tags/{tag}", timeout=5).json()
            kinds = [e["kind"] for e in history["events"]]
            assert "lamb.tag" in kinds and "lamb.slaughter" in kinds and "label.issue" in kinds
        roles = {a["role"] for a in info["actors"]}
        assert {"trace_office", "cooperative", "herder_agent", "plant"} <= roles
        for a in info["actors"]:
            assert Path(a["key_file"]).exists()
        log_size = status["log_size"]
        dashboard = requests.get(node["api"] + "/dashboard", timeout=5)
        assert dashboard.status_code == 200 and "text/html" in dashboard.headers["Content-Type"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "consumer page" in out and "demo.json" in out
    assert f"dashboard:     {node['api']}/dashboard" in out  # DESIGN §7: it prints the consumer and dashboard URLs
    witness_line = next(ln for ln in out.splitlines() if ln.startswith("witness:"))
    assert f"lambtrace witness --url {node['api']} --state " in witness_line
    assert "stopped 1 node process(es); the chain stays in" in out  # Ctrl-C says what became of it
    assert wait_until(lambda: not pid_alive(node["pid"]), 20), "the node outlived the demo"

    again = demo(tmp_path, port, "--exit-when-ready")
    out2, _ = again.communicate(timeout=240)
    assert again.returncode == 0, out2
    assert "resuming" in out2 and "season submitted" not in out2
    assert f"{log_size} events in the log" in out2


@pytest.mark.parametrize("victim_index", [3, 0], ids=["a banner node", "the league node"])
def test_four_node_demo_replicates(tmp_path: Path, victim_index: int) -> None:
    """The default demo: four validator processes hold the same block at every height;
    killing any one leaves the rest committing (the demo keeps driving lambs with --rate,
    moving to the next node when the one it submits to, the league node, is gone), and
    `lambtrace node --config` brings it back to the same chain."""
    port = free_port_block(4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "lambtrace", "demo", "--dir", str(tmp_path / "d4"), "--lambs", "60",
         "--port", str(port), "--rate", "40"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    info_path = tmp_path / "d4" / "demo.json"
    try:
        assert proc.stdout is not None  # stdout=PIPE
        assert wait_until(info_path.exists, 240), proc.stdout.read() if proc.poll() is not None else "no demo.json"
        info = json.loads(info_path.read_text())
        assert len(info["nodes"]) == 4 and len({n["pid"] for n in info["nodes"]}) == 4
        apis = [n["api"] for n in info["nodes"]]
        sts = [requests.get(a + "/v1/status", timeout=5).json() for a in apis]
        assert len({s["log_size"] for s in sts}) == 1 and sts[0]["log_size"] > 0
        for h in range(1, sts[0]["height"] + 1):
            assert len({requests.get(f"{a}/v1/blocks/{h}", timeout=5).json()["hash"] for a in apis}) == 1
        victim = info["nodes"][victim_index]
        os.kill(victim["pid"], signal.SIGKILL)
        rest = [a for a in apis if a != victim["api"]]

        def heights(urls: list[str]) -> list[int]:
            return [requests.get(a + "/v1/status", timeout=5).json()["height"] for a in urls]

        before = heights(rest)
        assert wait_until(lambda: min(heights(rest)) > max(before) + 1, 60), (before, heights(rest))
        restarted = subprocess.Popen([sys.executable, "-m", "lambtrace", "node", "--config", victim["config"]],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert wait_until(lambda: _up(victim["api"]) and heights([victim["api"]])[0] >= max(heights(rest)) - 1,
                              60)
            top = heights([victim["api"]])[0]
            for h in range(1, top + 1):
                assert len({requests.get(f"{a}/v1/blocks/{h}", timeout=5).json()["hash"] for a in apis}) == 1
        finally:
            restarted.terminate()
            restarted.wait(timeout=20)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out


def _up(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def free_port_block(n: int) -> int:
    """A base port with ``base..base+n-1`` and ``base+100..`` free (the demo's API and peer ports)."""
    import random

    for _ in range(50):
        base = random.randrange(20_000, 31_000)
        socks = []
        try:
            for p in [*range(base, base + n), *range(base + 100, base + 100 + n)]:
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")
