"""End to end: a real node process on 127.0.0.1, a full lifecycle over HTTP, SIGKILL, restart."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
from typing import Any

import pytest
import requests

from api.client import Client
from helpers import healthy
from lambtrace.config import NodeConfig
from ledger import codec, merkle
from test_rejections_http import A, base, slaughtered
from verify import load_genesis_value, verify_label

pytestmark = pytest.mark.cluster


def chain_view(url: str) -> tuple[list[str], str, int]:
    st = requests.get(url + "/v1/status", timeout=5).json()
    hashes = [requests.get(f"{url}/v1/blocks/{h}", timeout=5).json()["hash"] for h in range(1, st["height"] + 1)]
    return hashes, st["log_root"], st["log_size"]


def test_lifecycle_survives_sigkill(real_node: Any) -> None:
    w, url, launch, tmp = real_node
    proc = launch()
    client = Client(url)
    events = [*base(w), *slaughtered(w), w.label("plant", "c-1", [("L1", 3000), ("L2", 2500)])]
    results = client.submit(events, wait=True)
    assert all(r["status"] == "accepted" for r in results), results
    assert all(r.get("state") == "committed" for r in results), results
    label = client.label("L1")
    assert label["tag"] == A if "tag" in label else json.dumps(label).find(A) >= 0
    tag = client.tag(A)
    kinds = [e["kind"] for e in tag["events"]]
    assert kinds[-5:] == ["lamb.tag", "custody.ship", "custody.receive", "lamb.slaughter", "label.issue"]

    before = chain_view(url)
    assert before[2] == len(events)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not healthy(url)

    launch()
    after = chain_view(url)
    assert after == before
    # the label's v2 proof bundle, served by the restarted node, verifies offline against
    # genesis; the genesis the node serves is the one it was started with
    raw = client.label_proof("L1", raw=True)
    bundle = codec.decode(raw)
    assert bundle["format"] == "lambtrace-label-proof/v3" and "genesis" not in bundle
    head = bundle["checkpoint"]["header"]
    merkle.verify_multiproof({i: merkle.leaf_hash(leaf) for i, leaf in bundle["events"]}, head["log_size"],
                             merkle.split_hashes(bundle["proof"]), head["log_root"])
    assert load_genesis_value(client.genesis()).hash == w.genesis.hash
    assert verify_label(raw, w.genesis, label="L1").tag == A
    # the restarted node goes on committing on the same chain
    (r,) = client.submit([w.tag("agent", "315252300000042")], wait=True)
    assert r["status"] == "accepted" and r["state"] == "committed"
    hashes, root, size = chain_view(url)
    assert hashes[: len(before[0])] == before[0] and size == before[2] + 1
    proof = client.consistency(before[2], size)
    merkle.verify_consistency(before[2], size, [bytes.fromhex(x) for x in proof["proof"]],
                              bytes.fromhex(before[1]), bytes.fromhex(root))


def test_sigkill_during_steady_load_loses_nothing_committed(real_node: Any) -> None:
    w, url, launch, tmp = real_node
    proc = launch()
    client = Client(url)
    assert all(r["status"] == "accepted" for r in client.submit(base(w), wait=True))
    committed: list[str] = []
    for i in range(5):
        batch = [w.tag("agent", f"3152523000000{10 + i * 10 + j:02d}") for j in range(10)]
        res = client.submit(batch, wait=True)
        committed += [r["id"] for r in res if r.get("state") == "committed"]
    pending = client.submit([w.tag("agent", f"31525230000009{j}") for j in range(5)])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    launch()
    for eid in committed:
        assert client.event(eid)["state"] == "committed"
    # events that were only pending may be gone; re-sending them is safe and idempotent
    again = client.submit([w.tag("agent", f"31525230000009{j}") for j in range(5)], wait=True)
    assert [r["id"] for r in again] == [r["id"] for r in pending]
    assert all(r["status"] in ("accepted", "duplicate") for r in again)


def test_clients_behind_a_trusted_reverse_proxy_are_told_apart(real_node: Any) -> None:
    """Scans count once an hour per client. Without ``trusted_proxy`` the client is the
    connecting address and ``X-Forwarded-For`` is ignored (anyone can send it); with it,
    the proxy's header names the client, and only the proxy's."""
    w, url, launch, tmp = real_node
    proc = launch()
    Client(url).submit([*base(w), *slaughtered(w), w.label("plant", "c-1", [("L1", 3000)])], wait=True)

    def scan(source: str, forwarded_for: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30,
                                          source_address=(source, 0))
        try:
            conn.request("POST", "/v1/labels/L1/scans", headers={"X-Forwarded-For": forwarded_for})
            r = conn.getresponse()
            assert r.status == 200
            return int(json.loads(r.read())["scans"])
        finally:
            conn.close()

    assert [scan("127.0.0.1", f"198.51.100.{i}") for i in (1, 2, 3)] == [1, 1, 1]
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait()
    cfg = NodeConfig.load(tmp / "config.json")
    cfg.trusted_proxy = "127.0.0.1"
    cfg.checks = {"check_scan_threshold": 4}
    cfg.save(tmp / "config.json")
    saved = json.loads((tmp / "config.json").read_text())
    assert (saved["trusted_proxy"], saved["check_scan_threshold"]) == ("127.0.0.1", 4)
    launch()
    assert [scan("127.0.0.1", f"198.51.100.{i}") for i in (1, 2, 3, 1)] == [2, 3, 4, 4]
    # a client that is not the proxy is itself, whatever it claims
    assert [scan("127.0.0.9", f"198.51.100.{i}") for i in (7, 8)] == [5, 5]
    # the node config's threshold is the node's
    stats = requests.get(url + "/v1/labels/L1/scans", timeout=10).json()
    assert stats["scan_threshold"] == 4 and stats["suspect_clone"] is True

    def backup(source: str, forwarded_for: str | None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=30,
                                          source_address=(source, 0))
        try:
            conn.request("GET", "/v1/backup", headers={"X-Forwarded-For": forwarded_for} if forwarded_for else {})
            r = conn.getresponse()
            body = r.read()
            if r.status == 200:
                assert body.startswith(b"LAMBTRACE-BACKUP")
            return r.status
        finally:
            conn.close()

    # through the proxy (a proxy on this machine connects from loopback), a backup is
    # refused whatever client the header names, loopback included
    assert backup("127.0.0.1", "127.0.0.1") == 403
    assert backup("127.0.0.1", "198.51.100.1") == 403
    # the local operator, straight to the node, and a loopback client that is not the proxy
    assert backup("127.0.0.1", None) == 200
    assert backup("127.0.0.9", "198.51.100.1") == 200


def test_sigterm_while_requests_are_in_flight_stops_cleanly(real_node: Any) -> None:
    """Requests a worker finishes after SIGTERM closed the server used to log a traceback
    each (waitress's wake-up pipe was closed under them)."""
    w, url, launch, tmp = real_node
    for _attempt in range(2):
        proc = launch()
        stop = threading.Event()

        def hammer(stop: threading.Event = stop) -> None:
            s = requests.Session()
            while not stop.is_set():
                try:
                    s.get(url + "/v1/status", timeout=2)
                except requests.RequestException:
                    pass

        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(12)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        stop.set()
        for t in threads:
            t.join(timeout=5)
    log = (tmp / "node.log").read_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 500:][:3000]
    assert log.count("signal 15: stopping") == 2
