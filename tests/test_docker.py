"""docker/: the compose file is well formed and every node command matches what
``lambtrace network init --host '{name}'`` writes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())


def test_compose_services_match_network_init(tmp_path: Path) -> None:
    doc = compose()
    services = doc["services"]
    nodes = {n: s for n, s in services.items() if n != "init"}
    assert set(nodes) == {"league", "banner-152523", "banner-152524", "banner-152526", "observer-1"}
    r = subprocess.run([sys.executable, "-m", "lambtrace", "network", "init", "--dir", str(tmp_path / "net"),
                        "--validators", "4", "--observers", "1", "--host", "{name}", "--insecure-plain"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for name, svc in nodes.items():
        cmd = svc["command"]
        assert cmd[:2] == ["node", "--config"]
        rel = Path(cmd[2]).relative_to("/data")
        assert (tmp_path / "net" / rel).exists(), f"{name}: {rel} is not written by network init"
        assert svc["volumes"] == ["network:/data"]
    init_cmd = " ".join(services["init"]["command"])
    assert "network init" in init_cmd and "--validators 4" in init_cmd and "--observers 1" in init_cmd
    df = (ROOT / "docker" / "Dockerfile").read_text()
    for pkg in ("ledger", "node", "api", "signer", "verify", "lambtrace"):
        assert f"COPY {pkg} {pkg}" in df


def test_docker_compose_config() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("this docker client has no compose plugin (`docker compose` is unknown)")
    r = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker" / "compose.yml"), "config"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
