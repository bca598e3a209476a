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

from helpers import wait_until

pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo(tmp: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lambtrace", "demo", "--dir", str(tmp / "d"), "--nodes", "1", "--lambs", "200",
         "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def test_demo_runs_serves_and_resumes(tmp_path: Path) -> None:
    port = free_port()
    proc = demo(tmp_path, port)
    info_path = tmp_path / "d" / "demo.json"
    try:
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
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "consumer page" in out and "demo.json" in out
    assert wait_until(lambda: not _alive(node["pid"]), 20), "the node outlived the demo"

    again = demo(tmp_path, port, "--exit-when-ready")
    out2, _ = again.communicate(timeout=240)
    assert again.returncode == 0, out2
    assert "resuming" in out2 and "season submitted" not in out2
    assert f"{log_size} events in the log" in out2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_demo_refuses_multi_node_clearly(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lambtrace", "demo", "--dir", str(tmp_path / "d"), "--nodes", "4",
         "--exit-when-ready"], capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2
    assert "unsupported_nodes" in r.stderr
