"""Real-cluster fault tests: four node processes on 127.0.0.1, links through fault proxies.

Every node dials each peer through its own :class:`~node.faultproxy.FaultProxy`, so a
link is cut by cutting real TCP connections.  Under a steady load of signed events:
SIGKILL one node → the others keep committing and nothing reported committed is lost,
and the restarted node catches up to identical block hashes; a 2|2 partition → no
commits and no fork, then commits resume after healing; 1|3 → the majority continues.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from api.client import Client
from helpers import OFFICE, World, free_ports, wait_until
from lambtrace.config import NodeConfig, genesis_to_json
from ledger.genesis import Genesis, Params, Validator
from node.faultproxy import FaultProxy
from signer import generate, public_key_record, save_key_file
from test_rejections_http import base

pytestmark = pytest.mark.cluster
NAMES = ["league", "banner-152523", "banner-152524", "banner-152526"]


class RealCluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.world = w = World(now=int(time.time() * 1000))
        keys = {n: generate("ed25519") for n in NAMES}
        g = Genesis(
            chain=w.chain, time=w.now - 60_000,
            validators=tuple(Validator(n, "152500", "ed25519", k.public_key, 1) for n, k in keys.items()),
            trace_office={"id": OFFICE, "banner": "152500", "keys": [public_key_record(w.keys[OFFICE])]},
            params=Params(tag_quotas={"152523": 100_000, "152524": 1000}, timeout_propose_ms=600,
                          timeout_prevote_ms=300, timeout_precommit_ms=300, timeout_delta_ms=200,
                          state_root="recalls/v1"),
        )
        w.genesis = Genesis.from_dict(g.to_dict())
        (tmp / "genesis.json").write_text(genesis_to_json(w.genesis))
        ports = free_ports(2 * len(NAMES))
        self.api = {n: ports[i] for i, n in enumerate(NAMES)}
        p2p = {n: ports[len(NAMES) + i] for i, n in enumerate(NAMES)}
        self.proxies: dict[tuple[str, str], FaultProxy] = {}
        for a, b in itertools.permutations(NAMES, 2):
            proxy = FaultProxy(0, p2p[b], seed=hash((a, b)) & 0xFFFF)
            proxy.start()
            self.proxies[(a, b)] = proxy
        self.configs: dict[str, Path] = {}
        for n in NAMES:
            save_key_file(keys[n], tmp / f"{n}.key", passphrase=None, insecure_plain=True)
            cfg = NodeConfig(name=n, genesis=tmp / "genesis.json", data=tmp / n, listen=f"127.0.0.1:{self.api[n]}",
                             key=tmp / f"{n}.key", p2p_listen=f"127.0.0.1:{p2p[n]}",
                             peers=[f"{m}@127.0.0.1:{self.proxies[(n, m)].port}" for m in NAMES if m != n],
                             verify_processes=0)
            cfg.save(tmp / f"{n}.json")
            self.configs[n] = tmp / f"{n}.json"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for n in NAMES:
                self.start(n)
        except BaseException:
            self.close()  # a half-started cluster must not leave node processes behind
            raise

    def url(self, n: str) -> str:
        return f"http://127.0.0.1:{self.api[n]}"

    def start(self, n: str, *extra: str) -> None:
        log = open(self.tmp / f"{n}.log", "ab")  # noqa: SIM115
        self.procs[n] = subprocess.Popen([sys.executable, "-m", "lambtrace", "node", "--config", str(self.configs[n]),
                                          *extra],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        assert wait_until(lambda: self.healthy(n), 30), (self.tmp / f"{n}.log").read_text()[-3000:]

    def healthy(self, n: str) -> bool:
        try:
            return requests.get(self.url(n) + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def kill(self, n: str) -> None:
        p = self.procs.pop(n)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()

    def status(self, n: str) -> dict[str, Any]:
        return requests.get(self.url(n) + "/v1/status", timeout=5).json()

    def heights(self, names: list[str] | None = None) -> dict[str, int]:
        return {n: self.status(n)["height"] for n in (names or list(self.procs))}

    def block_hashes(self, n: str, upto: int) -> list[str]:
        return [requests.get(f"{self.url(n)}/v1/blocks/{h}", timeout=5).json()["hash"] for h in range(1, upto + 1)]

    def isolate(self, group: set[str]) -> None:
        """Cut every link between ``group`` and the other nodes."""
        for (a, b), p in self.proxies.items():
            if (a in group) != (b in group):
                p.cut()

    def heal(self) -> None:
        for p in self.proxies.values():
            p.heal()

    def close(self) -> None:
        for n in list(self.procs):
            p = self.procs.pop(n)
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for proxy in self.proxies.values():
            proxy.close()


class Load:
    """A steady trickle of lamb.tag events, each submitted to a live node."""

    def __init__(self, c: RealCluster, first: int) -> None:
        self.c = c
        self.serial = first
        self.committed: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        w = self.c.world
        while not self.stop.is_set():
            n = list(self.c.procs)[self.serial % len(self.c.procs)] if self.c.procs else None
            if n is None:
                time.sleep(0.1)
                continue
            ev = w.tag("agent", f"31525230{self.serial:07d}")
            self.serial += 1
            try:
                res = Client(self.c.url(n), timeout=10).submit([ev], wait=True, timeout_ms=3000)
                if res[0].get("state") == "committed":
                    self.committed.append(res[0]["id"])
            except Exception:
                pass
            time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = RealCluster(tmp_path_factory.mktemp("cluster"))
    setup = [*base(c.world), c.world.issue("coop", "315252300001000", 20_000)]
    res = Client(c.url("league")).submit(setup, wait=True, timeout_ms=30_000)
    assert all(r.get("state") == "committed" for r in res), res
    yield c
    c.close()


def same_chain(c: RealCluster, names: list[str]) -> None:
    top = min(c.status(n)["height"] for n in names)
    ref = c.block_hashes(names[0], top)
    for n in names[1:]:
        assert c.block_hashes(n, top) == ref, f"{n} differs from {names[0]}"


def test_all_nodes_hold_the_same_blocks(cluster: RealCluster) -> None:
    assert wait_until(lambda: len(set(cluster.heights().values())) == 1, 30)
    same_chain(cluster, NAMES)
    # with nothing to commit, every node says it waits for events at the next height
    # (not the machine's height -1 from before its first round)
    def idle(n: str) -> bool:
        st = cluster.status(n)
        return st["consensus"]["step"] == "idle" and st["consensus"]["height"] == st["height"] + 1

    assert wait_until(lambda: all(idle(n) for n in NAMES), 30), {n: cluster.status(n)["consensus"] for n in NAMES}


def test_sigkill_one_node_under_load(cluster: RealCluster) -> None:
    load = Load(cluster, 1000)
    load.thread.start()
    try:
        time.sleep(2)
        victim = "banner-152524"
        cluster.kill(victim)
        before = cluster.heights()
        assert wait_until(lambda: all(h > before[n] + 1 for n, h in cluster.heights().items()), 40), (
            before, cluster.heights())
        cluster.start(victim)
        assert wait_until(lambda: len(set(cluster.heights(NAMES).values())) == 1, 60), cluster.heights(NAMES)
    finally:
        load.stop.set()
        load.thread.join(timeout=20)
    assert load.committed, "the load committed nothing"
    for eid in load.committed:  # nothing reported committed is lost, on any node
        for n in NAMES:
            assert Client(cluster.url(n)).event(eid)["state"] == "committed"
    assert wait_until(lambda: len(set(cluster.heights(NAMES).values())) == 1, 30)
    same_chain(cluster, NAMES)


def test_a_validator_restarted_without_its_sign_guard_follows_but_does_not_sign(cluster: RealCluster) -> None:
    """Its guard lost (and its WAL), a validator process follows the chain but signs
    nothing while the other three commit; told ``--fresh-sign-guard``, it signs at once."""
    victim = "banner-152526"
    cluster.kill(victim)
    data = cluster.tmp / victim
    (data / "sign-guard.json").unlink()
    shutil.rmtree(data / "wal")
    cluster.start(victim)
    st = cluster.status(victim)
    assert st["sign_guard"]["paused_until"] is not None and st["sign_guard"]["paused_because"] == "sign_guard_lost", st
    load = Load(cluster, 3000)
    load.thread.start()
    try:
        before = cluster.heights()
        assert wait_until(lambda: all(h > before[n] + 2 for n, h in cluster.heights().items()), 40), (
            before, cluster.heights())
        st = cluster.status(victim)
        assert st["sign_guard"]["paused_until"] is not None and st["replica"]["refused_to_sign"] > 0, st
        assert not (data / "sign-guard.json").exists()
        cluster.kill(victim)
        cluster.start(victim, "--fresh-sign-guard")
        assert cluster.status(victim)["sign_guard"]["paused_until"] is None
        assert wait_until(lambda: (data / "sign-guard.json").exists(), 40), cluster.heights()
    finally:
        load.stop.set()
        load.thread.join(timeout=20)
    log = (cluster.tmp / f"{victim}.log").read_text()
    assert "the guard was lost, so this validator signs nothing" in log and "starting a fresh one" in log
    assert wait_until(lambda: len(set(cluster.heights(NAMES).values())) == 1, 30)
    same_chain(cluster, NAMES)


def test_partition_2_2_stops_commits_then_heals(cluster: RealCluster) -> None:
    cluster.isolate({"league", "banner-152523"})
    time.sleep(1.5)
    before = cluster.heights()
    load = Load(cluster, 5000)
    load.thread.start()
    try:
        time.sleep(5)
        during = cluster.heights()
        assert during == before, f"a 2|2 partition committed blocks: {before} -> {during}"
        cluster.heal()
        assert wait_until(lambda: min(cluster.heights().values()) > max(before.values()), 60), cluster.heights()
    finally:
        load.stop.set()
        load.thread.join(timeout=20)
    assert wait_until(lambda: len(set(cluster.heights().values())) == 1, 30)
    same_chain(cluster, NAMES)


def test_partition_1_3_majority_continues(cluster: RealCluster) -> None:
    lonely = "banner-152526"
    cluster.isolate({lonely})
    majority = [n for n in NAMES if n != lonely]
    before = cluster.heights()
    load = Load(cluster, 9000)
    load.thread.start()
    try:
        assert wait_until(lambda: all(h > before[n] for n, h in cluster.heights(majority).items()), 40)
        assert cluster.status(lonely)["height"] == before[lonely]
        cluster.heal()
    finally:
        load.stop.set()
        load.thread.join(timeout=20)
    assert wait_until(lambda: len(set(cluster.heights().values())) == 1, 60), cluster.heights()
    same_chain(cluster, NAMES)
