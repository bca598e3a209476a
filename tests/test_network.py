"""``lambtrace network init``: four validators and an observer as real processes; events
submitted to the observer reach the validators, and the observer replicates and serves."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from api.client import Client
from helpers import stop_processes, wait_until
from lambtrace.config import load_genesis
from ledger import events as E
from signer import generate, load_signer, public_key_record

pytestmark = pytest.mark.cluster


def free_block(n: int) -> int:
    for _ in range(50):
        base = random.randrange(20_000, 32_000)  # below the ephemeral range other sockets draw from
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            for s in socks:
                s.close()
            return base
        except OSError:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def test_observer_replicates_and_relays(tmp_path: Path) -> None:
    api = free_block(5)
    p2p = free_block(5)
    d = tmp_path / "net"
    r = subprocess.run([sys.executable, "-m", "lambtrace", "network", "init", "--dir", str(d), "--validators", "4",
                        "--observers", "1", "--api-port", str(api), "--p2p-port", str(p2p), "--insecure-plain"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    info = json.loads((d / "network.json").read_text())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in info["nodes"]:
            log = open(tmp_path / f"{n['name']}.log", "wb")  # noqa: SIM115
            procs.append(subprocess.Popen([sys.executable, "-m", "lambtrace", "node", "--config", n["config"]],
                                          stdout=log, stderr=subprocess.STDOUT))
        urls = {n["name"]: n["api"] for n in info["nodes"]}

        def up() -> bool:
            try:
                return all(requests.get(u + "/healthz", timeout=1).ok for u in urls.values())
            except requests.RequestException:
                return False

        assert wait_until(up, 30), "\n".join(p.read_text()[-500:] for p in tmp_path.glob("*.log"))
        obs = Client(urls["observer-1"])
        assert obs.status()["role"] == "observer"
        g = load_genesis(d / "genesis.json")
        office = load_signer(str(d / "keys" / "trace-office.json"))
        body: dict[str, Any] = {"id": "coop-1", "role": "cooperative", "banner": "152523",
                                "keys": [public_key_record(generate("ed25519"))]}
        ev = E.sign(E.envelope(g.chain, "actor.enroll", "league-trace-office", g.time + 1000, body), office)
        (res,) = obs.submit([ev], wait=True, timeout_ms=20_000)
        assert res["status"] == "accepted" and res.get("state") == "committed", res
        assert wait_until(lambda: all(Client(u).status()["log_size"] == 1 for u in urls.values()), 20)
        hashes = {Client(u).block(1)["hash"] for u in urls.values()}
        assert len(hashes) == 1
        assert obs.actor("coop-1")["role"] == "cooperative"
    finally:
        stop_processes(procs, 15)
