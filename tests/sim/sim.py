"""Deterministic simulation of the consensus: real replicas, simulated network and clock.

Every run is a function of its seed: message delays, drops, duplicates, reordering,
partitions, crashes and the byzantine validator's choices all come from one
``random.Random(seed)``.  The replicas are the real :class:`ledger.consensus.replica.Replica`
with in-memory apps, WALs and sign guards that survive their crashes.  Checkers run
after every step; a failure raises :class:`SimFailure` naming the seed, and
``python -m tests.sim.run --seed N`` replays it.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from ledger import codec
from ledger.blocks.certificate import CommitCertificate, verify_commit, vote_bytes
from ledger.consensus.replica import (
    LISTEN_MS,
    MemoryGuard,
    MemoryWAL,
    Out,
    Replica,
    Send,
    SetTimer,
    must_persist,
    proposal_bytes,
)
from ledger.errors import LedgerError
from ledger.genesis import Genesis, Params, Validator
from signer import SoftwareSigner


class SimFailure(AssertionError):
    pass


class SimApp:
    """A chain in memory: a block is ``{height, prev, time, proposer, data}``."""

    def __init__(self, genesis_hash: bytes) -> None:
        self.blocks: list[tuple[dict[str, Any], CommitCertificate]] = []
        self.hashes: list[bytes] = [genesis_hash]
        self.invalid_proposals = False  # set on the byzantine node's app

    def committed_height(self) -> int:
        return len(self.blocks)

    def has_pending(self) -> bool:
        return True

    def propose(self, height: int, now_ms: int) -> tuple[bytes, Any]:
        payload = {"height": height, "prev": self.hashes[-1], "time": now_ms, "data": now_ms.to_bytes(8, "big")}
        if self.invalid_proposals:
            payload["prev"] = b"\x00" * 32
        return block_hash(payload), payload

    def value_of(self, payload: Any) -> bytes | None:
        if type(payload) is not dict or set(payload) != {"height", "prev", "time", "data"}:
            return None
        return block_hash(payload)

    def validate(self, height: int, payload: Any, proposer: str, now_ms: int) -> tuple[bytes | None, bool]:
        value = self.value_of(payload)
        if value is None:
            return None, False
        return value, payload["height"] == height and payload["prev"] == self.hashes[-1]

    def commit(self, height: int, payload: Any, cert: CommitCertificate) -> None:
        if height != len(self.blocks) + 1:
            raise SimFailure(f"commit of height {height} on a chain at {len(self.blocks)}")
        self.blocks.append((payload, cert))
        self.hashes.append(block_hash(payload))

    def committed(self, height: int) -> tuple[Any, CommitCertificate] | None:
        return self.blocks[height - 1] if 0 < height <= len(self.blocks) else None

    def time_of(self, payload: Any) -> int:
        return int(payload["time"])


def block_hash(payload: dict[str, Any]) -> bytes:
    return hashlib.sha256(codec.encode(payload)).digest()


@dataclass
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    max_delay_ms: int = 50
    partition: tuple[int, int, list[set[str]]] | None = None
    """(from ms, to ms, groups): messages between groups are lost in that window."""
    crashes: list[tuple[str, int, int]] = field(default_factory=list)
    """(node, crash at ms, restart at ms)."""
    byzantine: str | None = None
    lose_guard: bool = False
    """A crashed node comes back without its WAL and sign guard (its chain kept), as a
    validator restored from a backup: it must sit out until a block timed after its
    restart is committed (ADR 0014)."""
    stays_down: bool = False
    """The crashed node never comes back (crash-stop): the others must go on without it."""
    lose_chain: bool = False
    """With ``lose_guard``: its chain is lost too (reinstalled on an empty disk); it signs
    until a block it syncs shows its earlier run's precommit, then sits out likewise."""
    power_loss: bool = False
    """A crash (with the WAL kept) is a power loss: the WAL keeps only what a real one
    had fsynced (:func:`~ledger.consensus.replica.must_persist`); peers' messages logged
    after the last such record are gone."""


class SimWAL(MemoryWAL):
    """A :class:`MemoryWAL` that knows which of its records a node's file WAL would have
    made durable, so a power loss can drop the rest."""

    def __init__(self, own_name: str) -> None:
        super().__init__()
        self.own_name = own_name
        self._durable: dict[int, int] = {}

    def append(self, height: int, record: dict[str, Any]) -> None:
        super().append(height, record)
        if must_persist(record, self.own_name):
            self._durable[height] = len(self._by_height[height])

    def lose_unsynced(self) -> int:
        """Drop every record logged after the height's last durable one; how many."""
        lost = 0
        for h, recs in self._by_height.items():
            keep = self._durable.get(h, 0)
            lost += len(recs) - keep
            del recs[keep:]
        return lost

    def forget_below(self, height: int) -> None:
        super().forget_below(height)
        self._durable = {h: n for h, n in self._durable.items() if h >= height}


@dataclass
class Node:
    name: str
    app: SimApp
    wal: SimWAL
    guard: MemoryGuard
    replica: Replica | None
    signer: SoftwareSigner
    up: bool = True
    epoch: int = 0


class Sim:
    TICK_MS = 200

    def __init__(self, seed: int, *, n: int = 4, heights: int = 6, faults: Faults | None = None,
                 pause_lost_guard: bool = True, listen_ms: int | None = None) -> None:
        self.seed = seed
        self.pause_lost_guard = pause_lost_guard
        self.listen_ms = listen_ms
        """How long a watching (reinstalled) validator listens before it signs; None: the
        replica's default."""
        self.reinstalled: set[str] = set()
        self.signed: dict[tuple[str, str, str, int, int], Any] = {}
        """Every proposal and vote an honest node sent: (node, kind, vote type, height, round) -> value."""
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.target = heights
        signers = [SoftwareSigner.from_seed("ed25519", hashlib.sha256(f"sim-{i}".encode()).digest())
                   for i in range(n)]
        office = SoftwareSigner.from_seed("ed25519", hashlib.sha256(b"sim-office").digest())
        self.genesis = Genesis(
            chain="sim",
            time=0,
            validators=tuple(Validator(f"v{i}", "152500", "ed25519", s.public_key, 1) for i, s in enumerate(signers)),
            trace_office={"id": "office", "banner": "152500", "keys": [
                {"alg": "ed25519", "pub": office.public_key, "storage": "software"}]},
            params=Params(timeout_propose_ms=300, timeout_prevote_ms=150, timeout_precommit_ms=150,
                          timeout_delta_ms=100),
        )
        self.nodes: dict[str, Node] = {}
        for i, s in enumerate(signers):
            name = f"v{i}"
            app = SimApp(self.genesis.hash)
            app.invalid_proposals = name == self.faults.byzantine and self.rng.random() < 0.5
            self.nodes[name] = Node(name, app, SimWAL(name), MemoryGuard(), None, s)
        self.now = 0
        self._q: list[tuple[int, int, str, str, Any]] = []
        self._seq = 0
        self.steps = 0
        self.last_heights = {name: 0 for name in self.nodes}
        self.certs_checked: dict[str, int] = {}
        self.wal_records_lost = 0
        """Records power losses dropped from crashed nodes' WALs."""
        self._lock_at_crash: dict[str, tuple[int, int, bytes | None]] = {}
        """Each crashed node's (height, locked round, locked value) when it went down."""

    def _check_lock_kept(self, node: Node) -> None:
        """A validator restarted from its WAL is locked as it was when it crashed (at the
        same height): the WAL made the lock durable with the precommit that took it."""
        before = self._lock_at_crash.pop(node.name, None)
        assert node.replica is not None
        m = node.replica.machine
        if before is None or m.height != before[0] or before[1] < 0:
            return
        if (m.locked_round, m.locked_value) != before[1:]:
            raise SimFailure(f"seed {self.seed}: {node.name} restarted at height {m.height} locked on round "
                             f"{m.locked_round}, but crashed locked on round {before[1]}")

    # -- scheduling ---------------------------------------------------------------------
    def _push(self, at: int, kind: str, to: str, data: Any) -> None:
        self._seq += 1
        heapq.heappush(self._q, (at, self._seq, kind, to, data))

    def _new_replica(self, node: Node, paused_until_ms: int | None = None,
                     watch_until_ms: int | None = None) -> Replica:
        return Replica(name=node.name, genesis=self.genesis, app=node.app, wal=node.wal, signer=node.signer,
                       guard=node.guard, paused_until_ms=paused_until_ms, watch_until_ms=watch_until_ms,
                       listen_ms=LISTEN_MS if self.listen_ms is None else self.listen_ms)

    def _carry_out(self, node: Node, outs: list[Out]) -> None:
        for o in outs:
            if isinstance(o, SetTimer):
                self._push(o.at_ms, "timer", node.name, (node.epoch, o.key))
            elif isinstance(o, Send):
                if node.name != self.faults.byzantine:
                    self._check_signed(node.name, o.msg)
                for msg_to, msg in self._byzantine(node, o):
                    targets = [msg_to] if msg_to is not None else [n for n in self.nodes if n != node.name]
                    for t in targets:
                        self._send(node.name, t, msg)

    def _send(self, src: str, dst: str, msg: dict[str, Any]) -> None:
        f = self.faults
        if self.rng.random() < f.drop:
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            at = self.now + 1 + self.rng.randrange(f.max_delay_ms)
            self._push(at, "msg", dst, (src, msg))

    def _cut(self, src: str, dst: str) -> bool:
        p = self.faults.partition
        if p is None or not p[0] <= self.now < p[1]:
            return False
        return not any(src in g and dst in g for g in p[2])

    # -- the byzantine validator ----------------------------------------------------------
    def _byzantine(self, node: Node, o: Send) -> list[tuple[str | None, dict[str, Any]]]:
        if node.name != self.faults.byzantine:
            return [(o.to, o.msg)]
        msg = o.msg
        rng = self.rng
        if msg.get("t") == "proposal" and rng.random() < 0.7:
            # equivocate: a different (valid-looking) block to each half of the peers
            other = dict(msg["block"])
            other["data"] = rng.randbytes(8)
            value = block_hash(other)
            forged = dict(msg, block=other, value=value,
                          sig=node.signer.sign(proposal_bytes("sim", msg["height"], msg["round"], value,
                                                              msg["valid_round"])))
            peers = [n for n in self.nodes if n != node.name]
            rng.shuffle(peers)
            half = len(peers) // 2
            return [(p, msg) for p in peers[:half]] + [(p, forged) for p in peers[half:]]
        if msg.get("t") == "vote" and rng.random() < 0.7:
            # vote for an unknown block (or nil) to some, honestly to others
            voted: bytes | None = rng.choice([None, rng.randbytes(32)])
            forged = dict(msg, value=voted,
                          sig=node.signer.sign(vote_bytes(msg["type"], "sim", msg["height"], msg["round"], voted)))
            return [(None, msg)] if rng.random() < 0.3 else [(None, forged)]
        if msg.get("t") == "commit" and rng.random() < 0.7:
            # a block-sync answer that must be refused: precommits out of order or cut
            # short, one validator's signature under another's name, or another block
            # under the genuine certificate
            cert = dict(msg["cert"])
            pcs = list(cert["precommits"])
            how = rng.randrange(4)
            if how == 0:
                cert["precommits"] = pcs[::-1] if len(pcs) > 1 else [dict(pcs[0], sig=bytes(64))]
            elif how == 1:
                cert["precommits"] = pcs[:2]
            elif how == 2:
                cert["precommits"] = [dict(pcs[0], sig=pcs[-1]["sig"] if len(pcs) > 1 else bytes(64)), *pcs[1:]]
            else:
                return [(o.to, dict(msg, block=dict(msg["block"], data=rng.randbytes(8))))]
            return [(o.to, dict(msg, cert=cert))]
        return [(o.to, msg)]

    # -- running ------------------------------------------------------------------------
    def run(self, max_ms: int = 120_000) -> None:
        for node in self.nodes.values():
            node.replica = self._new_replica(node)
            self._carry_out(node, node.replica.start(0))
            self._push(self.TICK_MS, "tick", node.name, node.epoch)
        for name, at, back in self.faults.crashes:
            self._push(at, "crash", name, None)
            if not self.faults.stays_down:
                self._push(back, "restart", name, None)
        while self._q:
            at, _s, kind, to, data = heapq.heappop(self._q)
            if at > max_ms:
                break
            self.now = at
            node = self.nodes[to]
            self.steps += 1
            if kind == "crash":
                if node.replica is not None:
                    m = node.replica.machine
                    self._lock_at_crash[node.name] = (m.height, m.locked_round, m.locked_value)
                node.up, node.replica = False, None
                node.epoch += 1
                if self.faults.power_loss:
                    self.wal_records_lost += node.wal.lose_unsynced()
            elif kind == "restart":
                node.up = True
                if self.faults.lose_guard:
                    node.wal, node.guard = SimWAL(node.name), MemoryGuard()
                    # the sim's nodes share one clock: any block proposed before the crash is older
                    until = self.now if self.pause_lost_guard else None
                    if self.faults.lose_chain:
                        node.app = SimApp(self.genesis.hash)
                        self.last_heights[node.name] = 0  # its disk is new: heights start again
                        self.reinstalled.add(node.name)
                        node.replica = self._new_replica(node, watch_until_ms=until)
                    else:
                        node.replica = self._new_replica(node, paused_until_ms=until)
                else:
                    node.replica = self._new_replica(node)
                outs = node.replica.start(self.now)
                if not self.faults.lose_guard:
                    self._check_lock_kept(node)
                self._carry_out(node, outs)
                self._push(self.now + self.TICK_MS, "tick", to, node.epoch)
            elif not node.up or node.replica is None:
                continue
            elif kind == "msg":
                src, msg = data
                if self._cut(src, to):
                    continue
                self._carry_out(node, node.replica.on_message(src, msg, self.now))
            elif kind == "timer":
                epoch, key = data
                if epoch == node.epoch:
                    self._carry_out(node, node.replica.on_timer(key, self.now))
            elif kind == "tick":
                if data == node.epoch:
                    self._carry_out(node, node.replica.tick(self.now))
                    self._push(self.now + self.TICK_MS, "tick", to, node.epoch)
            self.check()
            if self.done():
                return

    def honest(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.name != self.faults.byzantine]

    def done(self) -> bool:
        """Every honest node has reached the target height (but one crashed for good)."""
        gone = {name for name, _at, _back in self.faults.crashes} if self.faults.stays_down else set()
        return all(n.app.committed_height() >= self.target for n in self.honest() if n.name not in gone)

    # -- checkers -----------------------------------------------------------------------
    def _check_signed(self, name: str, msg: dict[str, Any]) -> None:
        """No honest node signs two different proposals or votes for one step.  One
        reinstalled on an empty disk is let off at heights other nodes have decided: before
        it has synced far enough to see its earlier run's precommits it may sign again at a
        height long decided, where nobody votes any more, so those signatures cannot count
        toward a second block."""
        if msg.get("t") not in ("proposal", "vote") or msg.get("from") != name:
            return
        key = (name, msg["t"], msg.get("type", ""), msg["height"], msg["round"])
        if self.signed.setdefault(key, msg["value"]) == msg["value"]:
            return
        if name in self.reinstalled and any(
                n.app.committed_height() >= msg["height"] for n in self.honest() if n.name != name):
            return
        raise SimFailure(f"seed {self.seed}: {name} signed two different {msg['t']}s at height "
                         f"{msg['height']} round {msg['round']} {msg.get('type', '')}")

    def check(self) -> None:
        honest = self.honest()
        for n in honest:
            h = n.app.committed_height()
            if h < self.last_heights[n.name]:
                raise SimFailure(f"seed {self.seed}: {n.name} went back from {self.last_heights[n.name]} to {h}")
            self.last_heights[n.name] = h
        top = max(n.app.committed_height() for n in honest)
        for height in range(1, top + 1):
            seen = {n.app.hashes[height] for n in honest if n.app.committed_height() >= height}
            if len(seen) > 1:
                raise SimFailure(f"seed {self.seed}: two different blocks committed at height {height}")
        for n in honest:
            for i, (payload, cert) in enumerate(n.app.blocks):
                if payload["prev"] != n.app.hashes[i] or payload["height"] != i + 1:
                    raise SimFailure(f"seed {self.seed}: {n.name} committed an unlinked block at {i + 1}")
                if cert.block != n.app.hashes[i + 1]:
                    raise SimFailure(f"seed {self.seed}: certificate does not match block {i + 1}")
            # each stored certificate holds as every verifier reads it (checked once: signatures cost)
            done = self.certs_checked.get(n.name, 0)
            if done > len(n.app.blocks):
                done = 0  # reinstalled on an empty disk
            for i in range(done, len(n.app.blocks)):
                cert = n.app.blocks[i][1]
                names = [v for v, _sig in cert.precommits]
                if names != sorted(set(names)):  # the audit and the label verifiers refuse any other order
                    raise SimFailure(f"seed {self.seed}: {n.name} stored block {i + 1}'s precommits out of order")
                try:
                    verify_commit(cert, "sim", i + 1, n.app.hashes[i + 1], self.genesis.validators)
                except LedgerError as exc:
                    raise SimFailure(f"seed {self.seed}: {n.name} stored a certificate for block {i + 1} that "
                                     f"does not verify: {exc.message}") from None
            self.certs_checked[n.name] = len(n.app.blocks)


def scenario(seed: int) -> Faults:
    """The faults of one seed: every seed gets some; the mix varies with the seed."""
    rng = random.Random(seed * 7919 + 1)
    names = ["v0", "v1", "v2", "v3"]
    f = Faults(drop=rng.choice([0.0, 0.05, 0.15, 0.3]), duplicate=rng.choice([0.0, 0.1, 0.3]),
               max_delay_ms=rng.choice([5, 50, 300]))
    kind = seed % 4
    if kind == 0:
        f.byzantine = rng.choice(names)
    elif kind == 1:
        rng.shuffle(names)
        split = rng.choice([1, 2])
        start = rng.randrange(0, 3_000)
        f.partition = (start, start + rng.randrange(1_000, 8_000), [set(names[:split]), set(names[split:])])
    elif kind == 2:
        victim = rng.choice(names)
        at = rng.randrange(0, 3_000)
        f.crashes = [(victim, at, at + rng.randrange(100, 5_000))]
        f.lose_guard = rng.random() < 0.5
        f.lose_chain = f.lose_guard and rng.random() < 0.5
        f.stays_down = not f.lose_guard and rng.random() < 0.5
        f.power_loss = not f.lose_guard and rng.random() < 0.5
    else:
        f.byzantine = rng.choice(names)
        at = rng.randrange(0, 3_000)
        f.crashes = [(rng.choice([n for n in names if n != f.byzantine]), at, at + rng.randrange(100, 3_000))]
        f.power_loss = rng.random() < 0.5
    return f


LIVENESS_BOUND_MS = 60_000
"""After the last fault ends, every honest node commits the target height within this."""


def run_seed(seed: int, heights: int = 6) -> Sim:
    faults = scenario(seed)
    sim = Sim(seed, heights=heights, faults=faults)
    last_fault = max([faults.partition[1] if faults.partition else 0]
                     + [a if faults.stays_down else b for _n, a, b in faults.crashes])
    sim.run(max_ms=last_fault + LIVENESS_BOUND_MS)
    if not sim.done():
        heights_now = {n.name: n.app.committed_height() for n in sim.honest()}
        raise SimFailure(f"seed {seed}: no progress to height {heights} within the bound; heights {heights_now}; "
                         f"faults {faults}")
    return sim
