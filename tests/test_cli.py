"""The command line: keygen, genesis, submit, status (DESIGN §7)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from helpers import OFFICE, Served, World
from lambtrace.cli import main
from lambtrace.config import load_genesis
from signer import generate, load_public_key, load_signer, save_key_file


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_keygen_encrypts_unless_insecure_plain(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBTRACE_KEY_PASSPHRASE", "correct horse battery staple")
    rc, out, _ = run(capsys, "keygen", "--out", str(tmp_path / "a.json"), "--alg", "ecdsa-p256")
    assert rc == 0 and json.loads(out)["encrypted"] is True
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["encryption"]["kdf"] == "argon2id" and "private_key" not in (doc.get("private_key") or "")
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o600
    assert load_signer(str(tmp_path / "a.json")).alg == "ecdsa-p256"  # passphrase from the environment
    monkeypatch.delenv("LAMBTRACE_KEY_PASSPHRASE")
    rc, out, _ = run(capsys, "keygen", "--out", str(tmp_path / "b.json"), "--insecure-plain")
    assert rc == 0 and json.loads(out)["encrypted"] is False
    # without a passphrase and without the flag, nothing is written
    rc, _, err = run(capsys, "keygen", "--out", str(tmp_path / "c.json"))
    assert rc == 2 and "passphrase_required" in err and not (tmp_path / "c.json").exists()


def test_genesis_from_key_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("v1", "office"):
        assert run(capsys, "keygen", "--out", str(tmp_path / f"{name}.json"), "--insecure-plain")[0] == 0
    rc, out, err = run(capsys, "genesis", "--chain", "xilingol-test", "--validator",
                       f"league:152500:{tmp_path / 'v1.json'}", "--trace-office-key", str(tmp_path / "office.json"),
                       "--quota", "152523=1000", "--slaughter-requires-hsm", "--time", "1790000000000",
                       "--out", str(tmp_path / "genesis.json"))
    assert rc == 0, err
    g = load_genesis(tmp_path / "genesis.json")
    assert g.chain == "xilingol-test" and g.params.slaughter_requires_hsm and g.params.tag_quotas == {"152523": 1000}
    assert g.validators[0].pub == load_public_key(tmp_path / "v1.json").public_key
    assert json.loads(out)["hash"] == g.hash.hex()
    rc, _, err = run(capsys, "genesis", "--chain", "x", "--validator", "no-colons",
                     "--trace-office-key", str(tmp_path / "office.json"), "--out", str(tmp_path / "g2.json"))
    assert rc == 2 and "bad_argument" in err


def test_submit_and_status_against_a_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = World(now=int(time.time() * 1000))
    s = Served(w.new_node(clock=lambda: int(time.time() * 1000)))
    s.node.start()
    try:
        save_key_file(w.keys[OFFICE], tmp_path / "office.json", passphrase=None, insecure_plain=True)
        coop_key = generate("ed25519")
        body = json.dumps({"id": "coop", "role": "cooperative", "banner": "152523", "keys": [
            {"alg": "ed25519", "pub": coop_key.public_key.hex(), "storage": "software"}]})
        rc, out, err = run(capsys, "submit", "--url", s.url, "--key", str(tmp_path / "office.json"),
                           "--actor", OFFICE, "--kind", "actor.enroll", "--body", body, "--wait")
        assert rc == 0, err
        assert json.loads(out)["state"] == "committed"
        # a rejected event: non-zero exit and its code on stderr
        rc, out, err = run(capsys, "submit", "--url", s.url, "--key", str(tmp_path / "office.json"),
                           "--actor", OFFICE, "--kind", "tags.issue",
                           "--body", json.dumps({"to": "coop", "first": "315252400000001", "count": 5, "year": 2026}))
        assert rc == 1 and "tag_county_mismatch" in err
        rc, out, _ = run(capsys, "status", "--url", s.url)
        assert rc == 0 and json.loads(out)["log_size"] == 1
        rc, _, err = run(capsys, "submit", "--url", s.url, "--key", str(tmp_path / "office.json"),
                         "--actor", OFFICE, "--kind", "actor.enroll", "--body", "{not json")
        assert rc == 2 and "malformed" in err
    finally:
        s.node.stop()
        s.close()


def test_status_of_an_unreachable_node(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "status", "--url", "http://127.0.0.1:9")
    assert rc == 2 and "error:" in err
