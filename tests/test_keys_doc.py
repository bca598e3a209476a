"""What docs/keys.md tells a trace office, done with the command line against a real node.

A seasoned chain served over HTTP on 127.0.0.1; every step goes through ``lambtrace``
(``actors``, ``submit``, ``keygen``, ``pubkey``, ``devices retire``, ``verify-label``), and each claim
of the document is checked as it says: an actor enrolled from its public file; a key
rotated, after which the old key signs nothing more, not even backdated; a stolen plant
key revoked as of the moment it was lost, after which the label its slaughter proves
fails verification while the revocation's own event stands; the genesis trace office
unable to rotate its last key away (``last_key``) but able to swap it for a spare; a
retired terminal and a revoked actor refused, even backdated. Blocks are committed by
the test (``--wait`` would wait for a block producer this node does not run).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Served
from helpers_api import AGENT, OFFICE, PLANT, ApiWorld
from lambtrace.cli import main
from lambtrace.config import genesis_to_json
from node.kv import MemoryKV
from signer import generate, save_key_file


class Office:
    """The seasoned world, served; key files written where the commands read them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.w = ApiWorld(MemoryKV())
        self.w.season()
        self.served = Served(self.w.node)
        self.genesis = tmp / "genesis.json"
        self.genesis.write_text(genesis_to_json(self.w.genesis))
        self.office = self.key_file(OFFICE)

    def key_file(self, name: str, signer: Any = None) -> Path:
        path = self.tmp / f"{name}.json"
        save_key_file(signer or self.w.keys[name], path, passphrase=None, insecure_plain=True, overwrite=True)
        return path

    def submit(self, capsys: pytest.CaptureFixture[str], key: Path, actor: str, kind: str, body: Any,
               *, time: int | None = None) -> tuple[int, str]:
        """``lambtrace submit``; ``time`` defaults to the node's clock. Returns (exit code, stderr)."""
        time = self._time(time)
        text = body if isinstance(body, str) else json.dumps(body)
        rc = main(["submit", "--url", self.served.url, "--key", str(key), "--actor", actor, "--kind", kind,
                   "--body", text, "--time", str(time)])
        err = capsys.readouterr().err
        return rc, err

    def actors(self, capsys: pytest.CaptureFixture[str], sub: str, key: Path, *args: str,
               time: int | None = None) -> tuple[int, str]:
        """``lambtrace actors SUB`` signed by the trace office with ``key``; (exit code, stderr)."""
        time = self._time(time)
        rc = main(["actors", sub, "--url", self.served.url, "--key", str(key), "--actor", OFFICE,
                   "--time", str(time), *args])
        return rc, capsys.readouterr().err

    def public_file(self, name: str, signer: Any) -> Path:
        """A public-only key file of ``signer``, as an actor hands it over."""
        path = self.tmp / f"{name}.pub.json"
        assert main(["pubkey", "--key", str(self.key_file(name, signer)), "--out", str(path)]) == 0
        return path

    def _time(self, time: int | None) -> int:
        """``time``, or the node's clock moved on by 1 ms."""
        if time is None:
            self.w.now += 1
            time = self.w.now
        return time

    def commit(self) -> None:
        self.w.commit()

    def kid(self, name: str) -> str:
        return self.w.keys[name].key_id


@pytest.fixture
def office(tmp_path: Path) -> Iterator[Office]:
    o = Office(tmp_path)
    yield o
    o.served.close()


def tag_body(tag: str) -> dict[str, Any]:
    return {"tag": tag, "herder": "h-0001", "born": "2026-03-10", "breed": "苏尼特羊", "sex": "male",
            "sumu": "满都拉图镇"}


def test_enrol_from_a_public_file(office: Office, capsys: pytest.CaptureFixture[str]) -> None:
    tmp = office.tmp
    assert main(["keygen", "--out", str(tmp / "coop-xyz.json"), "--public-out", str(tmp / "coop-xyz.pub.json"),
                 "--insecure-plain"]) == 0
    capsys.readouterr()
    assert main(["pubkey", "--key", str(tmp / "coop-xyz.pub.json")]) == 0
    pub = json.loads(capsys.readouterr().out)
    rc, err = office.actors(capsys, "enroll", office.office, "--id", "coop-xyz", "--role", "cooperative",
                            "--banner", "152523", "--name", "满都拉图合作社",
                            "--actor-key", str(tmp / "coop-xyz.pub.json"))
    assert rc == 0, err
    office.commit()
    assert main(["actors", "show", "--url", office.served.url, "--id", "coop-xyz"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["key_ids"] == [pub["key_id"]] and record["keys"][0]["revoked_at"] is None
    assert (record["role"], record["banner"], record["name"]) == ("cooperative", "152523", "满都拉图合作社")
    # the same through submit, with the body written by hand
    body = {"id": "coop-abc", "role": "cooperative", "banner": "152523", "keys": [
        {"alg": pub["alg"], "pub": generate("ed25519").public_key.hex(), "storage": "software"}]}
    (tmp / "enroll-coop-abc.json").write_text(json.dumps(body))
    rc, err = office.submit(capsys, office.office, OFFICE, "actor.enroll", f"@{tmp / 'enroll-coop-abc.json'}")
    assert rc == 0, err
    # a rotation that neither adds nor revokes is a usage error, before anything is signed
    rc, err = office.actors(capsys, "rotate", office.office, "--id", "coop-xyz")
    assert rc == 2 and "bad_argument" in err, err


def test_a_rotated_out_key_signs_nothing_more_not_even_backdated(office: Office,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    w = office.w
    old = office.key_file(AGENT)
    before = w.now
    new = generate("ed25519")
    rc, err = office.actors(capsys, "rotate", office.office, "--id", AGENT, "--add",
                            str(office.public_file("agent-new", new)), "--revoke", office.kid(AGENT))
    assert rc == 0, err
    office.commit()
    rc, err = office.submit(capsys, old, AGENT, "lamb.tag", tag_body("315252300000003"), time=before)
    assert rc == 1 and "key_revoked" in err, err
    rc, err = office.submit(capsys, office.key_file("agent-new", new), AGENT, "lamb.tag", tag_body("315252300000003"))
    assert rc == 0, err


def test_a_stolen_key_revoked_as_of_when_it_was_lost(office: Office, capsys: pytest.CaptureFixture[str]) -> None:
    """The plant signed l-0001's slaughter with its first key; revoking that key as of the
    slaughter's time makes the label fail verification."""
    w = office.w
    label_url = f"{office.served.url}/l/l-0001"
    assert main(["verify-label", "--url", label_url, "--genesis", str(office.genesis)]) == 0
    capsys.readouterr()
    slaughter = next(e for e in w.get("/v1/tags/315252300000001")["events"] if e["kind"] == "lamb.slaughter")
    lost_at = slaughter["time"]
    rc, err = office.actors(capsys, "rotate", office.office, "--id", PLANT, "--revoke", office.kid(PLANT),
                            time=lost_at)
    assert rc == 0, err
    office.commit()
    assert main(["verify-label", "--url", label_url, "--genesis", str(office.genesis)]) == 1
    cap = capsys.readouterr()
    assert json.loads(cap.out)["code"] == "key_not_valid_at_time"
    assert f"key {office.kid(PLANT)} was revoked at leaf" in cap.err


def test_the_genesis_office_keeps_a_key_and_swaps_in_a_spare(office: Office,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = office.actors(capsys, "rotate", office.office, "--id", OFFICE, "--revoke", office.kid(OFFICE))
    assert rc == 1 and "last_key" in err, err
    spare = generate("ecdsa-p256")
    rc, err = office.actors(capsys, "rotate", office.office, "--id", OFFICE, "--revoke", office.kid(OFFICE),
                            "--add", str(office.public_file("spare", spare)))
    assert rc == 0, err
    office.commit()
    # the spare now signs for the office; the old root key does not
    body = {"id": "coop-late", "role": "cooperative", "banner": "152523", "keys": [
        {"alg": "ed25519", "pub": generate("ed25519").public_key.hex(), "storage": "software"}]}
    rc, err = office.submit(capsys, office.office, OFFICE, "actor.enroll", body)
    assert rc == 1 and "key_revoked" in err, err
    rc, err = office.submit(capsys, office.key_file("spare", spare), OFFICE, "actor.enroll", body)
    assert rc == 0, err


def test_a_retired_terminal_and_a_revoked_actor_are_refused_even_backdated(
        office: Office, capsys: pytest.CaptureFixture[str]) -> None:
    w = office.w
    before = w.now
    assert main(["devices", "retire", "--url", office.served.url, "--key", str(office.office), "--actor", OFFICE,
                 "--device", "term-1", "--reason", "lost on the steppe", "--time", str(w.now + 1)]) == 0
    capsys.readouterr()
    w.now += 1
    office.commit()
    rc, err = office.submit(capsys, office.key_file("term-1"), AGENT, "lamb.tag", tag_body("315252300000003"),
                            time=before)
    assert rc == 1 and "device_retired" in err, err
    rc, err = office.actors(capsys, "revoke", office.office, "--id", AGENT, "--reason", "left the pilot")
    assert rc == 0, err
    office.commit()
    rc, err = office.submit(capsys, office.key_file(AGENT), AGENT, "lamb.tag", tag_body("315252300000003"),
                            time=before)
    assert rc == 1 and "actor_revoked" in err, err
