"""One byzantine validator against three honest node processes, over real TCP on 127.0.0.1.

Genesis names four validators of equal power; ``banner-152526`` (the byzantine one, last
in genesis order, so it proposes when ``(height + round) % 4 == 3``) has no process: the
test holds its key, completes the peer handshake with each honest node as the initiator
(the honest nodes do not list it as a peer and so never dial it; they accept it because
genesis names it) and, while a steady load of signed events is submitted to the honest
nodes over HTTP, it:

- keeps its own copy of the chain by block sync (``sync_req``/``commit``: headers and
  leaves, the log root recomputed), so it can build blocks that extend the tip;
- at each height, on its two first turns to propose (round ``(3 - height) % 4`` and four
  rounds later; round 0 of every fourth height is the turn that matters, and there the
  plays take turns) plays one of: ``split`` (empty block A to two nodes, empty block B to
  the third, each prevoted where it was proposed, then a nil precommit and one for A to
  every node: A must be decided in that round, which needs a validator's second,
  conflicting vote counted when it is for a proposed value), ``three_way`` (A then B to one node, B then A to
  another, a block with a wrong ``prev`` to the third: no quorum, a round lost),
  ``junk`` (to every node: a proposal whose value is not its block's hash, one with a bad
  signature, and a block whose header is right but whose one event's signature is not) or
  ``swap`` (to every node, the block with other events than its header commits to, as a
  relaying peer could change it, then the block itself: it must be decided in that round);
- answers every honest proposal with conflicting prevotes and precommits: the value to
  one node, a hash nobody has to another, nil to the third, then a second, different one;
- at each height sends each node a vote with a bad signature and a vote five heights
  ahead, replays signed votes of past heights, and once sends a non-canonical frame
  (the node cuts the link; the test reconnects).

Then the honest nodes must still commit (every event accepted during the attack
committed on all three), agree on the block hash at every height, be alive, have logged
no traceback, count what they refused (``/v1/status``: ``replica.dropped`` by reason,
``transport`` counters; ``replica.equivocations`` for the conflicting votes and proposals
they recorded), and, as the byzantine peer sees them on the wire, never sign two different
votes or proposals for one step nor prevote a block it made invalid.  About 20 s.
"""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from api.client import Client
from helpers import OFFICE, World, free_ports, start, stop_processes, wait_until
from lambtrace.config import NodeConfig, genesis_to_json
from ledger import codec, merkle
from ledger.blocks.certificate import vote_bytes
from ledger.blocks.header import Header
from ledger.consensus.replica import proposal_bytes
from ledger.errors import TransportError
from ledger.genesis import Genesis, Params, Validator
from ledger.limits import DEFAULT_LIMITS
from node.transport import FRAME_DEPTH_ALLOWANCE, Channel, initiator_handshake, read_frame
from signer import SoftwareSigner, generate, public_key_record, save_key_file
from test_rejections_http import base, tampered
from test_transport import SealingWriter

pytestmark = pytest.mark.cluster

HONEST = ["league", "banner-152523", "banner-152524"]
BYZ = "banner-152526"
NAMES = [*HONEST, BYZ]
"""Genesis order: the proposer of (height, round) is ``NAMES[(height + round) % 4]``."""
ATTACK_S = 15.0
PLAYS = ("split", "three_way", "junk", "swap")
FRAME_LIMITS = replace(DEFAULT_LIMITS, max_depth=DEFAULT_LIMITS.max_depth + FRAME_DEPTH_ALLOWANCE)
NON_CANONICAL = b"\x82\xa1z\x01\xa1a\x02"  # {"z": 1, "a": 2}: keys out of order


def frame(msg: dict[str, Any]) -> bytes:
    body = codec.encode(msg)
    return struct.pack(">I", len(body)) + body


def now_ms() -> int:
    return int(time.time() * 1000)


class Net:
    """Genesis for four validators, and the three honest ones as ``lambtrace node`` processes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.w = w = World(now=now_ms())
        self.keys: dict[str, SoftwareSigner] = {n: generate("ed25519") for n in NAMES}
        g = Genesis(
            chain=w.chain, time=w.now - 60_000,
            validators=tuple(Validator(n, "152500", "ed25519", self.keys[n].public_key, 1) for n in NAMES),
            trace_office={"id": OFFICE, "banner": "152500", "keys": [public_key_record(w.keys[OFFICE])]},
            params=Params(tag_quotas={"152523": 100_000, "152524": 1000}, timeout_propose_ms=600,
                          timeout_prevote_ms=300, timeout_precommit_ms=300, timeout_delta_ms=200,
                          state_root="recalls/v1"),
        )
        w.genesis = self.genesis = Genesis.from_dict(g.to_dict())
        (tmp / "genesis.json").write_text(genesis_to_json(self.genesis))
        ports = free_ports(2 * len(HONEST))
        self.api = {n: ports[i] for i, n in enumerate(HONEST)}
        self.p2p = {n: ports[len(HONEST) + i] for i, n in enumerate(HONEST)}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for n in HONEST:
            save_key_file(self.keys[n], tmp / f"{n}.key", passphrase=None, insecure_plain=True)
            NodeConfig(name=n, genesis=tmp / "genesis.json", data=tmp / n, listen=f"127.0.0.1:{self.api[n]}",
                       key=tmp / f"{n}.key", p2p_listen=f"127.0.0.1:{self.p2p[n]}",
                       peers=[f"{m}@127.0.0.1:{self.p2p[m]}" for m in HONEST if m != n],
                       verify_processes=0).save(tmp / f"{n}.json")
        try:
            for n in HONEST:
                self.procs[n] = start(tmp / f"{n}.json", tmp / f"{n}.log")
            for n in HONEST:
                assert wait_until(lambda n=n: self.healthy(n), 30), self.log(n)[-3000:]
        except BaseException:
            self.close()
            raise

    def url(self, n: str) -> str:
        return f"http://127.0.0.1:{self.api[n]}"

    def log(self, n: str) -> str:
        return (self.tmp / f"{n}.log").read_text(errors="replace")

    def healthy(self, n: str) -> bool:
        try:
            return requests.get(self.url(n) + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def status(self, n: str) -> dict[str, Any]:
        st: dict[str, Any] = requests.get(self.url(n) + "/v1/status", timeout=5).json()
        return st

    def heights(self) -> dict[str, int]:
        return {n: int(self.status(n)["height"]) for n in HONEST}

    def block(self, n: str, h: int) -> dict[str, Any]:
        b: dict[str, Any] = requests.get(f"{self.url(n)}/v1/blocks/{h}", timeout=5).json()
        return b

    def close(self) -> None:
        stop_processes(list(self.procs.values()))


class Load:
    """Signed lamb.tag events, submitted one at a time to the honest nodes in turn."""

    def __init__(self, net: Net, first: int) -> None:
        self.net = net
        self.serial = first
        self.accepted: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            n = HONEST[i % len(HONEST)]
            i += 1
            ev = self.net.w.tag("agent", f"31525230{self.serial:07d}")
            self.serial += 1
            try:
                res = Client(self.net.url(n), timeout=10).submit([ev])
            except Exception as exc:  # counted and shown: an honest node should always answer
                self.errors.append(repr(exc))
                continue
            if res[0].get("status") == "accepted":
                self.accepted.append(str(res[0]["id"]))
            else:
                self.errors.append(repr(res[0]))
            time.sleep(0.06)


class Byzantine:
    """Validator ``BYZ``, driven by the test with its real key over real TCP."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.key = net.keys[BYZ]
        self.chain = net.genesis.chain
        self.writers: dict[str, SealingWriter] = {}
        self.readers: dict[str, asyncio.Task[None]] = {}
        self.tips = dict.fromkeys(HONEST, 0)
        """Each honest node's committed height, as its status messages say."""
        self.blocks: dict[int, dict[str, Any]] = {}
        self.headers: dict[int, Header] = {}
        self.synced = 0
        self.frontier = merkle.CompactRange()
        self.last_sync_req = 0.0
        self.attacked: set[int] = set()
        self.answered: set[tuple[int, int]] = set()
        self.plays = 0
        self.turns = 0
        self.round0_plays: list[tuple[int, str]] = []
        self.serial = 900_000  # tags for the forged event (never submitted)
        # what the honest validators signed, as seen on the wire (their own and relayed)
        self.honest_votes: defaultdict[tuple[str, str, int, int], set[bytes | None]] = defaultdict(set)
        self.honest_proposals: defaultdict[tuple[str, int, int], set[bytes]] = defaultdict(set)
        self.first_given: dict[tuple[str, int, int], bytes] = {}
        """(node, height, round) -> the first of our valid blocks that node was sent."""
        self.invalid: set[bytes] = set()
        """Values of our proposals whose block is invalid (or is not the value)."""
        self.invalid_given: set[tuple[str, int, int]] = set()
        """(node, height, round): that node was sent no proposal of ours but invalid ones."""
        self.archive: list[dict[str, Any]] = []
        """Signed votes of earlier heights, replayed later."""
        self.sent: Counter[tuple[str, str]] = Counter()
        """(node, what): messages the nodes must count as dropped."""
        self.cut_node: str | None = None
        self.direct_eq: Counter[str] = Counter()
        """Per node: rounds in which we sent it, back to back, a second vote or proposal that
        conflicts with the first and that it can record (a second prevote for a value it was
        proposed, a second valid proposal)."""

    # -- connections ------------------------------------------------------------------
    async def connect(self, n: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.net.p2p[n])
        res = await asyncio.wait_for(initiator_handshake(
            reader, writer, name=BYZ, signer=self.key, chain=self.chain, genesis_hash=self.net.genesis.hash,
            expected_peer=n, peer_key=("ed25519", self.net.keys[n].public_key)), 5)
        self.writers[n] = SealingWriter(writer, res.channel)
        self.readers[n] = asyncio.create_task(self.read(n, reader, res.channel))

    async def read(self, n: str, reader: asyncio.StreamReader, channel: Channel) -> None:
        try:
            while True:
                msg, _size = await read_frame(reader, max_bytes=DEFAULT_LIMITS.max_message_bytes,
                                              limits=FRAME_LIMITS, channel=channel)
                self.on_message(n, msg)
        except (TransportError, OSError):
            return  # the node closed the link

    def send(self, n: str, msg: dict[str, Any], counted: str = "") -> None:
        w = self.writers.get(n)
        if w is None or w.is_closing():
            return
        w.write(frame(msg))
        if counted:
            self.sent[(n, counted)] += 1

    async def close(self) -> None:
        for w in self.writers.values():
            w.close()
        for t in self.readers.values():
            t.cancel()
        await asyncio.gather(*self.readers.values(), return_exceptions=True)

    # -- what the honest nodes send ---------------------------------------------------
    def on_message(self, n: str, msg: dict[str, Any]) -> None:
        t, frm = msg.get("t"), msg.get("from")
        if t == "status" and frm == n:
            self.tips[n] = max(self.tips[n], msg["height"])
        elif t == "commit":
            self.on_block(msg["height"], msg["block"])
        elif t == "proposal" and frm in HONEST:
            h, r, value = msg["height"], msg["round"], msg["value"]
            self.honest_proposals[(frm, h, r)].add(value)
            if h == self.synced + 1 and (h, r) not in self.answered:
                self.answered.add((h, r))
                self.conflicting_votes(h, r, value)
        elif t == "vote" and frm in HONEST:
            self.honest_votes[(frm, msg["type"], msg["height"], msg["round"])].add(msg["value"])
            if len(self.archive) < 500:
                self.archive.append(msg)

    def on_block(self, k: int, block: dict[str, Any]) -> None:
        if k <= self.synced:
            return
        self.blocks[k] = block
        while self.synced + 1 in self.blocks:
            b = self.blocks[self.synced + 1]
            header = Header.from_dict(b["header"])
            prev = self.headers[self.synced].hash if self.synced else self.net.genesis.hash
            assert header.height == self.synced + 1 and header.prev == prev, (header, self.synced)
            for leaf in b["events"]:
                self.frontier.append(merkle.leaf_hash(leaf))
            # our copy of the log agrees with what every header says of it
            assert (self.frontier.size, self.frontier.root()) == (header.log_size, header.log_root), header
            self.synced += 1
            self.headers[self.synced] = header

    # -- messages we sign -------------------------------------------------------------
    def vote(self, vtype: str, h: int, r: int, value: bytes | None, *, bad_sig: bool = False) -> dict[str, Any]:
        sig = self.key.sign(vote_bytes(vtype, self.chain, h, r, value))
        if bad_sig:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        return {"t": "vote", "type": vtype, "chain": self.chain, "height": h, "round": r, "value": value,
                "from": BYZ, "sig": sig}

    def proposal(self, h: int, r: int, payload: dict[str, Any], *, value: bytes | None = None,
                 bad_sig: bool = False) -> dict[str, Any]:
        v = Header.from_dict(payload["header"]).hash if value is None else value
        sig = self.key.sign(proposal_bytes(self.chain, h, r, v, -1))
        if bad_sig:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        return {"t": "proposal", "chain": self.chain, "height": h, "round": r, "value": v, "valid_round": -1,
                "block": payload, "from": BYZ, "sig": sig}

    def block(self, h: int, t: int, *, prev: bytes | None = None, events: list[bytes] | None = None
              ) -> dict[str, Any]:
        """A block on our copy of the tip; empty unless ``events`` (then the log root covers them)."""
        tip = self.headers[h - 1]
        leaves = events or []
        cr = merkle.CompactRange(self.frontier.size, list(self.frontier.hashes))
        for leaf in leaves:
            cr.append(merkle.leaf_hash(leaf))
        header = Header(chain=self.chain, height=h, time=t, prev=tip.hash if prev is None else prev,
                        log_size=cr.size, log_root=cr.root(), validators=tip.validators, proposer=BYZ,
                        state_root=tip.state_root)
        return {"header": header.to_dict(), "events": leaves}

    @staticmethod
    def value(payload: dict[str, Any]) -> bytes:
        return Header.from_dict(payload["header"]).hash

    def order(self, h: int) -> list[str]:
        k = h % len(HONEST)
        return HONEST[k:] + HONEST[:k]

    # -- the attack -------------------------------------------------------------------
    def conflicting_votes(self, h: int, r: int, value: bytes) -> None:
        """Answer an honest proposal with a different vote to each node, then change it."""
        a, b, c = self.order(h + r)
        self.send(a, self.vote("prevote", h, r, value))
        self.send(a, self.vote("precommit", h, r, os.urandom(32)))  # a hash nobody has
        self.send(b, self.vote("prevote", h, r, os.urandom(32)))
        self.send(b, self.vote("prevote", h, r, value))  # a second prevote, for the real value
        self.direct_eq[b] += 1
        self.send(b, self.vote("precommit", h, r, None))
        self.send(c, self.vote("prevote", h, r, None))
        self.send(c, self.vote("precommit", h, r, value))
        self.send(c, self.vote("precommit", h, r, os.urandom(32)))  # a second, for nothing known

    def attack_height(self, h: int) -> None:
        self.attacked.add(h)
        t = max(self.headers[h - 1].time + 1, now_ms())
        # our turns at this height: the first, and the one four rounds later
        r0 = (NAMES.index(BYZ) - h) % len(NAMES)
        for k, r in enumerate((r0, r0 + len(NAMES))):
            if r == 0:  # the turn that decides the round: every play in turn
                play = PLAYS[len(self.round0_plays) % len(PLAYS)]
                self.round0_plays.append((h, play))
            else:
                play = PLAYS[self.plays % len(PLAYS)]
                self.plays += 1
            self.propose(play, h, r, t + 10 * k)
        for n in HONEST:
            # a vote with a bad signature (round 40: this validator has no other vote there)
            self.send(n, self.vote("prevote", h, 40, None, bad_sig=True), "bad_signature")
            # a vote five heights ahead
            self.send(n, self.vote("prevote", h + 5, 0, None), "far_future")
        # replays: votes of past heights, theirs and ours
        for old in self.archive[-6:]:
            if old["height"] < h - 1:
                for n in HONEST:
                    self.send(n, old)
        if h - 2 >= 1:
            for n in HONEST:
                self.send(n, self.vote("precommit", h - 2, 0, self.headers[h - 2].hash))

    def propose(self, play: str, h: int, r: int, t: int) -> None:
        a, b, c = self.order(self.turns)  # each node gets each role in turn
        self.turns += 1
        if play in ("split", "three_way"):
            pa, pb = self.block(h, t), self.block(h, t + 1)
            va, vb = self.value(pa), self.value(pb)
            if play == "split":
                # A to two nodes, B to the third, each prevoted where proposed; a nil precommit
                # to all, then one for A: only if a validator's second vote counts (for a value
                # proposed) do the two nodes that precommit A see a quorum in this round
                for n, p, v in ((a, pa, va), (b, pa, va), (c, pb, vb)):
                    self.send(n, self.proposal(h, r, p))
                    self.first_given[(n, h, r)] = v
                    self.send(n, self.vote("prevote", h, r, v))
                for n in (a, b, c):
                    self.send(n, self.vote("precommit", h, r, None))
                    self.send(n, self.vote("precommit", h, r, va))
            else:  # A then B to one node, B then A to another, an invalid block to the third
                bad = self.block(h, t + 2, prev=os.urandom(32))
                self.invalid.add(self.value(bad))
                for n, first, second in ((a, pa, pb), (b, pb, pa)):
                    self.send(n, self.proposal(h, r, first))
                    self.send(n, self.proposal(h, r, second))
                    self.first_given[(n, h, r)] = self.value(first)
                    self.direct_eq[n] += 1
                    self.send(n, self.vote("prevote", h, r, self.value(first)))
                    self.send(n, self.vote("precommit", h, r, self.value(second)))
                self.send(c, self.proposal(h, r, bad))
                self.invalid_given.add((c, h, r))
                self.send(c, self.vote("prevote", h, r, self.value(bad)))
                self.send(c, self.vote("precommit", h, r, os.urandom(32)))
        elif play == "swap":
            # to every node, first the block relayed with other events under our genuine
            # signature (as any peer relaying it could send it), then the block itself: the
            # changed copy is not our block (bad_block), so it neither gets a nil prevote
            # nor keeps the block out, and the round decides it
            pa = self.block(h, t)
            va = self.value(pa)
            other = tampered(self.net.w.tag("agent", f"31525230{self.serial:07d}"))
            self.serial += 1
            changed = {"header": pa["header"], "events": [codec.encode(other)]}
            for n in (a, b, c):
                self.send(n, self.proposal(h, r, changed), "bad_block")
                self.send(n, self.proposal(h, r, pa))
                self.first_given[(n, h, r)] = va
                self.send(n, self.vote("prevote", h, r, va))
            for n in (a, b, c):
                self.send(n, self.vote("precommit", h, r, va))
        else:  # junk, to every node, in a different order to each
            pa = self.block(h, t)
            wrong = os.urandom(32)  # the value is not the block's hash
            pb = self.block(h, t + 1)
            forged = tampered(self.net.w.tag("agent", f"31525230{self.serial:07d}"))
            self.serial += 1
            pc = self.block(h, t + 2, events=[codec.encode(forged)])  # right header, bad event signature
            self.invalid.update((wrong, self.value(pb), self.value(pc)))
            junk = [(self.proposal(h, r, pa, value=wrong), "bad_block"),
                    (self.proposal(h, r, pb, bad_sig=True), "bad_signature"),
                    (self.proposal(h, r, pc), "")]
            for k, n in enumerate((a, b, c)):
                for msg, counted in junk[k:] + junk[:k]:
                    self.send(n, msg, counted)
                self.send(n, self.vote("prevote", h, r, self.value(pc)))
                self.invalid_given.add((n, h, r))

    async def cut_and_reconnect(self, n: str) -> None:
        """A frame that is not canonical msgpack (sealed, so it is read): the node must cut
        us; then we are back."""
        self.cut_node = n
        self.writers[n].write(struct.pack(">I", len(NON_CANONICAL)) + NON_CANONICAL)
        await asyncio.wait_for(self.readers[n], 5)  # the node closed the link
        self.writers[n].close()
        await self.connect(n)

    async def run(self, seconds: float) -> None:
        try:
            await self._run(seconds)
        finally:
            await self.close()

    async def _run(self, seconds: float) -> None:
        for n in HONEST:
            await self.connect(n)
        began = time.monotonic()
        reconnect: asyncio.Task[None] | None = None
        while time.monotonic() - began < seconds:
            top = max(self.tips.values())
            if self.synced < top and time.monotonic() - self.last_sync_req > 0.15:
                self.last_sync_req = time.monotonic()
                ahead = max(HONEST, key=lambda m: self.tips[m])
                self.send(ahead, {"t": "sync_req", "chain": self.chain, "height": self.synced + 1})
            h = self.synced + 1
            # once every node committed h - 1 (its status says so), none takes our messages
            # for h as early ones (of which it keeps one vote of each type per validator)
            if self.synced >= 1 and min(self.tips.values()) == self.synced == top and h not in self.attacked:
                self.attack_height(h)
            if reconnect is None and time.monotonic() - began > seconds / 3:
                reconnect = asyncio.create_task(self.cut_and_reconnect(HONEST[1]))
            await asyncio.sleep(0.02)
        assert reconnect is not None
        await reconnect  # raises if the node did not cut the link or let us back in
        for n in HONEST:
            if self.readers[n].done():
                self.readers[n].result()  # a check of ours on what the node sent failed: raise it
                raise AssertionError(f"{n} closed the link of the byzantine validator")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    try:
        setup = [*base(n.w), n.w.issue("coop", "315252300001000", 20_000)]
        res = Client(n.url(HONEST[0])).submit(setup, wait=True, timeout_ms=30_000)
        assert all(r.get("state") == "committed" for r in res), res
        yield n
    finally:
        n.close()


def test_honest_nodes_survive_a_byzantine_validator(net: Net) -> None:
    before = {n: net.status(n) for n in HONEST}
    start_heights = {n: int(before[n]["height"]) for n in HONEST}
    load = Load(net, 1000)
    byz = Byzantine(net)
    load.thread.start()
    try:
        asyncio.run(byz.run(ATTACK_S))
    finally:
        load.stop.set()
        load.thread.join(timeout=20)

    # alive, and no traceback in any log
    for n in HONEST:
        assert net.procs[n].poll() is None, f"{n} exited:\n{net.log(n)[-3000:]}"
        assert "Traceback" not in net.log(n), f"{n} logged a traceback:\n{net.log(n)[-5000:]}"
        errors = [line for line in net.log(n).splitlines() if f" {n} ERROR " in line or f" {n} CRITICAL " in line]
        assert not errors, (n, errors[:5])

    assert not load.errors, load.errors[:5]
    assert len(load.accepted) > 50, len(load.accepted)

    # they kept committing: every event accepted during the attack is committed on all three
    last = load.accepted[-1]
    assert wait_until(lambda: all(Client(net.url(n)).event(last)["state"] == "committed" for n in HONEST), 20), \
        net.heights()
    sess = requests.Session()
    for n in HONEST:
        states = Counter(sess.get(f"{net.url(n)}/v1/events/{eid}", timeout=5).json().get("state")
                         for eid in load.accepted)
        assert states == Counter({"committed": len(load.accepted)}), (n, states)
    heights = net.heights()
    assert min(heights.values()) >= min(start_heights.values()) + 10, (start_heights, heights)

    # the same block at every height, on all three (and as the byzantine peer synced it)
    top = min(heights.values())
    blocks = {n: [net.block(n, h) for h in range(1, top + 1)] for n in HONEST}
    ref = [b["hash"] for b in blocks[HONEST[0]]]
    for n in HONEST[1:]:
        assert [b["hash"] for b in blocks[n]] == ref, f"{n} differs from {HONEST[0]}"
    for h in range(1, min(top, byz.synced) + 1):
        assert byz.headers[h].hash.hex() == ref[h - 1]
    # at round 0, "split" gets its block A decided in that round (with its second, conflicting
    # precommit counted); "three_way" and "junk" cost the round
    outcome = {h: (b["header"]["proposer"], b["certificate"]["round"])
               for h, b in enumerate(blocks[HONEST[0]], start=1)}
    played = [(h, play) for h, play in byz.round0_plays if h <= top]
    assert {p for _h, p in played} == set(PLAYS), played
    for h, play in played:
        if play in ("split", "swap"):
            assert outcome[h] == (BYZ, 0), (h, play, outcome[h])
        else:
            assert outcome[h][0] != BYZ and outcome[h][1] >= 1, (h, play, outcome[h])

    # what honest validators signed, as seen on the wire: one value per step, never an invalid block
    twice = {k: v for k, v in byz.honest_votes.items() if len(v) > 1}
    assert not twice, twice
    assert not {k: v for k, v in byz.honest_proposals.items() if len(v) > 1}
    voted_invalid = {k: v for k, v in byz.honest_votes.items() if v & byz.invalid}
    assert not voted_invalid, voted_invalid
    # a node given only invalid blocks of ours at round 0 prevoted nil there
    nil_checked = [k for k in byz.invalid_given if k[2] == 0 and (k[0], "prevote", k[1], 0) in byz.honest_votes]
    assert len(nil_checked) >= len([k for k in byz.invalid_given if k[2] == 0]) // 2, nil_checked
    assert all(byz.honest_votes[(n, "prevote", h, 0)] == {None} for n, h, _r in nil_checked), \
        {k: byz.honest_votes[(k[0], "prevote", k[1], 0)] for k in nil_checked}
    # ... and they did act on our equivocating proposals: a node prevoted the block it got first
    took = [k for k, v in byz.first_given.items() if byz.honest_votes.get((k[0], "prevote", k[1], k[2])) == {v}]
    assert took, "no honest node prevoted a block of the byzantine validator"

    # what it refused is counted, and its conflicting votes and proposals recorded
    after = {n: net.status(n) for n in HONEST}
    for n in HONEST:
        d0, d1 = before[n]["replica"]["dropped"], after[n]["replica"]["dropped"]
        for reason in ("bad_signature", "bad_block", "far_future"):
            sent = byz.sent[(n, reason)]
            got = d1.get(reason, 0) - d0.get(reason, 0)
            if reason == "far_future":  # honest peers may cause some too while one node catches up
                assert got >= sent > 0, (n, reason, got, sent, d1)
            else:  # honest peers send none; a few of ours may land after the node committed their height
                assert sent > 0 and sent // 2 <= got <= sent, (n, reason, got, sent, d1)
        seen = after[n]["replica"]["equivocations"] - before[n]["replica"]["equivocations"]
        assert byz.direct_eq[n] > 0 and seen >= byz.direct_eq[n] // 2, (n, seen, byz.direct_eq[n])
        metrics = requests.get(net.url(n) + "/metrics", timeout=5).text
        counted = [float(line.rpartition(" ")[2]) for line in metrics.splitlines()
                   if line.startswith("lambtrace_consensus_equivocations_total")]
        assert counted and counted[0] >= after[n]["replica"]["equivocations"] > 0, (n, counted)
        t0, t1 = before[n]["transport"], after[n]["transport"]
        assert t1["dropped_malformed"] - t0["dropped_malformed"] == (1 if n == byz.cut_node else 0), (n, t1)
        assert t1["handshakes_ok"] - t0["handshakes_ok"] >= (2 if n == byz.cut_node else 1), (n, t1)
        assert t1["handler_errors"] == t0["handler_errors"], (n, t1)
