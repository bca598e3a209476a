"""docker/: the compose file is well formed and every node command matches what
``lambtrace network init --host '{name}'`` writes."""

from __future__ import annotations

import json
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


def compose_commands() -> list[list[str]]:
    """Every Compose implementation on this machine: the ``docker compose`` plugin and
    the standalone ``docker-compose`` (Debian's package, which scripts/bootstrap
    installs; it reads the file without a Docker daemon)."""
    found = []
    if shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            found.append(["docker", "compose"])
    if shutil.which("docker-compose") is not None:
        found.append(["docker-compose"])
    return found


def test_docker_compose_config(tmp_path: Path) -> None:
    commands = compose_commands()
    if not commands:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    for cmd in commands:
        r = subprocess.run([*cmd, "-f", str(ROOT / "docker" / "compose.yml"), "config"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 0, (cmd, r.stderr)
        resolved = yaml.safe_load(r.stdout)
        # What Compose resolved is the file's own services and volumes, not an empty
        # document it accepted without reading.
        assert set(resolved["services"]) == set(compose()["services"]), cmd
        assert set(resolved["volumes"]) == set(compose()["volumes"]), cmd


def test_docker_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: the same tools refuse a service that depends on one
    the file does not define."""
    commands = compose_commands()
    if not commands:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    doc = compose()
    first = sorted(doc["services"])[0]
    doc["services"][first]["depends_on"] = {"no-such-service": {"condition": "service_started"}}
    broken = tmp_path / "compose.yml"
    broken.write_text(yaml.safe_dump(doc))
    for cmd in commands:
        r = subprocess.run([*cmd, "-f", str(broken), "config"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode != 0, cmd
        assert "no-such-service" in (r.stderr + r.stdout), cmd


def test_compose_file_fits_the_compose_specification() -> None:
    """Checked where no ``docker compose`` runs too: the Compose Specification's own JSON
    schema (tests/vectors/README.md says where it comes from), and the references the
    schema cannot see (named volumes, ``depends_on``)."""
    import jsonschema

    schema = json.loads((ROOT / "tests" / "vectors" / "compose_spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)  # its $schema names draft 2019-09
    doc = compose()
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []
    volumes = set(doc.get("volumes") or {})
    for name, svc in doc["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            assert source.startswith(("/", ".")) or source in volumes, f"{name}: volume {source} is not declared"
        deps = svc.get("depends_on", [])
        assert set(deps) <= set(doc["services"]) - {name}, f"{name}: depends on an unknown service"
    # and the schema is not toothless: a misspelt key fails it
    bad = json.loads(json.dumps(doc))
    bad["services"]["league"]["comand"] = bad["services"]["league"].pop("command")
    assert list(validator.iter_errors(bad))
