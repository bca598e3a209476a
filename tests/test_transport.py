"""Peer transport over real TCP on 127.0.0.1: handshake, frames, reconnects, fault proxy.

Every test runs real sockets on ephemeral ports; raw clients written here speak the
handshake with the module's own helpers and then misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import random
import struct
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from ledger import codec
from ledger.errors import DecodeError, TransportError
from ledger.limits import Limits
from node.faultproxy import FaultProxy
from node.transport import (
    EPH_KEY_BYTES,
    NONCE_BYTES,
    TAG_BYTES,
    Channel,
    Transport,
    TransportThread,
    auth_message,
    backoff_delay,
    encode_frame,
    handshake_signing_bytes,
    hello_message,
    initiator_handshake,
    read_frame,
    responder_handshake,
    session_keys,
    sign_handshake,
    verify_handshake,
)
from signer import SoftwareSigner, generate

CHAIN = "test-chain"
GENESIS = hashlib.sha256(b"test genesis").digest()
FAST: dict[str, Any] = {"handshake_timeout_s": 1.0, "backoff_initial_s": 0.02, "backoff_max_s": 0.25}

KEYS: dict[str, SoftwareSigner] = {
    "a": generate("ed25519"),
    "b": generate("ecdsa-p256"),
    "c": generate("ed25519"),
    "d": generate("ed25519"),
    "obs": generate("ed25519"),  # an observer: allowed to connect, dialled by nobody
}
KNOWN = {n: (k.alg, k.public_key) for n, k in KEYS.items()}
MALLORY = generate("ed25519")


class Node:
    """A transport plus the messages it received."""

    def __init__(self, name: str, *, port: int = 0, limits: Limits | None = None, asynchronous: bool = False,
                 **kw: Any) -> None:
        self.name = name
        self.inbox: list[tuple[str, dict[str, Any]]] = []
        options = {**FAST, **kw}
        if limits is not None:
            options["limits"] = limits
        self.t = Transport(name, KEYS[name], {}, KNOWN, chain=CHAIN, genesis_hash=GENESIS,
                           listen=("127.0.0.1", port),
                           on_message=self._on_async if asynchronous else self._on, **options)

    def _on(self, peer: str, msg: dict[str, Any]) -> None:
        if msg.get("boom"):
            raise ValueError("handler bug")
        self.inbox.append((peer, msg))

    async def _on_async(self, peer: str, msg: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        self._on(peer, msg)

    @property
    def port(self) -> int:
        addr = self.t.listen_address
        assert addr is not None
        return addr[1]

    def got(self, peer: str | None = None) -> list[dict[str, Any]]:
        return [m for p, m in self.inbox if peer is None or p == peer]


async def until(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


_RAW: list[asyncio.StreamWriter] = []


async def open_raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw client connection, closed by :func:`close` at the end of the test."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    _RAW.append(writer)
    return reader, writer


async def raw_handshake(port: int, name: str = "obs", signer: SoftwareSigner | None = None, *,
                        chain: str = CHAIN, genesis: bytes = GENESIS, expect: str = "a") -> Any:
    """A raw client: dial, run the initiator handshake, hand back the open streams."""
    reader, writer = await open_raw(port)
    res = await initiator_handshake(reader, writer, name=name, signer=signer or KEYS[name], chain=chain,
                                    genesis_hash=genesis, expected_peer=expect, peer_key=KNOWN[expect])
    return reader, writer, res


class Sink:
    """Enough of a writer for a handshake played against canned input: keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    async def drain(self) -> None:
        return None


class SealingWriter:
    """The writing half of a connection past the handshake, as the node's peer writes:
    whole frames given to :meth:`write` (one or several back to back) are each sealed
    with the connection's :class:`~node.transport.Channel`; :meth:`write_raw` sends bytes
    as they are (part of a frame, a bare length prefix, or an attacker's bytes)."""

    def __init__(self, writer: asyncio.StreamWriter, channel: Channel) -> None:
        self.writer = writer
        self.channel = channel

    def seal(self, frames: bytes) -> bytes:
        out, pos = [], 0
        while pos < len(frames):
            (n,) = struct.unpack_from(">I", frames, pos)
            out.append(self.channel.seal(frames[pos:pos + 4 + n]))
            pos += 4 + n
        assert pos == len(frames), "write() takes whole frames"
        return b"".join(out)

    def write(self, frames: bytes) -> None:
        self.writer.write(self.seal(frames))

    def write_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()

    def is_closing(self) -> bool:
        return self.writer.is_closing()

    @property
    def transport(self) -> asyncio.WriteTransport:
        return self.writer.transport


async def closed_by_peer(reader: asyncio.StreamReader, timeout: float = 2.0) -> bool:
    """Whether the other side closes the stream within ``timeout`` (data before EOF is skipped)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data = await asyncio.wait_for(reader.read(65536), max(0.01, deadline - time.monotonic()))
            if not data:
                return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return False


async def start(*nodes: Node) -> None:
    for n in nodes:
        await n.t.start()


async def close(*nodes: Node) -> None:
    for n in nodes:
        await n.t.close()
    while _RAW:
        _RAW.pop().close()
    await asyncio.sleep(0)


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


# --- pure helpers ---------------------------------------------------------------------------


def test_handshake_signature_binds_names_nonces_ephemeral_keys_and_role() -> None:
    k = KEYS["a"]
    n1, n2 = b"\x01" * NONCE_BYTES, b"\x02" * NONCE_BYTES
    e1, e2 = b"\x03" * EPH_KEY_BYTES, b"\x04" * EPH_KEY_BYTES
    t: dict[str, Any] = {"chain": CHAIN, "genesis_hash": GENESIS, "initiator": "a", "initiator_nonce": n1,
                         "initiator_eph": e1, "responder": "b", "responder_nonce": n2, "responder_eph": e2}
    sig = sign_handshake(k, role="initiator", **t)
    assert verify_handshake(k.alg, k.public_key, sig, role="initiator", **t)
    assert not verify_handshake(k.alg, k.public_key, sig, role="responder", **t)  # no reflection
    assert not verify_handshake(k.alg, k.public_key, sig, role="initiator", **{**t, "responder_nonce": n1})
    assert not verify_handshake(k.alg, k.public_key, sig, role="initiator", **{**t, "responder": "c"})
    assert not verify_handshake(k.alg, k.public_key, sig, role="initiator", **{**t, "chain": "other"})
    assert not verify_handshake(k.alg, k.public_key, sig, role="initiator", **{**t, "genesis_hash": b"\0" * 32})
    # an on-path attacker's own ephemeral key in place of either side's
    assert not verify_handshake(k.alg, k.public_key, sig, role="initiator", **{**t, "initiator_eph": e2})
    assert not verify_handshake(k.alg, k.public_key, sig, role="initiator", **{**t, "responder_eph": e1})
    assert not verify_handshake(k.alg, k.public_key, sig, role="nobody", **t)
    assert handshake_signing_bytes(role="responder", **t).startswith(b"lambtrace/handshake/v2\x00")


def test_session_keys_differ_per_direction_and_per_transcript() -> None:
    t: dict[str, Any] = {"chain": CHAIN, "genesis_hash": GENESIS, "initiator": "a", "initiator_nonce": b"\x01" * 32,
                         "initiator_eph": b"\x03" * 32, "responder": "b", "responder_nonce": b"\x02" * 32,
                         "responder_eph": b"\x04" * 32}
    i2r, r2i = session_keys(b"s" * 32, t)
    assert len(i2r) == len(r2i) == 32 and i2r != r2i
    assert session_keys(b"s" * 32, t) == (i2r, r2i)  # both sides derive the same
    assert session_keys(b"t" * 32, t)[0] != i2r  # another shared secret
    assert session_keys(b"s" * 32, {**t, "responder_nonce": b"\x05" * 32})[0] != i2r  # another connection


def test_a_hello_of_another_version_or_with_a_weak_ephemeral_key_is_refused() -> None:
    """A version-1 node (no ``eph``) is told apart from a broken hello, and an ephemeral
    key of small order (whose shared secret would be all zero, and the frame keys public)
    is refused before anything is signed."""

    async def responder_sees(hello: dict[str, Any]) -> str:
        reader = asyncio.StreamReader()
        reader.feed_data(encode_frame(hello))
        reader.feed_eof()

        sink = Sink()
        with pytest.raises(TransportError) as e:
            await responder_handshake(reader, sink, name="a", signer=KEYS["a"],  # type: ignore[arg-type]
                                      chain=CHAIN, genesis_hash=GENESIS, known_keys=KNOWN)
        assert sink.sent == []  # refused before its own hello, let alone a signature
        return e.value.code

    good = hello_message(chain=CHAIN, genesis_hash=GENESIS, name="obs", nonce=b"\x01" * NONCE_BYTES,
                         eph=os.urandom(EPH_KEY_BYTES))
    v1 = {k: v for k, v in good.items() if k != "eph"} | {"v": 1}
    assert asyncio.run(responder_sees(v1)) == "wrong_version"
    assert asyncio.run(responder_sees({**good, "eph": b"\x00" * EPH_KEY_BYTES})) == "bad_hello"  # small order
    assert asyncio.run(responder_sees({**good, "eph": b"\x01" * 31})) == "bad_hello"
    assert asyncio.run(responder_sees({k: v for k, v in good.items() if k != "eph"})) == "bad_hello"


def test_a_responder_reflecting_the_initiators_nonce_or_ephemeral_key_is_refused() -> None:
    """An attacker who answers a dialling node with the node's own nonce or ephemeral key
    (to make both directions, or both sides' secrets, alike) is refused before the node
    signs anything: it sends its hello and nothing more."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    mine = X25519PrivateKey.from_private_bytes(b"\x07" * 32)
    mine_pub = mine.public_key().public_bytes_raw()
    nonce = b"\x05" * NONCE_BYTES

    async def initiator_sees(answer: dict[str, Any]) -> tuple[str, int]:
        reader = asyncio.StreamReader()
        reader.feed_data(encode_frame(answer))
        reader.feed_eof()
        sink = Sink()
        with pytest.raises(TransportError) as e:
            await initiator_handshake(reader, sink, name="a", signer=KEYS["a"],  # type: ignore[arg-type]
                                      chain=CHAIN, genesis_hash=GENESIS, expected_peer="b", peer_key=KNOWN["b"],
                                      nonce=nonce, eph=mine)
        return e.value.code, len(sink.sent)

    honest = hello_message(chain=CHAIN, genesis_hash=GENESIS, name="b", nonce=b"\x06" * NONCE_BYTES,
                           eph=os.urandom(EPH_KEY_BYTES))
    assert asyncio.run(initiator_sees({**honest, "nonce": nonce})) == ("reflected_nonce", 1)
    assert asyncio.run(initiator_sees({**honest, "eph": mine_pub})) == ("reflected_nonce", 1)
    # the honest answer gets as far as our signature, then the stream ends (no auth from b)
    assert asyncio.run(initiator_sees(honest)) == ("closed", 2)


def test_a_channel_opens_only_the_next_frame_sealed_for_it() -> None:
    i2r, r2i = session_keys(b"s" * 32, {"chain": CHAIN, "genesis_hash": GENESIS, "initiator": "a",
                                        "initiator_nonce": b"\x01" * 32, "initiator_eph": b"\x03" * 32,
                                        "responder": "b", "responder_nonce": b"\x02" * 32,
                                        "responder_eph": b"\x04" * 32})
    a, b = Channel(i2r, r2i), Channel(r2i, i2r)
    frames = [encode_frame({"n": n}) for n in range(3)]
    sealed = [a.seal(f) for f in frames]
    for f, w in zip(frames, sealed, strict=True):
        assert struct.unpack(">I", w[:4])[0] == len(w) - 4 == len(f) - 4 + TAG_BYTES
        assert f[4:] not in w  # not readable on the wire
    assert b.open(sealed[0][4:]) == frames[0][4:]

    def refused(ch: Channel, body: bytes) -> None:
        with pytest.raises(TransportError) as e:
            ch.open(body)
        assert e.value.code == "unauthenticated"

    refused(b, sealed[0][4:])  # replayed
    refused(b, sealed[2][4:])  # one skipped (dropped on the way)
    flipped = bytearray(sealed[1][4:])
    flipped[0] ^= 1
    refused(b, bytes(flipped))  # tampered with
    refused(b, a.seal(frames[1])[4:][:-1])  # cut short
    refused(a, sealed[0][4:])  # a's own frame reflected back to it
    assert b.open(sealed[1][4:]) == frames[1][4:]  # refused frames did not advance b's count
    assert a.open(b.seal(frames[2])[4:]) == frames[2][4:]  # nor a's



def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    for attempt, base in [(0, 0.1), (1, 0.2), (2, 0.4), (5, 3.2), (6, 5.0), (60, 5.0), (10_000, 5.0)]:
        d = backoff_delay(attempt, initial_s=0.1, max_s=5.0, rng=rng)
        assert 0.5 * base <= d < 1.5 * base


def test_frame_encoding_and_misuse() -> None:
    frame = encode_frame({"b": 1, "a": b"x"})
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert frame[4:] == codec.encode({"a": b"x", "b": 1})
    with pytest.raises(TransportError) as e:
        encode_frame({"p": b"x" * 100}, max_bytes=50)
    assert e.value.code == "message_too_large"
    with pytest.raises(DecodeError):
        encode_frame({"f": 1.5})
    node = Node("a", limits=Limits(max_message_bytes=64))
    with pytest.raises(RuntimeError):
        node.t.send("mallory", {"x": 1})
    with pytest.raises(RuntimeError):
        node.t.send("a", {"x": 1})
    with pytest.raises(TransportError):
        node.t.send("b", {"p": b"x" * 100})
    with pytest.raises(ValueError, match="signer"):
        Transport("a", KEYS["b"], {}, KNOWN, chain=CHAIN, genesis_hash=GENESIS, listen=None,
                  on_message=lambda p, m: None)
    with pytest.raises(ValueError, match="no known key"):
        Transport("a", KEYS["a"], {"mallory": ("127.0.0.1", 1)}, KNOWN, chain=CHAIN, genesis_hash=GENESIS,
                  listen=None, on_message=lambda p, m: None)
    with pytest.raises(ValueError, match="known key"):
        Transport("a", KEYS["a"], {}, {**KNOWN, "x": ("ed25519", b"\0" * 31)}, chain=CHAIN,
                  genesis_hash=GENESIS, listen=None, on_message=lambda p, m: None)


def test_full_queue_drops_oldest_and_delivers_the_rest() -> None:
    async def main() -> None:
        a, b = Node("a", max_queue_frames=3), Node("b")
        for i in range(5):
            a.t.send("b", {"i": i})  # b is not even configured yet: queued for it
        assert a.t.stats["dropped_queue_full"] == 2
        assert a.t.peer_status()["b"]["queued"] == 3
        await start(a, b)
        a.t.add_peer("b", "127.0.0.1", b.port)
        await until(lambda: len(b.got("a")) == 3, "the queued frames")
        assert [m["i"] for m in b.got("a")] == [2, 3, 4]
        await close(a, b)

    asyncio.run(main())


# --- a mesh ---------------------------------------------------------------------------------


def test_mesh_exchanges_both_ways_broadcasts_and_keeps_one_connection_per_pair() -> None:
    async def main() -> None:
        names = ["a", "b", "c", "d"]
        nodes = {n: Node(n, asynchronous=n == "d") for n in names}
        await start(*nodes.values())
        for x in names:  # everyone dials everyone: each pair races two connections
            for y in names:
                if x != y:
                    nodes[x].t.add_peer(y, "127.0.0.1", nodes[y].port)
        pairs = [(x, y) for x in names for y in names if x != y]
        await until(lambda: all(nodes[x].t.connected() == set(names) - {x} for x in names), "a full mesh")
        # Both sides settle on the connection dialled by the smaller name.
        await until(lambda: all(nodes[x].t.peer_status()[y]["initiator"] == min(x, y) for x, y in pairs),
                    "duplicate connections resolved")
        for x, y in pairs:
            for i in range(5):
                nodes[x].t.send(y, {"from": x, "i": i})
        await until(lambda: all(len(nodes[y].got(x)) == 5 for x, y in pairs), "every message")
        for x, y in pairs:
            assert nodes[y].got(x) == [{"from": x, "i": i} for i in range(5)]  # in order per sender
        nodes["a"].t.broadcast({"kind": "all", "bin": b"\x00\xff"})
        await until(lambda: all({"kind": "all", "bin": b"\x00\xff"} in nodes[y].got("a") for y in "bcd"),
                    "the broadcast")
        nodes["b"].t.send("c", {"boom": True})  # c's handler raises: counted, connection kept
        nodes["b"].t.send("c", {"after": 1})
        await until(lambda: {"after": 1} in nodes["c"].got("b"), "a frame after a handler error")
        assert nodes["c"].t.stats["handler_errors"] == 1
        assert "b" in nodes["c"].t.connected()
        for n in nodes.values():
            s = n.t.stats
            assert s["handshake_failed"] == s["dropped_malformed"] == s["dropped_oversized"] == 0
            assert s["frames_in"] >= 15 and s["bytes_in"] > 0 and s["frames_out"] >= 15 and s["bytes_out"] > 0
        await close(*nodes.values())
        assert all(not n.t.connected() for n in nodes.values())

    asyncio.run(main())


# --- refusals -------------------------------------------------------------------------------


def test_handshake_refusals_are_counted_and_the_node_keeps_serving() -> None:
    async def main() -> None:
        a, b, c = Node("a", handshake_timeout_s=0.5), Node("b"), Node("c")
        await start(a, b, c)
        b.t.add_peer("a", "127.0.0.1", a.port)
        await until(lambda: "b" in a.t.connected(), "b connected")
        failed = 0

        async def refused(**kw: Any) -> None:
            nonlocal failed
            with pytest.raises(TransportError):
                await raw_handshake(a.port, **kw)
            failed += 1
            await until(lambda: a.t.stats["handshake_failed"] == failed, f"refusal {failed} counted")

        await refused(name="mallory", signer=MALLORY)  # unknown name
        await refused(chain="other-chain")  # wrong chain
        await refused(genesis=hashlib.sha256(b"other").digest())  # wrong genesis
        await refused(name="b", signer=MALLORY)  # a known name, the wrong key: bad signature

        # A legitimate observer connects; its recorded signature is useless on a new connection.
        reader, writer, res = await raw_handshake(a.port, name="obs")
        await until(lambda: "obs" in a.t.connected(), "the observer")
        writer.close()
        await until(lambda: "obs" not in a.t.connected(), "the observer gone")
        reader, writer = await open_raw(a.port)
        writer.write(encode_frame(hello_message(chain=CHAIN, genesis_hash=GENESIS, name="obs",
                                                nonce=res.local_nonce, eph=os.urandom(EPH_KEY_BYTES))))
        their_hello, _ = await read_frame(reader, max_bytes=1024)
        assert their_hello["nonce"] != res.peer_nonce
        writer.write(encode_frame(auth_message(res.local_sig)))  # replayed
        assert await closed_by_peer(reader)
        failed += 1
        await until(lambda: a.t.stats["handshake_failed"] == failed, "the replay counted")

        # Silence until the handshake timeout.
        reader, writer = await open_raw(a.port)
        assert await closed_by_peer(reader, timeout=3.0)
        failed += 1
        await until(lambda: a.t.stats["handshake_failed"] == failed, "the timeout counted")

        # A huge first frame: refused before it is read.
        reader, writer = await open_raw(a.port)
        writer.write(struct.pack(">I", 0xFFFFFFFF))
        assert await closed_by_peer(reader)
        failed += 1
        await until(lambda: a.t.stats["handshake_failed"] == failed, "the oversized hello counted")

        # The dialler checks the responder too: c dials "b" at a's address and gets "a".
        c.t.add_peer("b", "127.0.0.1", a.port)
        await until(lambda: c.t.stats["handshake_failed"] >= 1, "c refusing an impostor")
        assert "b" not in c.t.connected() and "c" not in a.t.connected()

        b.t.send("a", {"still": "serving"})
        a.t.send("b", {"and": "back"})
        await until(lambda: {"still": "serving"} in a.got("b") and {"and": "back"} in b.got("a"), "b and a talk")
        assert a.t.stats["handshakes_ok"] >= 2
        await close(a, b, c)

    asyncio.run(main())


def test_a_failed_dial_says_why_until_the_link_is_up_and_warns_once_if_retrying_cannot_mend_it(
        caplog: pytest.LogCaptureFixture) -> None:
    """``dial_failures`` (in ``/v1/status``) names why each dialled peer is not linked: an
    address nobody listens on, a node there that refuses us (another genesis), or another
    node than the one dialled.  A failure no retry will mend is logged as a warning once,
    however often the dial is retried, by whichever side can tell (the refusing node names
    the known node it refused); an entry goes once the link is up."""
    from helpers import free_ports

    def warnings(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and text in r.getMessage()]

    async def main() -> None:
        (free,) = free_ports(1)
        a, d = Node("a"), Node("d")
        other = Transport("b", KEYS["b"], {}, KNOWN, chain=CHAIN, genesis_hash=hashlib.sha256(b"other").digest(),
                          listen=("127.0.0.1", 0), on_message=lambda p, m: None, **FAST)
        await start(a, d)
        await other.start()
        assert other.listen_address is not None
        a.t.add_peer("obs", "127.0.0.1", free)  # nobody listens there yet
        a.t.add_peer("b", "127.0.0.1", other.listen_address[1])  # b, on another genesis
        a.t.add_peer("c", "127.0.0.1", d.port)  # d answers where a expects c
        await until(lambda: {"b", "c", "obs"} <= set(a.t.dial_failures()), "three failures recorded")
        failures = a.t.dial_failures()
        assert failures["obs"]["code"] == "unreachable" and str(free) in failures["obs"]["message"]
        assert failures["b"]["code"] == "refused_by_peer"
        assert failures["c"]["code"] == "unexpected_peer"
        assert abs(failures["b"]["at"] - time.time() * 1000) < 60_000
        refused = a.t.stats["handshake_failed"]
        await until(lambda: a.t.stats["handshake_failed"] >= refused + 6, "b and c dialled again")
        assert len(warnings("refused a connection from a node calling itself a: it holds another genesis")) == 1
        assert len(warnings("cannot link to c")) == 1
        assert not warnings("cannot link to obs") and not warnings("cannot link to b")

        obs = Node("obs", port=free)  # the observer comes up where a dials it
        await start(obs)
        await until(lambda: "obs" in a.t.connected(), "a linked to obs")
        assert set(a.t.dial_failures()) == {"b", "c"}
        await close(a, d, obs)
        await other.close()

    with caplog.at_level("WARNING", logger="node.transport"):
        asyncio.run(main())


def test_bad_frames_are_dropped_counted_and_cut() -> None:
    limit = 4096
    bad_bodies = {
        "not msgpack": b"\xc1",
        "unsorted map": msgpack.packb({"b": 1, "a": 2}),
        "wide int": b"\x81\xa1a\xcd\x00\x01",
        "not a map": codec.encode([1, 2]),
        "trailing bytes": codec.encode({"a": 1}) + b"\x00",
        "float": msgpack.packb({"a": 1.5}),
        "too deep": codec.encode(_nested(20)),
    }

    async def main() -> None:
        a, b = Node("a", limits=Limits(max_message_bytes=limit)), Node("b")
        await start(a, b)
        b.t.add_peer("a", "127.0.0.1", a.port)
        await until(lambda: "b" in a.t.connected(), "b connected")

        # A frame exactly at the limit is fine.
        reader, writer, res = await raw_handshake(a.port)
        pad = limit - len(codec.encode({"p": b"x" * 1000})) + 1000
        assert len(codec.encode({"p": b"x" * pad})) == limit
        writer.write(res.channel.seal(encode_frame({"p": b"x" * pad})) + res.channel.seal(encode_frame({"n": 1})))
        await until(lambda: len(a.got("obs")) == 2, "frames at the limit")

        # One byte over: the prefix alone gets the connection cut, the body is never awaited.
        writer.write(struct.pack(">I", limit + TAG_BYTES + 1))
        assert await closed_by_peer(reader)
        await until(lambda: a.t.stats["dropped_oversized"] == 1, "the oversized frame counted")

        for i, body in enumerate(bad_bodies.values(), start=1):
            reader, writer, res = await raw_handshake(a.port)
            writer.write(res.channel.seal(struct.pack(">I", len(body)) + body))
            assert await closed_by_peer(reader), i

            def counted(i: int = i) -> bool:
                return a.t.stats["dropped_malformed"] == i

            await until(counted, f"bad frame {i} counted")

        assert "obs" not in a.t.connected()
        assert a.got("obs") == [{"p": b"x" * pad}, {"n": 1}]
        b.t.send("a", {"ok": 1})
        await until(lambda: {"ok": 1} in a.got("b"), "a serving b after the garbage")
        assert a.t.stats["handshake_failed"] == 0
        assert a.t.stats["dropped_unauthenticated"] == 0
        await close(a, b)

    asyncio.run(main())


def test_frames_the_peer_did_not_seal_are_dropped_counted_and_cut() -> None:
    """After the handshake only frames sealed by the authenticated peer, in order, are read:
    an on-path attacker who let a genuine handshake through can inject, replay, skip or
    alter nothing.  Each such frame ends the connection, is counted, and is never delivered."""

    async def main() -> None:
        a = Node("a")
        await start(a)
        _r, _w, other = await raw_handshake(a.port, "c")  # another connection's channel

        def tampered(ch: Channel) -> bytes:
            sealed = bytearray(ch.seal(encode_frame({"injected": 1})))
            sealed[-1] ^= 1
            return bytes(sealed)

        def replayed(ch: Channel) -> bytes:
            genuine = ch.seal(encode_frame({"genuine": 1}))
            return genuine + genuine  # the first is delivered, its copy is not

        def skipped(ch: Channel) -> bytes:
            ch.seal(encode_frame({"genuine": 2}))  # sealed, never sent
            return ch.seal(encode_frame({"injected": 2}))

        attacks: dict[str, Callable[[Channel], bytes]] = {
            "plain": lambda ch: encode_frame({"injected": 3}),
            "replayed": replayed,
            "skipped": skipped,
            "tampered": tampered,
            "another connection's": lambda ch: other.channel.seal(encode_frame({"injected": 4})),
        }
        for i, (what, attack) in enumerate(attacks.items(), start=1):
            reader, writer, res = await raw_handshake(a.port, "obs")
            writer.write(attack(res.channel))
            assert await closed_by_peer(reader), what

            def counted(i: int = i) -> bool:
                return a.t.stats["dropped_unauthenticated"] == i

            await until(counted, f"the {what} frame counted")
        assert a.got("obs") == [{"genuine": 1}] and a.got("c") == []
        assert a.t.stats["dropped_malformed"] == 0
        await close(a)

    asyncio.run(main())


def test_nothing_a_node_sends_is_readable_on_the_wire() -> None:
    """A relay between two nodes records every byte both ways: the handshake's names are
    there, the messages that follow are not (they are sealed)."""

    async def main() -> None:
        a, b = Node("a"), Node("b")
        await start(a, b)
        wire = bytearray()

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    wire.extend(data)
                    dst.write(data)
                    await dst.drain()
            dst.close()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", b.port)
            await asyncio.gather(pump(reader, up_w), pump(up_r, writer))

        server = await asyncio.start_server(relay, "127.0.0.1", 0)
        a.t.add_peer("b", "127.0.0.1", server.sockets[0].getsockname()[1])
        await until(lambda: a.t.connected() == {"b"}, "a linked to b through the relay")
        secret = b"carcass car-152523-01-2026-00000997"
        a.t.send("b", {"note": secret})
        b.t.send("a", {"note": secret[::-1]})
        await until(lambda: {"note": secret} in b.got("a") and {"note": secret[::-1]} in a.got("b"), "delivery")
        assert b"hello" in wire and b"auth" in wire  # the relay saw the handshake, which is in the clear
        assert secret not in wire and secret[::-1] not in wire and b"note" not in wire
        server.close()
        await close(a, b)

    asyncio.run(main())


# --- reconnects ---------------------------------------------------------------------------


def test_a_restarted_peer_is_redialled_and_messages_flow_again() -> None:
    async def main() -> None:
        a, b = Node("a"), Node("b")
        await start(a, b)
        a.t.add_peer("b", "127.0.0.1", b.port)
        b.t.add_peer("a", "127.0.0.1", a.port)
        await until(lambda: a.t.connected() == {"b"} and b.t.connected() == {"a"}, "a and b connected")
        port = b.port
        await b.t.close()
        await until(lambda: not a.t.connected(), "a noticing b is gone")
        a.t.send("b", {"sent": "while down"})
        await until(lambda: a.t.stats["dial_failed"] >= 3, "a few refused dials")
        b2 = Node("b", port=port)
        await b2.t.start()
        b2.t.add_peer("a", "127.0.0.1", a.port)
        await until(lambda: a.t.connected() == {"b"} and b2.t.connected() == {"a"}, "reconnected")
        await until(lambda: {"sent": "while down"} in b2.got("a"), "the frame queued while b was down")
        b2.t.send("a", {"back": True})
        a.t.send("b", {"again": True})
        await until(lambda: {"back": True} in a.got("b") and {"again": True} in b2.got("a"), "both ways again")
        assert a.t.stats["reconnects"] >= 1
        await close(a, b2)

    asyncio.run(main())


def test_faultproxy_cut_heal_delay_and_drop() -> None:
    async def main() -> None:
        a, b = Node("a"), Node("b")
        await start(a, b)
        with FaultProxy(0, b.port, seed=1) as proxy:
            a.t.add_peer("b", "127.0.0.1", proxy.port)  # the only link: a dials b through the proxy
            await until(lambda: a.t.connected() == {"b"} and b.t.connected() == {"a"}, "linked through the proxy")
            a.t.send("b", {"n": 1})
            b.t.send("a", {"n": 1})
            await until(lambda: {"n": 1} in b.got("a") and {"n": 1} in a.got("b"), "delivery through the proxy")

            await asyncio.to_thread(proxy.cut)
            await until(lambda: not a.t.connected() and not b.t.connected(), "the cut noticed")
            a.t.send("b", {"n": 2})
            b.t.send("a", {"n": 2})
            await asyncio.sleep(0.5)
            assert {"n": 2} not in b.got("a") and {"n": 2} not in a.got("b")
            assert not a.t.connected()

            await asyncio.to_thread(proxy.heal)
            await until(lambda: a.t.connected() == {"b"} and b.t.connected() == {"a"}, "healed")
            await until(lambda: {"n": 2} in b.got("a") and {"n": 2} in a.got("b"), "delivery resumed")

            proxy.delay(200)
            t0 = time.monotonic()
            a.t.send("b", {"n": 3})
            await until(lambda: {"n": 3} in b.got("a"), "a delayed frame")
            assert time.monotonic() - t0 >= 0.19
            proxy.delay(0)

            proxy.drop_rate(1.0)
            for i in range(3):
                a.t.send("b", {"lost": i})
            await asyncio.sleep(0.3)
            assert not any("lost" in m for m in b.got("a"))
            proxy.drop_rate(0.0)
            # Frames are sealed in sequence: b notices the three missing before the next and
            # cuts the link (no stream loses frames in its middle but an attacker's); a
            # dials again and what it sends then arrives.
            connections = proxy.stats["connections"]
            a.t.send("b", {"n": 4})
            await until(lambda: b.t.stats["dropped_unauthenticated"] == 1, "the gap noticed")
            await until(lambda: proxy.stats["connections"] > connections and a.t.connected() == {"b"},
                        "linked again")
            a.t.send("b", {"n": 5})
            await until(lambda: {"n": 5} in b.got("a"), "delivery after dropping stops")
            assert proxy.stats["units_dropped"] == 3
        await close(a, b)

    asyncio.run(main())


# --- the thread wrapper ---------------------------------------------------------------------


def test_transport_thread_is_usable_from_other_threads() -> None:
    inboxes: dict[str, queue.Queue[tuple[str, dict[str, Any]]]] = {"a": queue.Queue(), "b": queue.Queue()}

    def make(name: str) -> TransportThread:
        return TransportThread(name, KEYS[name], {}, KNOWN, chain=CHAIN, genesis_hash=GENESIS,
                               listen=("127.0.0.1", 0), on_message=lambda p, m: inboxes[name].put((p, m)), **FAST)

    a, b = make("a"), make("b")
    a.start()
    addr = b.start()
    assert addr is not None
    try:
        a.add_peer("b", *addr)
        deadline = time.monotonic() + 5
        while a.connected() != {"b"} or b.connected() != {"a"}:
            assert time.monotonic() < deadline, "never connected"
            time.sleep(0.01)
        a.send("b", {"x": 1})
        b.broadcast({"y": 2})
        assert inboxes["b"].get(timeout=5) == ("a", {"x": 1})
        assert inboxes["a"].get(timeout=5) == ("b", {"y": 2})
        assert a.stats["frames_out"] == 1 and b.stats["frames_in"] == 1
        with pytest.raises(RuntimeError):
            a.send("mallory", {"x": 1})
    finally:
        a.close()
        b.close()
    a.send("b", {"after": "close"})  # a no-op, not an error
    assert a.connected() == set()


def test_faultproxy_raw_mode_forwards_bytes_and_resets_on_drop() -> None:
    async def main() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with FaultProxy(0, port, framed=False, seed=3) as proxy:
            reader, writer = await open_raw(proxy.port)
            writer.write(b"not a frame at all")
            assert await asyncio.wait_for(reader.readexactly(18), 2) == b"not a frame at all"
            proxy.drop_rate(1.0)
            writer.write(b"lost")
            assert await closed_by_peer(reader)  # a raw drop resets the connection
            assert proxy.stats["resets"] == 1
            with pytest.raises(ValueError):
                proxy.drop_rate(1.5)
            with pytest.raises(ValueError):
                proxy.delay(-1)
        server.close()
        await close()

    asyncio.run(main())
