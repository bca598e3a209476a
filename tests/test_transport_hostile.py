"""A hostile peer against a real node process's peer port (127.0.0.1, real sockets).

The node ``league`` (voting power 100) shares its genesis with ``mallory`` (power 1,
whose key this test holds) and accepts the observer ``obs`` (key held here too), so the
test can complete the handshake and then misbehave; ``league`` commits on its own.
After each attack the node must answer ``GET /v1/status``, still commit a submitted
event, count what it dropped, and give back the file descriptors it used.  The node runs
with a short frame deadline (``STALL_S``, through the environment) so that a peer stalling
mid-frame is cut within the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import requests

from api.client import Client
from helpers import OFFICE, World, free_ports, wait_until
from lambtrace.config import NodeConfig, genesis_to_json
from ledger import codec
from ledger.blocks.certificate import vote_bytes
from ledger.consensus.replica import MAX_SYNC_BATCH, SYNC_IN_FLIGHT_MS
from ledger.genesis import Genesis, Params, Validator
from node.transport import FRAME_COMPLETE_TIMEOUT_ENV, TAG_BYTES, hello_message, initiator_handshake
from signer import SoftwareSigner, generate, public_key_record, save_key_file
from test_rejections_http import base
from test_transport import Node, SealingWriter, close, closed_by_peer, raw_handshake, start, until

pytestmark = pytest.mark.cluster

STALL_S = 2.0
"""The node's ``frame_complete_timeout_s``: short for the test, long enough for the 12 MiB
frames the other attacks send on a busy machine."""


def frame(msg: dict[str, Any]) -> bytes:
    body = codec.encode(msg)
    return struct.pack(">I", len(body)) + body


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


class HostileNet:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.w = w = World(now=int(time.time() * 1000))
        self.league = generate("ed25519")
        self.keys: dict[str, SoftwareSigner] = {"mallory": generate("ed25519"), "obs": generate("ed25519")}
        g = Genesis(
            chain=w.chain, time=w.now - 60_000,
            validators=(Validator("league", "152500", "ed25519", self.league.public_key, 100),
                        Validator("mallory", "152500", "ed25519", self.keys["mallory"].public_key, 1)),
            trace_office={"id": OFFICE, "banner": "152500", "keys": [public_key_record(w.keys[OFFICE])]},
            params=Params(tag_quotas={"152523": 100_000, "152524": 1000}, timeout_propose_ms=600,
                          timeout_prevote_ms=300, timeout_precommit_ms=300, timeout_delta_ms=200),
        )
        w.genesis = self.genesis = Genesis.from_dict(g.to_dict())
        (tmp / "genesis.json").write_text(genesis_to_json(w.genesis))
        self.api, self.p2p = free_ports(2)
        save_key_file(self.league, tmp / "league.key", passphrase=None, insecure_plain=True)
        cfg = NodeConfig(name="league", genesis=tmp / "genesis.json", data=tmp / "league",
                         listen=f"127.0.0.1:{self.api}", key=tmp / "league.key", p2p_listen=f"127.0.0.1:{self.p2p}",
                         verify_processes=0,
                         observers=[{"name": "obs", "alg": "ed25519", "pub": self.keys["obs"].public_key.hex()}])
        cfg.save(tmp / "league.json")
        self.url = f"http://127.0.0.1:{self.api}"
        with open(tmp / "league.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lambtrace", "node", "--config", str(tmp / "league.json")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, FRAME_COMPLETE_TIMEOUT_ENV: str(STALL_S)})
        self.serial = 1000
        try:
            assert wait_until(self.healthy, 30), self.log()
            setup = [*base(w), w.issue("coop", "315252300001000", 20_000)]
            res = Client(self.url).submit(setup, wait=True, timeout_ms=30_000)
            assert all(r.get("state") == "committed" for r in res), res
        except BaseException:
            self.close()
            raise

    def log(self) -> str:
        return (self.tmp / "league.log").read_text()[-3000:]

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def status(self) -> dict[str, Any]:
        return requests.get(self.url + "/v1/status", timeout=5).json()

    def transport(self) -> dict[str, int]:
        return dict(self.status()["transport"])

    def dropped(self) -> dict[str, int]:
        return dict(self.status()["replica"]["dropped"])

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def rss_mb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
        raise AssertionError("no VmRSS")

    def commits(self) -> bool:
        ev = self.w.tag("agent", f"31525230{self.serial:07d}")
        self.serial += 1
        res = Client(self.url, timeout=30).submit([ev], wait=True, timeout_ms=10_000)
        return res[0].get("state") == "committed"

    def assert_healthy(self, fds: int, threads: int) -> None:
        """Alive, answering, committing, and back to its file descriptors and threads."""
        assert self.proc.poll() is None, self.log()
        assert self.status()["height"] >= 1
        assert self.commits(), self.log()
        assert wait_until(lambda: self.fds() <= fds and self.threads() <= threads, 10), \
            (self.fds(), fds, self.threads(), threads)

    async def handshake(self, name: str = "mallory", *, rcvbuf: int | None = None
                        ) -> tuple[asyncio.StreamReader, SealingWriter]:
        """A connection that has passed the handshake as ``name``, with a writer that seals
        frames as a peer must; ``rcvbuf`` sets the socket's receive buffer first (a small
        one makes a peer that stops reading stall the node's sends sooner).  What the node
        sends is read raw (sealed), as these tests only look for its closing the link."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.p2p))
        reader, writer = await asyncio.open_connection(sock=sock)
        res = await initiator_handshake(reader, writer, name=name, signer=self.keys[name],
                                        chain=self.genesis.chain, genesis_hash=self.genesis.hash,
                                        expected_peer="league", peer_key=("ed25519", self.league.public_key))
        return reader, SealingWriter(writer, res.channel)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileNet]:
    n = HostileNet(tmp_path_factory.mktemp("hostile"))
    yield n
    n.close()


async def each_closed(inputs: list[bytes], connect: Any, *, raw: bool = False) -> list[bool]:
    """For each input, a new connection (``await connect()``) that sends it (``raw``: as it
    is, past a :class:`SealingWriter`): whether the node then closed it within the time
    :func:`closed_by_peer` allows."""
    out = []
    for data in inputs:
        reader, writer = await connect()
        (writer.write_raw if raw else writer.write)(data)
        await writer.drain()
        out.append(await closed_by_peer(reader, 3.0))
        writer.close()
    return out


def delta(after: dict[str, int], before: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


def test_garbage_before_the_handshake_is_refused_and_counted(net: HostileNet) -> None:
    fds, threads = net.fds(), net.threads()
    chain, genesis = net.genesis.chain, net.genesis.hash

    def hello(name: str, **kw: Any) -> bytes:
        return frame({**hello_message(chain=chain, genesis_hash=genesis, name=name, nonce=os.urandom(32),
                                      eph=os.urandom(32)), **kw})

    inputs = [
        os.urandom(4096),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\xff\xff\xff\xff",
        b"\x00\x00\x00\x00",
        raw_frame(codec.encode([1, 2])),
        hello("stranger"),
        hello("league"),
        hello("mallory", chain="another-chain"),
        hello("mallory", genesis=b"\x00" * 32),
        hello("mallory") + frame({"type": "auth", "sig": b"\x00" * 64}),
    ]

    before = net.transport()
    assert all(asyncio.run(each_closed(inputs, lambda: asyncio.open_connection("127.0.0.1", net.p2p))))
    after = net.transport()
    assert delta(after, before, "handshake_failed") == len(inputs)
    assert delta(after, before, "handshakes_ok") == 0
    net.assert_healthy(fds, threads)


def test_bad_frames_after_the_handshake_are_dropped_counted_and_cut(net: HostileNet) -> None:
    fds, threads = net.fds(), net.threads()
    oversized = [struct.pack(">I", 16 * 1024 * 1024 + TAG_BYTES + 1)]
    unsealed = [frame({"t": "status", "chain": net.genesis.chain, "height": 1}), raw_frame(os.urandom(60))]
    malformed = [
        b"\x00\x00\x00\x00",  # a zero length prefix: an empty body is not a map
        raw_frame(b"\x81\xa1t\xd9\x04vote"),  # str8 where fixstr is canonical
        raw_frame(msgpack.packb({"z": 1, "a": 2})),  # keys out of order
        raw_frame(msgpack.packb({"t": 1.5})),  # a float
        raw_frame(b"\x91" * 100_000 + b"\xc0"),  # nested far too deep
        raw_frame(b"\x81\xa1t\xd4\x01\x00"),  # an ext type
        raw_frame(codec.encode({"t": "x"}) + b"\x00"),  # trailing byte
        raw_frame(b"\xdf\xff\xff\xff\xff"),  # a map claiming 2**32-1 entries
        raw_frame(codec.encode([1])),  # not a map
    ]

    before = net.transport()
    assert all(asyncio.run(each_closed(oversized + unsealed, net.handshake, raw=True)))
    assert all(asyncio.run(each_closed(malformed, net.handshake)))  # sealed as the peer would
    after = net.transport()
    assert delta(after, before, "dropped_oversized") == len(oversized)
    assert delta(after, before, "dropped_unauthenticated") == len(unsealed)
    assert delta(after, before, "dropped_malformed") == len(malformed)
    net.assert_healthy(fds, threads)


def test_idle_connections_cannot_lock_peers_out(net: HostileNet) -> None:
    """More idle unauthenticated connections than handshake slots: a peer still gets in.

    Regression: at ``max_pending_handshakes`` (64) open handshakes every further
    connection was refused, so anyone able to reach the port could keep every validator
    and observer out by holding 64 idle sockets (reopened every 5 s)."""
    fds, threads = net.fds(), net.threads()

    async def main() -> None:
        idle = [await asyncio.open_connection("127.0.0.1", net.p2p) for _ in range(100)]
        try:
            await asyncio.sleep(0.3)
            _reader, writer = await asyncio.wait_for(net.handshake("mallory"), 5)  # refused before the fix
            writer.close()
        finally:
            for _r, w in idle:
                w.transport.abort()

    before = net.transport()
    asyncio.run(main())
    # the node counts a handshake just after sending its auth: let it catch up
    assert wait_until(lambda: delta(net.transport(), before, "handshakes_ok") == 1, 5), net.transport()
    assert delta(net.transport(), before, "handshake_failed") >= 100 - 64
    net.assert_healthy(fds, threads)


def test_votes_with_huge_signatures_are_counted_and_not_kept(net: HostileNet) -> None:
    """Regression: the replica remembered every bad signature (up to 10_000 of them, until
    the next commit) whatever its size, so a peer could pin 10_000 frames of memory."""
    fds, threads = net.fds(), net.threads()
    chain = net.genesis.chain
    height = net.status()["height"] + 1
    count, size = 24, 12 * 1024 * 1024

    async def main() -> None:
        reader, writer = await net.handshake("obs")
        for i in range(count):
            vote = {"t": "vote", "type": "prevote", "chain": chain, "height": height, "round": 0, "value": None,
                    "from": "league", "sig": bytes([i]) * size}
            writer.write(frame(vote))
            await writer.drain()
        # the same badly signed vote, well sized, again and again: each one counted
        sig = net.keys["obs"].sign(vote_bytes("prevote", chain, height, 0, None))
        for _ in range(5):
            writer.write(frame({"t": "vote", "type": "prevote", "chain": chain, "height": height, "round": 0,
                                "value": None, "from": "league", "sig": sig}))
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    rss = net.rss_mb()
    before = net.dropped()
    asyncio.run(main())
    assert wait_until(lambda: delta(net.dropped(), before, "bad_signature") == count + 5, 15), net.dropped()
    assert net.status()["height"] == height - 1  # nothing committed: nothing cleared the replica's caches
    grown = net.rss_mb() - rss
    assert grown < count * size / 2**20 / 2, f"RSS grew {grown} MB"  # kept, it was ~290 MB
    net.assert_healthy(fds, threads)


def test_a_peer_that_stalls_mid_frame_is_cut_after_the_deadline(net: HostileNet) -> None:
    """Regression: a peer that sent part of a frame (a length prefix and half its body, or
    half a prefix) and went silent kept its link open, and the node's buffer, for ever.
    Now the rest of a frame is due ``STALL_S`` after its first byte; an idle link between
    frames has no deadline and stays up."""
    fds, threads = net.fds(), net.threads()
    chain = net.genesis.chain
    whole = frame({"t": "events", "chain": chain, "events": [b"x" * 1000]})

    async def main() -> tuple[list[bool], list[float], bool]:
        idle_reader, idle_writer = await net.handshake("obs")
        idle_writer.write(frame({"t": "status", "chain": chain, "height": net.status()["height"]}))
        await idle_writer.drain()  # a complete frame, then nothing
        cut, took = [], []
        for half in (True, False):
            reader, writer = await net.handshake("mallory")
            began = time.monotonic()
            sealed = writer.seal(whole)
            writer.write_raw(sealed[: len(sealed) // 2] if half else sealed[:2])
            await writer.drain()
            cut.append(await closed_by_peer(reader, STALL_S + 5))
            took.append(time.monotonic() - began)
            writer.close()
        # idle for two deadlines by now (data the node sends meanwhile is skipped)
        idle_kept = not await closed_by_peer(idle_reader, 0.5)
        idle_writer.close()
        return cut, took, idle_kept

    before = net.transport()
    cut, took, idle_kept = asyncio.run(main())
    assert cut == [True, True], (cut, took)
    assert all(STALL_S - 0.5 < t < STALL_S + 5 for t in took), took  # cut by the deadline, not before
    assert idle_kept, "an idle link between frames was closed"
    assert wait_until(lambda: delta(net.transport(), before, "dropped_stalled") == 2, 5), net.transport()
    net.assert_healthy(fds, threads)


def test_the_frame_deadline_spares_slow_but_timely_frames_and_idle_links() -> None:
    """In process, through the ``frame_complete_timeout_s`` keyword: a frame trickled in
    pieces that ends in time is delivered; one that does not is cut and counted; a link
    idle between frames for several deadlines stays up."""

    async def main() -> None:
        a = Node("a", frame_complete_timeout_s=0.4)
        await start(a)
        try:
            idle_reader, idle_writer, idle = await raw_handshake(a.port, "obs")
            idle_writer.write(idle.channel.seal(encode(0)))
            await until(lambda: len(a.got("obs")) == 1, "the idle link's frame")

            reader, writer, res = await raw_handshake(a.port, "c")
            slow = res.channel.seal(encode(1))
            for piece in (slow[:1], slow[1:3], slow[3:10], slow[10:]):  # 0.15 s in all
                await asyncio.sleep(0.05)
                writer.write(piece)
            await until(lambda: msg(1) in a.got("c"), "the slow frame")
            writer.write(res.channel.seal(encode(2))[:-1])  # all but its last byte
            assert await closed_by_peer(reader, 2.0)
            assert a.t.stats["dropped_stalled"] == 1
            assert a.got("c") == [msg(1)]

            await asyncio.sleep(1.2)  # three deadlines
            assert "obs" in a.t.connected()
            assert not await closed_by_peer(idle_reader, 0.1)
            idle_writer.write(idle.channel.seal(encode(3)))
            await until(lambda: len(a.got("obs")) == 2, "a frame after the idle time")
            assert a.t.stats["dropped_stalled"] == 1
        finally:
            await close(a)

    def msg(n: int) -> dict[str, Any]:
        return {"n": n, "pad": b"p" * 100}

    def encode(n: int) -> bytes:
        return frame(msg(n))

    asyncio.run(main())


def test_many_connections_and_fast_reconnects_from_one_key(net: HostileNet) -> None:
    fds, threads = net.fds(), net.threads()

    async def main() -> int:
        held = [await net.handshake("mallory") for _ in range(150)]
        during = net.fds()
        for _r, w in held:
            w.close()
        for _ in range(150):
            _r, w = await net.handshake("obs")
            w.transport.abort()
        return during

    before = net.transport()
    during = asyncio.run(main())
    assert during < fds + 10  # a newer connection from the same key replaces the older
    assert wait_until(lambda: delta(net.transport(), before, "handshakes_ok") == 300, 5), net.transport()
    after = net.transport()
    assert delta(after, before, "duplicate_closed") >= 149
    net.assert_healthy(fds, threads)


def test_junk_consensus_messages_are_dropped_and_counted(net: HostileNet) -> None:
    fds, threads = net.fds(), net.threads()
    chain = net.genesis.chain
    height = net.status()["height"] + 1
    odd: list[Any] = [None, -1, 2**63, -(2**63), "x", b"x", [], {}, [1] * 500, True]
    msgs: list[dict[str, Any]] = [{"t": "weird"}, {"t": 5}, {"x": 1}]
    for field in ("height", "round", "chain", "from", "sig", "value", "type", "valid_round", "block"):
        for value in odd:
            msgs.append({"t": "vote", "chain": chain, "height": height, "round": 0, "type": "prevote",
                         "value": None, "from": "league", "sig": os.urandom(64), field: value})
            msgs.append({"t": "proposal", "chain": chain, "height": height, "round": 0, "value": os.urandom(32),
                         "valid_round": -1, "block": {"header": {}, "events": [b"junk"] * 50}, "from": "league",
                         "sig": os.urandom(64), field: value})
    for value in odd:
        msgs.append({"t": "status", "chain": chain, "height": value})
        msgs.append({"t": "sync_req", "chain": chain, "height": value})
        msgs.append({"t": "commit", "chain": chain, "height": height, "block": value, "cert": value})
        msgs.append({"t": "events", "chain": chain, "events": value})

    async def main() -> None:
        reader, writer = await net.handshake("obs")
        for m in msgs:
            writer.write(frame(m))
        await writer.drain()
        await asyncio.sleep(0.5)
        assert not await closed_by_peer(reader, 0.5)  # well-formed frames do not cut the link
        writer.close()

    before_t, before_d = net.transport(), net.dropped()
    asyncio.run(main())
    after_t = net.transport()
    assert delta(after_t, before_t, "frames_in") == len(msgs)
    assert wait_until(lambda: sum(net.dropped().values()) - sum(before_d.values()) >= 100, 10), net.dropped()
    # status and sync_req with a height that is not a height (9 of the 10 odd values each)
    assert delta(net.dropped(), before_d, "malformed") >= 18, net.dropped()
    net.assert_healthy(fds, threads)


def test_a_replaced_connection_that_stops_reading_is_closed_in_time(net: HostileNet) -> None:
    """Regression: a connection replaced by a newer one from the same key was closed
    "gracefully" (after its unsent frames), which asyncio waits for without a limit: a
    peer that stops reading (and asks for blocks so the node has plenty to send), then
    reconnects, left one open descriptor and its buffers behind per connection, for ever."""
    chain = net.genesis.chain
    stuck = 5
    # a chain worth several MB, so one copy of it fills the socket buffers of a peer that
    # does not read (block sync sends a peer each block once per SYNC_IN_FLIGHT_MS)
    events = [net.w.tag("agent", f"31525230{net.serial + i:07d}") for i in range(8000)]
    net.serial += len(events)
    for i in range(0, len(events), 2000):
        res = Client(net.url, timeout=60).submit(events[i:i + 2000], wait=True, timeout_ms=30_000)
        assert all(r.get("state") == "committed" for r in res), res[:3]
    top = net.status()["height"]
    fds, threads = net.fds(), net.threads()

    async def main() -> tuple[int, int]:
        held = []
        try:
            for _ in range(stuck):
                reader, writer = await net.handshake("obs", rcvbuf=4096)
                reader._transport.pause_reading()  # type: ignore[attr-defined]
                held.append(writer)
                for _copy in range(2):
                    writer.write(b"".join(frame({"t": "sync_req", "chain": chain, "height": h})
                                         for h in range(1, top + 1, MAX_SYNC_BATCH)))
                    await writer.drain()
                    await asyncio.sleep(SYNC_IN_FLIGHT_MS / 1000 + 0.05)
            during = net.fds()
            # the replaced connections are reset within the close timeout (5 s), not when we let go
            assert await asyncio.to_thread(wait_until, lambda: net.fds() <= fds + 1, 10)
            return during, net.fds()
        finally:
            for w in held:
                w.transport.abort()

    before = net.transport()
    during, after_timeout = asyncio.run(main())
    assert during >= fds + stuck - 1, (during, fds)  # they really were stuck (the test did its job)
    assert after_timeout <= fds + 1
    assert delta(net.transport(), before, "duplicate_closed") == stuck - 1
    net.assert_healthy(fds, threads)


def test_a_flood_of_sync_requests_gets_each_block_once_per_window(net: HostileNet) -> None:
    """Regression: each request for blocks was answered in full, so an observer that sent
    3 MB of requests drew 2.4 GB of replies (more than the node could send)."""
    chain = net.genesis.chain
    top = net.status()["height"]
    one_copy = 0  # bytes of the first answer: every block the chain holds (up to 16)

    async def main() -> tuple[int, float]:
        nonlocal one_copy
        reader, writer = await net.handshake("obs")
        received = 0
        done = asyncio.Event()

        async def read() -> None:
            nonlocal received
            while not done.is_set():
                try:
                    received += len(await asyncio.wait_for(reader.read(1 << 20), 0.5))
                except TimeoutError:
                    continue

        task = asyncio.create_task(read())
        start = time.monotonic()
        request = frame({"t": "sync_req", "chain": chain, "height": 1})
        writer.write(request)
        await asyncio.sleep(0.3)
        one_copy = received
        while time.monotonic() - start < 3:
            writer.write(request * 1000)
            await writer.drain()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        done.set()
        await task
        writer.close()
        return received, time.monotonic() - start

    before, drops = net.transport(), net.dropped()
    received, seconds = asyncio.run(main())
    asked = delta(net.transport(), before, "frames_in")
    assert asked > 50_000 and top >= 1 and one_copy > 0
    # at most one copy per SYNC_IN_FLIGHT_MS (and the gossip besides), not one per request
    copies = received / one_copy
    assert copies <= seconds * 1000 / SYNC_IN_FLIGHT_MS + 2, (copies, received, one_copy, asked)
    assert delta(net.dropped(), drops, "sync_in_flight") >= asked - copies - 10, net.dropped()


def test_relayed_junk_events_are_not_kept(net: HostileNet) -> None:
    """Regression: each refused relayed leaf was kept in a reference cycle (the refusal's
    traceback → the admitting frame → the list holding the refusal), which only the cyclic
    collector frees and the node runs it rarely: ~760 MB RSS kept per 800 MB of junk."""
    fds, threads = net.fds(), net.threads()
    chain = net.genesis.chain
    count, size = 60, 8 * 1024 * 1024

    async def main() -> None:
        _reader, writer = await net.handshake("obs")
        for i in range(count):
            writer.write(frame({"t": "events", "chain": chain, "events": [bytes([i]) * size]}))
            await writer.drain()
        await asyncio.sleep(1.0)
        writer.close()

    rss = net.rss_mb()
    before = net.transport()
    asyncio.run(main())
    assert delta(net.transport(), before, "frames_in") == count
    grown = net.rss_mb() - rss
    assert grown < count * size / 2**20 / 2, f"RSS grew {grown} MB"
    net.assert_healthy(fds, threads)


def test_metrics_expose_the_transport_and_replica_counters(net: HostileNet) -> None:
    """What /v1/status counts for the peer port is on /metrics too (after the attacks above,
    or at least one refused handshake if this test runs alone)."""

    async def refused() -> list[bool]:
        return await each_closed([b"GET / HTTP/1.1\r\n\r\n"], lambda: asyncio.open_connection("127.0.0.1", net.p2p))

    assert all(asyncio.run(refused()))
    status = net.status()
    text = requests.get(net.url + "/metrics", timeout=5).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    transport, replica = status["transport"], status["replica"]
    assert transport["handshake_failed"] >= 1
    for stat in ("handshake_failed", "handshakes_ok", "frames_in", "dropped_stalled", "dropped_unauthenticated"):
        # the counters only grow: /metrics was read after /v1/status
        assert samples[f'lambtrace_transport_total{{stat="{stat}"}}'] >= transport[stat]
    for reason, n in replica["dropped"].items():
        assert samples[f'lambtrace_consensus_dropped_total{{reason="{reason}"}}'] >= n
    assert samples["lambtrace_peers_connected"] == len(status["peers_connected"])
    assert status["dial_failures"] == {}  # this node dials nobody
    assert samples["lambtrace_consensus_late_rounds_total"] >= replica["late_rounds"]
