"""A node whose disk fills up while it commits events (a real node process, real LevelDB).

The node process runs with ``RLIMIT_FSIZE`` lowered: once LevelDB's log file reaches the
limit, its writes fail with ``EFBIG`` ("File too large"), as they would with ``ENOSPC`` on
a full disk (CPython ignores ``SIGXFSZ``).  The node must then stop pretending: refuse
events with ``503 storage_unavailable``, report unhealthy, keep answering reads of the
chain as committed, and never write to that LevelDB handle again, even when space comes
back (LevelDB may have left half a record in its log: a write appended after it is
acknowledged but makes the store unreadable at the next open).  After a restart without
the limit the chain is exactly what was reported committed, the audit says intact, and
the node commits again.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from api.client import Client
from helpers import World, free_ports, wait_until
from lambtrace.config import NodeConfig, genesis_to_json
from ledger import codec
from signer import save_key_file
from test_rejections_http import base

pytestmark = pytest.mark.cluster

FSIZE_LIMIT = 400_000
"""Bytes any one file of the node may reach: room for a few blocks of ``BATCH`` events."""
BATCH = 100
MAX_BATCHES = 40
"""The limit is reached after about five batches; this many mean it never was."""


class DiskNode:
    """One single-validator node process over ``tmp``, started with or without the limit."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.w = w = World(now=int(time.time() * 1000), quotas={"152523": 100_000, "152524": 1000})
        (tmp / "genesis.json").write_text(genesis_to_json(w.genesis))
        save_key_file(w.validator, tmp / "league.key", passphrase=None, insecure_plain=True)
        (port,) = free_ports(1)
        NodeConfig(name="league", genesis=tmp / "genesis.json", data=tmp / "league", listen=f"127.0.0.1:{port}",
                   key=tmp / "league.key", verify_processes=0).save(tmp / "league.json")
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.serial = 1000

    def start(self, fsize_limit: int | None) -> None:
        def lower_limit(soft: int) -> None:
            # Only the soft limit: the test raises it again later ("space comes back").
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

        limit = fsize_limit
        with open(self.tmp / "league.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lambtrace", "node", "--config", str(self.tmp / "league.json")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=(lambda: lower_limit(limit)) if limit is not None else None)
        assert wait_until(self.healthy, 30), self.log()

    def stop(self) -> int:
        """SIGTERM, and the exit code; SIGKILL (and a failed test) if the node hangs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the node did not stop on SIGTERM\n" + self.log()) from None
        finally:
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return (self.tmp / "league.log").read_text(errors="replace")

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def health(self) -> requests.Response:
        return requests.get(self.url + "/healthz", timeout=10)

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = requests.get(self.url + "/v1/status", timeout=10).json()
        return st

    def event(self, eid: str) -> dict[str, Any]:
        r = requests.get(f"{self.url}/v1/events/{eid}", timeout=10)
        assert r.status_code == 200, r.text
        ev: dict[str, Any] = r.json()
        return ev

    def tags(self, n: int) -> list[dict[str, Any]]:
        out = [self.w.tag("agent", f"31525230{self.serial + i:07d}") for i in range(n)]
        self.serial += n
        return out

    def post(self, events: list[dict[str, Any]]) -> requests.Response:
        return requests.post(self.url + "/v1/events", data=codec.encode(events), timeout=30,
                             headers={"Content-Type": "application/msgpack", "Accept": "application/json"})

    def audit(self) -> dict[str, Any]:
        res = subprocess.run(
            [sys.executable, "-m", "lambtrace", "audit", "--data", str(self.tmp / "league"),
             "--genesis", str(self.tmp / "genesis.json"), "--workers", "0", "--quiet"],
            capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        report: dict[str, Any] = json.loads(res.stdout)
        return report


@pytest.fixture
def node(tmp_path: Path) -> Iterator[DiskNode]:
    n = DiskNode(tmp_path)
    try:
        yield n
    finally:
        n.kill()


def fill_disk(n: DiskNode) -> tuple[dict[str, tuple[int, int]], dict[str, Any]]:
    """Submit batches until a block cannot be stored.  Returns every event reported committed
    (id -> (height, leaf index)) and ``/v1/status`` as it stood before the failure."""
    committed: dict[str, tuple[int, int]] = {}
    setup = Client(n.url).submit([*base(n.w), n.w.issue("coop", "315252300001000", 90_000)],
                                 wait=True, timeout_ms=30_000)
    assert all(r.get("state") == "committed" for r in setup), setup
    committed.update({r["id"]: (r["height"], r["index"]) for r in setup})
    before = n.status()
    for _ in range(MAX_BATCHES):
        r = n.post(n.tags(BATCH))
        if r.status_code == 503:  # the failure came between two batches
            break
        assert r.status_code == 200, r.text
        ids = [x["id"] for x in r.json()["results"]]
        assert all(x["status"] == "accepted" for x in r.json()["results"]), r.text

        def settled(ids: list[str] = ids) -> bool:
            return n.health().status_code == 503 or all(n.event(i)["state"] == "committed" for i in ids)

        assert wait_until(settled, 60), n.log()[-3000:]
        if n.health().status_code == 503:
            break
        for i in ids:
            e = n.event(i)
            committed[i] = (e["height"], e["index"])
        before = n.status()
    else:
        raise AssertionError(f"{MAX_BATCHES} batches of {BATCH} events never reached the file size limit")
    return committed, before


def assert_refuses(n: DiskNode, before: dict[str, Any], committed: dict[str, tuple[int, int]]) -> None:
    """Failed store: alive, unhealthy, refusing writes with a stable code, still reading."""
    assert n.proc is not None and n.proc.poll() is None, n.log()[-3000:]
    h = n.health()
    assert h.status_code == 503, h.text
    assert h.json()["error"]["code"] == "storage_unavailable", h.text
    r = n.post(n.tags(3))
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "storage_unavailable", r.text
    assert "restart" in r.json()["error"]["message"]
    st = n.status()
    for k in ("height", "log_size", "log_root", "last_block_hash"):
        assert st[k] == before[k], (k, st, before)
    some = next(iter(committed))
    assert n.event(some)["state"] == "committed"


def assert_intact_after_restart(n: DiskNode, before: dict[str, Any], committed: dict[str, tuple[int, int]]) -> None:
    assert n.stop() == 0, n.log()[-3000:]
    n.start(None)  # space is back: no limit
    st = n.status()
    for k in ("height", "log_size", "log_root", "last_block_hash"):
        assert st[k] == before[k], (k, st, before)
    for eid, (height, index) in committed.items():
        e = n.event(eid)
        assert (e["state"], e["height"], e["index"]) == ("committed", height, index), e
    res = Client(n.url).submit(n.tags(5), wait=True, timeout_ms=30_000)
    assert [r.get("state") for r in res] == ["committed"] * 5, res
    assert n.health().json()["height"] == before["height"] + 1
    assert n.stop() == 0, n.log()[-3000:]
    report = n.audit()
    assert report["intact"] is True, report
    assert report["height"] == before["height"] + 1
    assert report["log_size"] == before["log_size"] + 5


@pytest.mark.parametrize("space_back", [False, True], ids=["disk_stays_full", "space_comes_back"])
def test_disk_full_refuses_events_and_keeps_the_committed_chain(node: DiskNode, space_back: bool) -> None:
    node.start(FSIZE_LIMIT)
    committed, before = fill_disk(node)
    assert before["height"] >= 3 and len(committed) >= 2 * BATCH, "the limit left too little room to test"
    assert_refuses(node, before, committed)
    if space_back:
        # The operator frees space while the node runs.  The failed LevelDB handle must stay
        # closed to writes: before the fix the node committed the next block here, reported
        # it committed, and then could not open its store again ("Corruption: checksum mismatch").
        assert node.proc is not None
        resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, resource.getrlimit(resource.RLIMIT_FSIZE))
        assert_refuses(node, before, committed)
    log = node.log()
    assert log.count("storage failed while committing block") == 1, log[-3000:]
    assert "(storage_unavailable)" in log
    assert "Traceback" not in log, log[-3000:]  # one clear line, not a traceback every block interval
    assert_intact_after_restart(node, before, committed)
