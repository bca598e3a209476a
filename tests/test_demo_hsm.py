"""``lambtrace demo`` with plant keys on SoftHSM2 tokens, and its plain fallback without SoftHSM2.

With SoftHSM2 installed the demo makes one token per plant under ``D/hsm``, generates each
plant's key on it, enrols the plants with storage ``hsm`` and sets the genesis's
``slaughter_requires_hsm``; the plant key files are public-only.  A resumed demo signs new
slaughters through the tokens again.  Without SoftHSM2 it says so and keeps software keys.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from helpers import free_port, wait_until

pytestmark = pytest.mark.cluster

SOFTHSM_MODULE = os.environ.get("LAMBTRACE_PKCS11_MODULE") or "/usr/lib/softhsm/libsofthsm2.so"
HAVE_SOFTHSM = Path(SOFTHSM_MODULE).is_file() and shutil.which("softhsm2-util") is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def demo(d: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lambtrace", "demo", "--dir", str(d), "--nodes", "1", "--lambs", "200",
         "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env,
    )


def _get(url: str) -> Any:
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, f"{url}: {r.status_code} {r.text}"
    return r.json()


def _slaughtered(api: str) -> int:
    stats = _get(api + "/v1/stats")
    return sum(b.get("slaughtered", 0) for b in stats["banners"].values())


@pytest.mark.skipif(not HAVE_SOFTHSM, reason=f"SoftHSM2 is not installed (need {SOFTHSM_MODULE} and softhsm2-util); "
                                            "install the Debian package softhsm2 (CI does)")
def test_demo_plant_keys_live_on_softhsm_tokens(tmp_path: Path) -> None:
    d = tmp_path / "d"
    port = free_port()
    proc = demo(d, port)
    info_path = d / "demo.json"
    try:
        assert wait_until(info_path.exists, 240), proc.stdout.read() if proc.stdout and proc.poll() is not None \
            else "no demo.json"
        info = json.loads(info_path.read_text())
        api = info["nodes"][0]["api"]
        genesis = json.loads(Path(info["genesis"]).read_text())
        assert genesis["params"]["slaughter_requires_hsm"] is True

        pin = d / "hsm" / "pin"
        assert stat.S_IMODE(pin.stat().st_mode) == 0o600
        assert (d / "hsm" / "softhsm2.conf").exists() and any((d / "hsm" / "tokens").iterdir())

        plants = {a["id"]: a for a in info["actors"] if a["role"] == "plant"}
        assert plants
        plant_kids: dict[str, str] = {}
        for plant_id, actor in plants.items():
            record = _get(f"{api}/v1/actors/{plant_id}")
            assert record["role"] == "plant"
            assert record["keys"] and all(k["storage"] == "hsm" for k in record["keys"]), record["keys"]
            doc = json.loads(Path(actor["key_file"]).read_text())
            assert doc["private_key"] is None and doc["encryption"] is None, "a plant key file holds a private key"
            assert doc["storage"] == "hsm"
            assert doc["locator"].startswith("pkcs11:") and "pin" not in doc["locator"]
            assert pin.read_text().strip() not in Path(actor["key_file"]).read_text()
            assert doc["key_id"] in record["key_ids"]
            plant_kids[plant_id] = doc["key_id"]
        # Everyone else still holds software keys.
        office = next(a for a in info["actors"] if a["role"] == "cooperative")
        assert json.loads(Path(office["key_file"]).read_text())["storage"] == "software"

        assert info["labels"]
        for label in info["labels"][:8]:
            summary = _get(f"{api}/v1/labels/{label}")
            plant_id = summary["plant"]["id"]
            assert plant_id in plants
            slaughter = _get(f"{api}/v1/events/{summary['slaughter']['event']}")
            assert slaughter["kind"] == "lamb.slaughter" and slaughter["state"] == "committed"
            assert [s["key"] for s in slaughter["event"]["sigs"]] == [plant_kids[plant_id]]
            assert requests.get(f"{api}/v1/labels/{label}/proof", timeout=10).status_code == 200
        before = _slaughtered(api)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "SoftHSM2 found" in out and "season submitted" in out and " 0 rejected" in out, out
    pid = info["nodes"][0]["pid"]
    assert wait_until(lambda: not _alive(pid), 20)

    # Resumed, the demo opens the plant keys on their tokens again: with the genesis
    # insisting on HSM keys, new slaughters are only accepted if they were signed there.
    again = demo(d, port, "--rate", "200")
    try:
        assert wait_until(lambda: _up(api) and _slaughtered(api) > before, 180), "no new slaughter after resume"
    finally:
        again.send_signal(signal.SIGINT)
        out2, _ = again.communicate(timeout=60)
    assert again.returncode == 0, out2
    assert "resuming" in out2 and "plant keys: on SoftHSM2 tokens" in out2, out2


def _up(api: str) -> bool:
    try:
        return requests.get(api + "/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_demo_without_softhsm_falls_back_to_software_keys(tmp_path: Path) -> None:
    d = tmp_path / "d"
    env = dict(os.environ, LAMBTRACE_PKCS11_MODULE=str(tmp_path / "no-softhsm.so"))
    proc = demo(d, free_port(), "--exit-when-ready", env=env)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    assert "SoftHSM2 is not installed" in out and "software keys" in out, out
    info = json.loads((d / "demo.json").read_text())
    genesis = json.loads(Path(info["genesis"]).read_text())
    assert genesis["params"].get("slaughter_requires_hsm") in (False, None)
    assert not (d / "hsm").exists()
    plants = [a for a in info["actors"] if a["role"] == "plant"]
    assert plants
    for actor in plants:
        assert json.loads(Path(actor["key_file"]).read_text())["storage"] == "software"
