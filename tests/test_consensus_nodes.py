"""Four real nodes (rules, mempools, stores) reaching consensus through their drivers,
wired in-process (the TCP transport has its own tests; real processes in the cluster tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import OFFICE, wait_until
from ledger import codec
from ledger.consensus.replica import Replica
from ledger.genesis import Genesis, Params, Validator
from node.consensus import LOST_GUARD_MARGIN_MS, ConsensusDriver, FileGuard, FileWAL, NodeApp, validator_start
from node.kv import LevelKV
from node.node import Node
from node.store import ChainStore
from signer import generate, public_key_record
from test_rejections_http import base


class Net:
    def __init__(self) -> None:
        self.drivers: dict[str, ConsensusDriver] = {}
        self.cut: set[str] = set()

    def sender(self, me: str) -> tuple[Any, Any]:
        def send(to: str, msg: dict[str, Any]) -> None:
            if me not in self.cut and to not in self.cut and to in self.drivers:
                self.drivers[to].deliver(me, msg)

        def broadcast(msg: dict[str, Any]) -> None:
            for to in list(self.drivers):
                if to != me:
                    send(to, msg)

        return send, broadcast


class Cluster:
    def __init__(self, tmp: Path, n: int = 4) -> None:
        from helpers import World

        self.tmp = tmp
        self.world = w = World(now=int(time.time() * 1000))
        self.keys = {f"n{i}": generate("ed25519") for i in range(n)}
        g = Genesis(
            chain=w.chain, time=w.now - 60_000,
            validators=tuple(Validator(name, "152500", "ed25519", k.public_key, 1) for name, k in self.keys.items()),
            trace_office={"id": OFFICE, "banner": "152500", "keys": [public_key_record(w.keys[OFFICE])]},
            params=Params(tag_quotas=dict(w.quotas), timeout_propose_ms=400, timeout_prevote_ms=200,
                          timeout_precommit_ms=200, timeout_delta_ms=100, state_root="recalls/v1"),
        )
        w.genesis = Genesis.from_dict(g.to_dict())
        self.net = Net()
        self.nodes: dict[str, Node] = {}
        self.paused_because: dict[str, str] = {}
        for name in self.keys:
            self.boot(name)

    def boot(self, name: str) -> None:
        d = self.tmp / name
        d.mkdir(exist_ok=True)
        store = ChainStore(LevelKV(str(d / "chain.ldb")), self.world.genesis)
        node = Node(store, self.world.genesis, name=name, signer=self.keys[name])
        wal = FileWAL(d / "wal")
        wal.own_name = name
        start = validator_start(d / "guard.json", wal, node)
        self.paused_because[name] = start.paused_because
        replica = Replica(name=name, genesis=self.world.genesis, app=NodeApp(node), wal=wal, signer=self.keys[name],
                          guard=FileGuard(d / "guard.json"), paused_until_ms=start.paused_until_ms,
                          watch_until_ms=start.watch_until_ms)
        send, broadcast = self.net.sender(name)
        driver = ConsensusDriver(node, replica, send=send, broadcast=broadcast)
        node.admission_listeners.append(driver.relay_events)
        self.net.drivers[name] = driver
        self.nodes[name] = node
        driver.start()

    def kill(self, name: str) -> None:
        driver = self.net.drivers.pop(name)
        driver.stop()
        node = self.nodes.pop(name)
        node.stop()
        node.store.close()

    def all_at(self, log_size: int) -> Callable[[], bool]:
        """Whether every node's log has reached ``log_size``, for :func:`wait_until`."""
        return lambda: all(n.store.log_size >= log_size for n in self.nodes.values())

    def heights(self) -> dict[str, int]:
        return {n: node.store.height for n, node in self.nodes.items()}

    def close(self) -> None:
        for name in list(self.nodes):
            self.kill(name)


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    c = Cluster(tmp_path)
    yield c
    c.close()


def hashes(node: Node) -> list[bytes]:
    return [node.store.header(h).hash for h in range(1, node.store.height + 1)]  # type: ignore[union-attr]


def test_four_nodes_commit_the_same_blocks(cluster: Cluster) -> None:
    w = cluster.world
    results = cluster.nodes["n1"].submit(base(w))
    assert all(r["status"] == "accepted" for r in results)
    assert wait_until(lambda: all(n.store.log_size == 10 for n in cluster.nodes.values()), 30), cluster.heights()
    ref = hashes(cluster.nodes["n0"])
    assert all(hashes(n) == ref for n in cluster.nodes.values())
    # certificates carry more than 2/3 of the validators' precommits
    from ledger.blocks.certificate import verify_commit

    store = cluster.nodes["n2"].store
    for h in range(1, store.height + 1):
        cert = store.certificate(h)
        assert cert is not None and len(cert.precommits) >= 3
        verify_commit(cert, w.chain, h, store.header(h).hash, w.genesis.validators)  # type: ignore[union-attr]


def test_three_of_four_keep_going_and_the_fourth_catches_up(cluster: Cluster) -> None:
    w = cluster.world
    cluster.nodes["n0"].submit(base(w))
    assert wait_until(lambda: all(n.store.log_size == 10 for n in cluster.nodes.values()), 30)
    cluster.kill("n3")
    cluster.nodes["n1"].submit([w.tag("agent", f"3152523000000{i:02d}") for i in range(10, 20)])
    assert wait_until(lambda: all(n.store.log_size == 20 for n in cluster.nodes.values()), 30), cluster.heights()
    cluster.boot("n3")
    assert wait_until(lambda: cluster.nodes["n3"].store.log_size == 20, 30), cluster.heights()
    assert hashes(cluster.nodes["n3"]) == hashes(cluster.nodes["n0"])


def test_two_of_four_cannot_commit(cluster: Cluster) -> None:
    w = cluster.world
    cluster.net.cut |= {"n2", "n3"}
    cluster.nodes["n0"].submit(base(w))
    time.sleep(3)
    assert all(h == 0 for h in cluster.heights().values())
    cluster.net.cut.clear()
    assert wait_until(lambda: all(n.store.log_size == 10 for n in cluster.nodes.values()), 30), cluster.heights()


def test_a_validator_whose_disk_fails_stops_and_the_rest_go_on(cluster: Cluster,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """Fail-stop: a validator whose store refuses writes (disk full: see test_disk_full.py)
    leaves consensus with one clear line and refuses events; three of four keep going."""
    from ledger.errors import StorageError

    w = cluster.world
    cluster.nodes["n0"].submit(base(w))
    assert wait_until(lambda: all(n.store.log_size == 10 for n in cluster.nodes.values()), 30)
    sick = cluster.nodes["n3"]
    sick.store.kv.write_fault = StorageError("LevelDB write failed: File too large",
                                             code="storage_unavailable")
    cluster.nodes["n1"].submit([w.tag("agent", f"3152523000000{i:02d}") for i in range(10, 20)])
    assert wait_until(lambda: all(cluster.nodes[n].store.log_size == 20 for n in ("n0", "n1", "n2")), 30)
    assert wait_until(lambda: not cluster.net.drivers["n3"]._thread.is_alive(), 10)  # type: ignore[union-attr]
    assert sick.store.log_size == 10
    with pytest.raises(StorageError) as refused:
        sick.submit([w.tag("agent", "315252300000030")])
    assert refused.value.code == "storage_unavailable"
    stopped = [r for r in caplog.records if "consensus stopped at height" in r.getMessage()]
    assert len(stopped) == 1 and "free space" in stopped[0].getMessage()
    assert not [r for r in caplog.records if r.getMessage() == "consensus step failed"]


def test_a_consensus_log_that_cannot_be_written_stops_the_validator(cluster: Cluster) -> None:
    from ledger.errors import StorageError

    w = cluster.world
    wal = cluster.net.drivers["n2"].replica.wal

    def full(height: int, record: dict[str, Any]) -> None:
        raise StorageError("cannot write the consensus log: No space left on device", code="storage_unavailable")

    wal.append = full  # type: ignore[method-assign]
    cluster.nodes["n0"].submit(base(w))
    assert wait_until(lambda: all(cluster.nodes[n].store.log_size == 10 for n in ("n0", "n1", "n3")), 30)
    assert wait_until(lambda: not cluster.net.drivers["n2"]._thread.is_alive(), 10)  # type: ignore[union-attr]
    with pytest.raises(StorageError):
        cluster.nodes["n2"].check_writable()


def test_a_full_disk_under_the_wal_and_the_sign_guard_is_a_storage_error(tmp_path: Path) -> None:
    """/dev/full answers every write with ENOSPC, as a full disk does."""
    from ledger.errors import StorageError

    wal = FileWAL(tmp_path / "wal")
    (tmp_path / "wal" / f"{7:012d}.wal").symlink_to("/dev/full")
    with pytest.raises(StorageError) as wal_err:
        wal.append(7, {"t": "timeout", "step": "propose", "height": 7, "round": 0})
    assert wal_err.value.code == "storage_unavailable" and "No space left on device" in wal_err.value.message
    wal.close()  # what the failed write left buffered is dropped, not raised again
    guard = FileGuard(tmp_path / "guard.json")
    (tmp_path / "guard.json.tmp").symlink_to("/dev/full")
    with pytest.raises(StorageError) as guard_err:
        guard.check_and_record(1, 0, 1, b"vote")
    assert guard_err.value.code == "storage_unavailable" and guard.last == (0, -1, 0)


def test_timers_survive_a_wall_clock_stepped_back(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drivers time rounds on the monotonic clock: with the wall clock stepped back an
    hour (an NTP step, an operator's date command), timeouts still fire, so heights whose
    first proposer is down still move on to the next round.  Block times stay on the
    nodes' own clocks (here left unchanged, as one node's step is what the drift rule
    tolerates)."""
    w = cluster.world
    cluster.nodes["n0"].submit(base(w))
    assert wait_until(lambda: all(n.store.log_size == 10 for n in cluster.nodes.values()), 30)
    real = time.time
    for node in cluster.nodes.values():
        node.clock = lambda: int(real() * 1000)
    monkeypatch.setattr(time, "time", lambda: real() - 3600)
    cluster.net.cut |= {"n0"}  # the first proposer of every fourth height is gone
    live = [cluster.nodes[n] for n in ("n1", "n2", "n3")]
    for k in range(5):
        cluster.nodes["n1"].submit([w.tag("agent", f"3152523000000{20 + k:02d}")])
        assert wait_until(lambda k=k: all(n.store.log_size == 11 + k for n in live), 30), cluster.heights()


def until_n3_signed(cluster: Cluster) -> None:
    """Commit tagging events until n3 has signed something (it has a guard file): it
    listens for a second after its start (ADR 0014), so the first blocks may be decided
    without it."""
    w = cluster.world
    for i in range(90, 100):
        if (cluster.tmp / "n3" / "guard.json").exists():
            break
        cluster.nodes["n0"].submit([w.tag("agent", f"3152523000000{i:02d}")])
        assert wait_until(cluster.all_at(cluster.nodes["n0"].store.log_size + 1), 30)
    assert (cluster.tmp / "n3" / "guard.json").exists(), "n3 signed nothing"


def test_a_validator_that_lost_its_sign_guard_sits_out_until_the_network_moved_on(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """A validator restarted on its chain without its guard (restored from a backup, the
    file deleted) may have voted at the height the network is at now.  It signs nothing
    until its peers commit a block timed after its start (plus the clock margin), keeps
    following the chain meanwhile, and signs again from the next height (ADR 0014)."""
    import shutil

    w = cluster.world
    cluster.nodes["n0"].submit(base(w))
    assert wait_until(lambda: all(n.store.log_size == 10 for n in cluster.nodes.values()), 30)
    until_n3_signed(cluster)
    size = cluster.nodes["n0"].store.log_size
    cluster.kill("n3")
    (cluster.tmp / "n3" / "guard.json").unlink()
    shutil.rmtree(cluster.tmp / "n3" / "wal")
    cluster.boot("n3")
    replica = cluster.net.drivers["n3"].replica
    guard = replica.guard
    assert isinstance(guard, FileGuard) and replica.paused_until_ms is not None
    assert cluster.paused_because["n3"] == "sign_guard_lost"
    assert any("the guard was lost, so this validator signs nothing" in r.getMessage() for r in caplog.records)
    # the other three commit without it; it follows but does not vote
    cluster.nodes["n1"].submit([w.tag("agent", f"3152523000000{i:02d}") for i in range(10, 15)])
    assert wait_until(lambda: all(n.store.log_size == size + 5 for n in cluster.nodes.values()), 30), cluster.heights()
    stats = cluster.net.drivers["n3"].replica.stats
    assert stats.refused_to_sign > 0 and replica.paused_until_ms is not None
    assert not (cluster.tmp / "n3" / "guard.json").exists()
    paused_through = cluster.nodes["n3"].store.height
    # the network's clocks pass the margin: the next block releases it
    real = time.time
    for node in cluster.nodes.values():
        node.clock = lambda: int(real() * 1000) + LOST_GUARD_MARGIN_MS + 5_000
    cluster.nodes["n2"].submit([w.tag("agent", f"3152523000000{i:02d}") for i in range(15, 20)])
    assert wait_until(lambda: replica.paused_until_ms is None, 30), cluster.heights()
    assert stats.resumed_at is not None
    released_at = stats.resumed_at - 1
    assert released_at > paused_through
    assert wait_until(lambda: all(n.store.log_size == size + 10 for n in cluster.nodes.values()), 30), cluster.heights()
    cluster.nodes["n0"].submit([w.tag("agent", f"3152523000000{i:02d}") for i in range(20, 25)])
    assert wait_until(lambda: all(n.store.log_size == size + 15 for n in cluster.nodes.values()), 30), cluster.heights()
    # it signs again, but never at or below the block that released it
    assert wait_until(lambda: guard.last[0] > released_at and guard.last[1] >= 0, 30), guard.last
    store = cluster.nodes["n0"].store
    for h in range(paused_through, released_at + 1):
        cert = store.certificate(h)
        assert cert is not None and "n3" not in [name for name, _ in cert.precommits], h
    assert hashes(cluster.nodes["n3"]) == hashes(cluster.nodes["n0"])


def test_a_validator_whose_consensus_log_is_damaged_sits_out_its_height(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """n3's log of the height it resumes at holds an unreadable record with more after
    it: what it logged there cannot be read back (its lock among it).  It sets the file
    aside, keeps its guard, and signs nothing until the network has moved past that
    height, while following the chain; the other three go on."""
    w = cluster.world
    cluster.nodes["n0"].submit(base(w))
    assert wait_until(cluster.all_at(10), 30), cluster.heights()
    until_n3_signed(cluster)  # so that it has a guard, and only the log is wrong
    nxt = cluster.nodes["n3"].store.height + 1  # the height n3 resumes at
    cluster.kill("n3")
    wal_file = cluster.tmp / "n3" / "wal" / f"{nxt:012d}.wal"
    vote = codec.encode({"t": "timeout", "step": "propose", "height": nxt, "round": 0})
    wal_file.write_bytes(len(vote).to_bytes(4, "big") + b"\xc1" + vote[1:] + len(vote).to_bytes(4, "big") + vote)
    cluster.boot("n3")
    replica = cluster.net.drivers["n3"].replica
    assert replica.paused_until_ms is not None and cluster.paused_because["n3"] == "consensus_log_damaged"
    assert (cluster.tmp / "n3" / "guard.json").exists()  # the guard itself was fine
    assert wal_file.with_name(wal_file.name + ".damaged").exists()
    assert any(f"the consensus log of height {nxt} is damaged" in r.getMessage() for r in caplog.records)
    assert not any("the guard was lost" in r.getMessage() for r in caplog.records)
    size = cluster.nodes["n0"].store.log_size
    cluster.nodes["n1"].submit([w.tag("agent", f"3152523000000{i:02d}") for i in range(10, 15)])
    assert wait_until(cluster.all_at(size + 5), 30), cluster.heights()
    assert replica.stats.refused_to_sign > 0 and replica.paused_until_ms is not None
    assert hashes(cluster.nodes["n3"]) == hashes(cluster.nodes["n0"])


def test_a_validator_reinstalled_on_an_empty_disk_stops_signing_when_it_sees_its_earlier_run(
        cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    """Its disk lost (chain, WAL and guard), a validator starts as a new one would; the
    first block it syncs carries its earlier run's precommit, so it stops signing there
    until its peers commit a block timed after its start, and the chain goes on."""
    import shutil

    w = cluster.world
    cluster.net.cut |= {"n2"}  # every certificate then needs n3's precommit
    cluster.nodes["n0"].submit(base(w))
    assert wait_until(lambda: all(cluster.nodes[n].store.log_size == 10 for n in ("n0", "n1", "n3")), 30)
    cluster.net.cut.clear()
    assert wait_until(lambda: cluster.nodes["n2"].store.log_size == 10, 30), cluster.heights()
    cluster.kill("n3")
    shutil.rmtree(cluster.tmp / "n3")
    cluster.boot("n3")
    replica = cluster.net.drivers["n3"].replica
    assert replica.paused_until_ms is None  # an empty chain: it may be a new validator
    cluster.nodes["n1"].submit([w.tag("agent", f"3152523000000{i:02d}") for i in range(10, 15)])
    assert wait_until(lambda: all(n.store.log_size == 15 for n in cluster.nodes.values()), 30), cluster.heights()
    assert replica.stats.paused_at is not None and replica.paused_until_ms is not None
    assert any("an earlier run of it signed on this chain" in r.getMessage() for r in caplog.records)
    real = time.time
    for node in cluster.nodes.values():
        node.clock = lambda: int(real() * 1000) + LOST_GUARD_MARGIN_MS + 5_000
    cluster.nodes["n2"].submit([w.tag("agent", f"3152523000000{i:02d}") for i in range(15, 20)])
    assert wait_until(lambda: replica.paused_until_ms is None, 30), cluster.heights()
    assert wait_until(lambda: all(n.store.log_size == 20 for n in cluster.nodes.values()), 30), cluster.heights()
    assert hashes(cluster.nodes["n3"]) == hashes(cluster.nodes["n0"])


def test_a_validator_without_its_sign_guard_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One that starts on a chain it has been part of but without its guard says so
    before it votes, and pauses unless told ``--fresh-sign-guard``; with its guard, or on
    a chain at height 0 (a new validator), it says nothing."""
    from helpers import World
    from lambtrace.config import NodeConfig
    from lambtrace.runner import Consensus

    w = World()
    store = ChainStore(LevelKV(str(tmp_path / "chain.ldb")), w.genesis)
    node = Node(store, w.genesis, name="league", signer=w.validator, clock=lambda: w.now + 1000)
    try:
        cfg = NodeConfig(name="league", genesis=tmp_path / "genesis.json", data=tmp_path)
        st = Consensus(cfg, node).status()["sign_guard"]
        assert st["paused_until"] is None and st["paused_because"] is None
        assert not [r for r in caplog.records if "no sign guard" in r.getMessage()]
        node.submit(base(w))
        node.produce_block()
        st = Consensus(cfg, node).status()["sign_guard"]
        assert st["paused_until"] == w.now + 1000 + LOST_GUARD_MARGIN_MS and st["paused_because"] == "sign_guard_lost"
        warned = [r.getMessage() for r in caplog.records if "no sign guard" in r.getMessage()]
        assert len(warned) == 1 and "height 1" in warned[0] and "--fresh-sign-guard" in warned[0]
        caplog.clear()
        assert Consensus(cfg, node, fresh_sign_guard=True).status()["sign_guard"]["paused_until"] is None
        warned = [r.getMessage() for r in caplog.records if "no sign guard" in r.getMessage()]
        assert len(warned) == 1 and "starting a fresh one" in warned[0]
        caplog.clear()
        (tmp_path / "sign-guard.json").write_text('{"height": 2, "round": 0, "step": 1, "sign_bytes_sha256": ""}')
        st = Consensus(cfg, node).status()["sign_guard"]
        assert st["height"] == 2 and st["paused_because"] is None
        assert not [r for r in caplog.records if "no sign guard" in r.getMessage()]
        # a consensus log damaged before its end, at the height it resumes at: paused for that
        rec = codec.encode({"t": "timeout", "step": "propose", "height": 2, "round": 0})
        (tmp_path / "wal" / f"{2:012d}.wal").write_bytes(len(rec).to_bytes(4, "big") + b"\xc1" + rec[1:]
                                                         + len(rec).to_bytes(4, "big") + rec)
        st = Consensus(cfg, node).status()["sign_guard"]
        assert st["paused_because"] == "consensus_log_damaged" and st["paused_until"] is not None
        (tmp_path / "sign-guard.json").unlink()  # and both at once
        (tmp_path / "wal" / f"{2:012d}.wal.damaged").rename(tmp_path / "wal" / f"{2:012d}.wal")
        st = Consensus(cfg, node).status()["sign_guard"]
        assert st["paused_because"] == "sign_guard_lost, consensus_log_damaged"
    finally:
        node.stop()
        store.close()


def test_a_peer_relaying_forged_events_is_ignored_for_a_while(cluster: Cluster) -> None:
    """An honest peer relays only events it admitted, whose signatures verify; each forged
    one costs a verification here, so a peer that relays 64 is not heard for a minute."""
    from ledger import codec

    w = cluster.world
    cluster.nodes["n0"].submit(base(w))
    assert wait_until(lambda: all(n.store.log_size == 10 for n in cluster.nodes.values()), 30)
    victim, driver = cluster.nodes["n0"], cluster.net.drivers["n0"]

    def leaf(i: int, forge: bool) -> bytes:
        ev = w.tag("agent", f"3152523000000{i:02d}")
        if forge:
            sig = ev["sigs"][0]["sig"]
            ev["sigs"][0]["sig"] = bytes([sig[0] ^ 1]) + sig[1:]
        return codec.encode(ev)

    for b in range(10):
        driver.deliver("n3", {"t": "events", "chain": w.chain, "events": [leaf(10 + i, True) for i in range(40)]})
        time.sleep(0.05 if b < 2 else 0)  # the first two batches are judged before the rest arrive
    assert wait_until(lambda: victim.metrics.rejected.get("bad_signature", 0) >= 80, 10)
    assert wait_until(lambda: driver.replica.stats.dropped.get("relay_muted", 0) >= 1, 10)
    time.sleep(0.5)
    assert victim.metrics.rejected.get("bad_signature", 0) < 400  # not all 400 were verified
    # the forgeries' genuine twins, relayed by an honest peer, are admitted and committed
    genuine = [leaf(10 + i, False) for i in range(40)]
    driver.deliver("n1", {"t": "events", "chain": w.chain, "events": genuine})
    assert wait_until(lambda: all(n.store.log_size == 50 for n in cluster.nodes.values()), 30), cluster.heights()


def test_a_proposer_whose_clock_is_behind_genesis_proposes_a_first_block_its_peers_accept() -> None:
    """Every validator requires block 1 to be later than genesis; a proposer whose clock
    reads earlier than the genesis time (set on another machine) dates it just after."""
    from helpers import World
    from node.kv import MemoryKV

    w = World(now=int(time.time() * 1000))
    keys = {name: generate("ed25519") for name in ("a", "b")}
    g = Genesis.from_dict(Genesis(
        chain=w.chain, time=w.now, trace_office={"id": OFFICE, "banner": "152500",
                                                  "keys": [public_key_record(w.keys[OFFICE])]},
        validators=tuple(Validator(n, "152500", "ed25519", k.public_key, 1) for n, k in keys.items()),
        params=Params(tag_quotas=dict(w.quotas))).to_dict())
    behind = Node(ChainStore(MemoryKV(), g), g, name="a", signer=keys["a"], clock=lambda: g.time - 5_000,
                  verify_threads=0)
    peer = Node(ChainStore(MemoryKV(), g), g, name="b", signer=keys["b"], clock=lambda: g.time + 1_000,
                verify_threads=0)
    try:
        value, payload = NodeApp(behind).propose(1, g.time - 5_000)
        assert payload["header"]["time"] == g.time + 1
        assert NodeApp(peer).validate(1, payload, "a", g.time + 1_000) == (value, True)
    finally:
        behind.stop()
        peer.stop()


def test_an_event_admitted_behind_a_partition_that_loses_to_a_committed_one_is_dropped_and_reported(
        cluster: Cluster) -> None:
    """n3, cut off, admits a tagging of lamb T; the other three commit another tagging
    of T meanwhile.  When n3 hears of their block it must drop its own from the mempool
    (the rules refuse it now), tell its submitter why, and go on committing with the rest
    on one chain."""
    from ledger import events as E

    w = cluster.world
    cluster.nodes["n0"].submit(base(w))
    assert wait_until(cluster.all_at(10), 30), cluster.heights()
    cluster.net.cut |= {"n3"}
    tag = "315252300000077"
    loser = w.tag("agent", tag)
    w.now += 1
    winner = w.tag("agent", tag)  # signed a millisecond later: another event
    loser_id, winner_id = E.event_id(loser["event"]), E.event_id(winner["event"])
    assert cluster.nodes["n3"].submit([loser])[0]["status"] == "accepted"
    assert cluster.nodes["n0"].submit([winner])[0]["status"] == "accepted"
    majority = [cluster.nodes[n] for n in ("n0", "n1", "n2")]
    assert wait_until(lambda: all(n.store.log_size == 11 for n in majority), 30), cluster.heights()
    assert cluster.nodes["n3"].event_status(loser_id) == {"state": "pending"}
    cluster.net.cut.clear()
    n3 = cluster.nodes["n3"]
    cluster.nodes["n1"].submit([w.tag("agent", "315252300000078")])  # a new block carries the news to n3
    assert wait_until(cluster.all_at(12), 30), cluster.heights()
    assert wait_until(lambda: n3.mempool_size == 0, 10)
    status = n3.event_status(loser_id)
    assert status is not None and status["state"] == "rejected" and status["code"] == "tag_already_applied", status
    assert n3.event_status(winner_id) is not None and n3.event_status(winner_id)["state"] == "committed"  # type: ignore[index]
    assert all(n.event_status(loser_id) is None or n.event_status(loser_id)["state"] == "rejected"  # type: ignore[index]
               for n in majority)
    assert all(hashes(n) == hashes(n3) for n in majority)
