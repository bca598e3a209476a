"""Test helpers: a :class:`World` that makes genesis, keys and signed events, and a
:class:`Served` node behind a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from werkzeug.serving import make_server

from ledger import codec
from ledger import events as E
from ledger.genesis import Genesis, Params, Validator
from ledger.recallmap import KIND as RECALLS
from node.kv import KV, MemoryKV
from node.node import Node
from node.store import ChainStore
from signer import SoftwareSigner, generate, public_key_record

OFFICE = "league-trace-office"
T0 = 1_790_000_000_000  # fixed instants keep tests deterministic


@dataclass
class World:
    """A genesis, its validator and trace office, and the key of every actor made."""

    now: int = T0
    hsm: bool = False
    quotas: dict[str, int] = field(default_factory=lambda: {"152523": 1_000, "152524": 1_000})
    chain: str = "test-chain"
    recall_map: bool = True
    """Whether genesis commits the recall map (``params.state_root``), as new chains do."""

    def __post_init__(self) -> None:
        self.validator = generate("ed25519")
        self.keys: dict[str, SoftwareSigner] = {OFFICE: generate("ed25519")}
        g = Genesis(
            chain=self.chain,
            time=self.now - 60_000,
            validators=(Validator("league", "152500", "ed25519", self.validator.public_key),),
            trace_office={"id": OFFICE, "banner": "152500", "name": "trace office",
                          "keys": [public_key_record(self.keys[OFFICE])]},
            params=Params(slaughter_requires_hsm=self.hsm, tag_quotas=dict(self.quotas),
                          state_root=RECALLS if self.recall_map else ""),
        )
        self.genesis = Genesis.from_dict(g.to_dict())

    def ev(self, kind: str, actor: str, body: dict[str, Any], *, signer: Any = None,
           t: int | None = None, chain: str | None = None) -> dict[str, Any]:
        s = signer if signer is not None else self.keys[actor]
        env = E.envelope(chain or self.chain, kind, actor, self.now if t is None else t, body)
        return E.sign(env, s)

    def enroll(self, aid: str, role: str, banner: str, *, alg: str = "ed25519", parent: str | None = None,
               storage: str = "software", not_after: int | None = None) -> dict[str, Any]:
        key = generate(alg)
        self.keys[aid] = key
        rec: dict[str, Any] = {"alg": key.alg, "pub": key.public_key, "storage": storage}
        if not_after is not None:
            rec["not_after"] = not_after
        body: dict[str, Any] = {"id": aid, "role": role, "banner": banner, "keys": [rec]}
        if parent:
            body["parent"] = parent
        return self.ev("actor.enroll", OFFICE, body)

    def issue(self, to: str, first: str, count: int, year: int = 2026) -> dict[str, Any]:
        return self.ev("tags.issue", OFFICE, {"to": to, "first": first, "count": count, "year": year})

    def tag(self, actor: str, tag: str, *, chip: str | None = None, signer: Any = None) -> dict[str, Any]:
        body = {"tag": tag, "herder": "h-0001", "born": "2026-03-10", "breed": "苏尼特羊", "sex": "male",
                "sumu": "满都拉图镇"}
        if chip:
            body["chip"] = chip
        return self.ev("lamb.tag", actor, body, signer=signer)

    def ship(self, actor: str, shipment: str, to: str, lambs: list[str]) -> dict[str, Any]:
        return self.ev("custody.ship", actor, {"shipment": shipment, "to": to, "lambs": lambs})

    def receive(self, actor: str, shipment: str) -> dict[str, Any]:
        return self.ev("custody.receive", actor, {"shipment": shipment})

    def slaughter(self, actor: str, tag: str, carcass: str, mass_g: int = 18_000) -> dict[str, Any]:
        return self.ev("lamb.slaughter", actor, {
            "tag": tag, "carcass": carcass, "carcass_mass_g": mass_g, "quarantine_cert": "QC-2026-0001",
            "price_fen_per_kg": 6600, "market_price_fen_per_kg": 6500, "date": "2026-10-01"})

    def label(self, actor: str, carcass: str, labels: list[tuple[str, int]]) -> dict[str, Any]:
        return self.ev("label.issue", actor, {"carcass": carcass, "labels": [
            {"label": lid, "cut": "羊腿", "net_mass_g": m, "packed": "2026-10-02",
             "check": hashlib.sha256(b"salt" + lid.encode()).digest()} for lid, m in labels]})

    def new_node(self, kv: KV | None = None, clock: Any = None) -> Node:
        store = ChainStore(kv if kv is not None else MemoryKV(), self.genesis)
        return Node(store, self.genesis, name="league", signer=self.validator,
                    clock=clock or (lambda: self.now + 1000))


class Served:
    """``create_app(node)`` served by werkzeug on 127.0.0.1 in a thread: real HTTP over TCP."""

    def __init__(self, node: Node) -> None:
        from api import create_app

        self.node = node
        self.server = make_server("127.0.0.1", 0, create_app(node), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.http = requests.Session()

    def post_events(self, events: list[dict[str, Any]] | dict[str, Any], *, msgpack: bool = True) -> requests.Response:
        if msgpack:
            return self.http.post(self.url + "/v1/events", data=codec.encode(events),
                                  headers={"Content-Type": "application/msgpack"}, timeout=30)
        return self.http.post(self.url + "/v1/events", json=E.to_json(events) if isinstance(events, dict)
                              else [E.to_json(e) for e in events], timeout=30)

    def submit(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = self.post_events(events)
        assert r.status_code == 200, r.text
        results: list[dict[str, Any]] = r.json()["results"]
        return results

    def commit(self) -> None:
        self.node.produce_block()

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def wait_until(pred: Any, timeout_s: float = 30.0, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval_s)
    return False


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie, which still answers kill(0), does not)."""
    import os
    from pathlib import Path

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def free_ports(n: int) -> list[int]:
    """``n`` ports free on 127.0.0.1, drawn below the kernel's ephemeral range (32768+),
    so that sockets other processes open with port 0 cannot take them before we bind."""
    import random
    import socket

    rng = random.Random()
    chosen: list[int] = []
    for _ in range(10_000):
        if len(chosen) == n:
            return chosen
        p = rng.randrange(20_000, 32_000)
        if p in chosen:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        chosen.append(p)
    raise RuntimeError("no free ports")


def free_port() -> int:
    return free_ports(1)[0]


def post_from(source: str, url: str, body: Any = None) -> tuple[int, Any]:
    """POST ``body`` (JSON, or nothing) to ``url`` from the local address ``source``
    (any of 127.0.0.0/8): to the node, a client of its own.  Returns the status and the
    JSON answer."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=30, source_address=(source, 0))
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if data is None else {"Content-Type": "application/json"}
        conn.request("POST", u.path + (f"?{u.query}" if u.query else ""), body=data, headers=headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def start(cfg: Path, log: Path) -> subprocess.Popen[bytes]:
    """``lambtrace node --config cfg`` in its own process (and session), output to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "lambtrace", "node", "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout_s: float = 20) -> None:
    """SIGTERM every process, then wait for each; one that outlives ``timeout_s`` is killed."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
