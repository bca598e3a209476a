"""Fuzz the peer transport's frames and handshake, and what consensus makes of a frame.

The input is ``{"mode": 0|1|2, "sender": str, "frames": [...]}``; each frame is either
raw bytes (put on the wire as they are, length prefix included) or a value (framed:
4-byte length, canonical msgpack).  The wire bytes go through an
``asyncio.StreamReader`` into the node's own code:

* mode 0: :func:`node.transport.responder_handshake` (the node accepts a connection);
  mode 1: :func:`node.transport.initiator_handshake` (the node dialled ``v1``); mode 2
  skips the handshake (``sender`` is the authenticated peer);
* then, as the transport's read loop, :func:`node.transport.read_frame` per frame (after a
  handshake, the frames after hello and auth are sealed as that peer would seal them, with
  the node's fixed ephemeral key :data:`EPH_ME`; a frame given as raw bytes is put on the
  wire unsealed, which the node must refuse) and
  the consensus driver's ``_handle`` (``node/consensus.py``) for each message: relayed
  events are admitted (``Node.submit_leaves``), everything else goes to the
  :class:`~ledger.consensus.replica.Replica` of a four-validator chain (tests/fuzz/_net.py);
  the timers it sets are fired afterwards;
* with ``"watch": true`` the replica is one that started without its sign guard and
  watches for an earlier run of itself (ADR 0014);
* finally the replica is restarted from its WAL (a WAL that stores records as
  ``FileWAL`` does), as a node restarting at that height would.

Allowed: :class:`~ledger.errors.TransportError` from framing and the handshake (the
connection is cut and counted), :class:`~ledger.errors.LedgerError` from event
admission (as the driver's admission thread catches); every other hostile message must
end in the replica's drop path (``stats.dropped``) or be taken up.  A restart must not
raise, and every WAL record must read back.

The mutator signs mutated handshakes, proposals, votes and commit certificates again with
the keys of ``v1``-``v3``, so frames get past signature checks as a faulty validator's would.

    .venv/bin/python tests/fuzz/fuzz_transport.py -max_total_time=600 -max_len=65536 /tmp/corpus-transport
"""

from __future__ import annotations

import asyncio
import random
import struct
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

with _harness.instrumented():
    import _net
    import msgpack
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    from ledger import codec
    from ledger.errors import DecodeError, TransportError
    from ledger.limits import DEFAULT_LIMITS
    from node import transport as T
    from node.consensus import ConsensusDriver

NONCE_INITIATOR = b"\x11" * 32
NONCE_RESPONDER = b"\x22" * 32
EPH_ME = X25519PrivateKey.from_private_bytes(b"\x33" * 32)
"""The node's ephemeral key in every harnessed handshake, so inputs replay exactly."""
EPH_ME_PUB = EPH_ME.public_key().public_bytes_raw()
EPH_PEER_PUB = X25519PrivateKey.from_private_bytes(b"\x44" * 32).public_key().public_bytes_raw()
"""The ephemeral key in the seeds' hellos."""
FRAME_CODES = {"closed", "oversized", "malformed", "unauthenticated"}
HANDSHAKE_CODES = FRAME_CODES | {"bad_hello", "wrong_version", "wrong_chain", "wrong_genesis", "unknown_peer",
                                 "unexpected_peer", "reflected_nonce", "bad_auth", "bad_signature"}
MAX_TIMERS = 64


class _Writer:
    """Enough of an ``asyncio.StreamWriter`` for the handshake: keeps what is written."""

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        return None


def _transcript(mode: int, hello: dict[str, Any]) -> dict[str, Any]:
    """The transcript of a handshake in ``mode`` with the peer whose hello is ``hello``."""
    g = _net.genesis()
    peer = {"name": hello.get("name"), "nonce": hello.get("nonce"), "eph": hello.get("eph")}
    me = {"name": _net.ME, "nonce": NONCE_RESPONDER if mode == 0 else NONCE_INITIATOR, "eph": EPH_ME_PUB}
    ini, res = (peer, me) if mode == 0 else (me, peer)
    return {"chain": g.chain, "genesis_hash": g.hash, "initiator": ini["name"], "initiator_nonce": ini["nonce"],
            "initiator_eph": ini["eph"], "responder": res["name"], "responder_nonce": res["nonce"],
            "responder_eph": res["eph"]}


def _peer_channel(mode: int, frames: list[Any]) -> T.Channel | None:
    """The channel of the peer in a handshake of ``mode`` whose first frame is its hello
    (``None`` when the hello cannot lead to one)."""
    hello = frames[0] if frames else None
    if mode not in (0, 1) or type(hello) is not dict or type(hello.get("eph")) is not bytes \
            or len(hello["eph"]) != T.EPH_KEY_BYTES:
        return None
    try:
        shared = EPH_ME.exchange(X25519PublicKey.from_public_bytes(hello["eph"]))
        i2r, r2i = T.session_keys(shared, _transcript(mode, hello))
    except (ValueError, TypeError, DecodeError):
        return None
    return T.Channel(i2r, r2i) if mode == 0 else T.Channel(r2i, i2r)


def wire(frames: list[Any], mode: int = 2) -> bytes:
    """The bytes a peer puts on the wire: frames after hello and auth sealed in modes 0 and 1."""
    channel = _peer_channel(mode, frames)
    out = bytearray()
    for i, f in enumerate(frames):
        if type(f) is bytes:
            out += f
            continue
        try:
            body = codec.encode(f)
        except DecodeError:
            body = msgpack.packb(f, use_bin_type=True)
        frame = struct.pack(">I", len(body)) + body
        out += channel.seal(frame) if channel is not None and i >= 2 else frame
    return bytes(out)


async def _session(mode: int, sender: str, data: bytes, deliver: Any) -> None:
    reader = asyncio.StreamReader(limit=2**24)
    reader.feed_data(data)
    reader.feed_eof()
    writer: Any = _Writer()
    g = _net.genesis()
    peer = sender
    try:
        if mode == 0:
            res = await T.responder_handshake(reader, writer, name=_net.ME, signer=_net.signer(_net.ME),
                                              chain=g.chain, genesis_hash=g.hash, known_keys=_net.known_keys(),
                                              nonce=NONCE_RESPONDER, eph=EPH_ME)
            peer = res.peer
        elif mode == 1:
            res = await T.initiator_handshake(reader, writer, name=_net.ME, signer=_net.signer(_net.ME),
                                              chain=g.chain, genesis_hash=g.hash, expected_peer="v1",
                                              peer_key=_net.known_keys()["v1"], nonce=NONCE_INITIATOR,
                                              eph=EPH_ME)
            peer = res.peer
    except TransportError as exc:
        if exc.code not in HANDSHAKE_CODES:
            raise _harness.Finding(f"handshake failed with an undocumented code {exc.code!r}") from exc
        return
    limits = T.replace(DEFAULT_LIMITS, max_depth=DEFAULT_LIMITS.max_depth + T.FRAME_DEPTH_ALLOWANCE)
    channel = res.channel if mode in (0, 1) else None
    while True:
        try:
            msg, _size = await T.read_frame(reader, max_bytes=DEFAULT_LIMITS.max_message_bytes, limits=limits,
                                            on_start=lambda: None, channel=channel)
        except TransportError as exc:
            if exc.code not in FRAME_CODES:
                raise _harness.Finding(f"read_frame failed with an undocumented code {exc.code!r}") from exc
            return
        deliver(peer, msg)


def run_input(value: Any) -> _net.Replicated:
    """Play one decoded input against a fresh node; return it for further checks."""
    r = _net.replicated(watch=value.get("watch") is True)
    clock = [_net.NOW]
    driver = ConsensusDriver(r.node, r.replica, send=lambda to, msg: None, broadcast=lambda msg: None,
                             clock=lambda: clock[0])
    driver._carry_out(r.replica.start(clock[0]))

    def deliver(sender: str, msg: dict[str, Any]) -> None:
        clock[0] += 10
        driver._handle(sender, msg, clock[0])
        while not driver._events_q.empty():  # what the admission thread does
            item = driver._events_q.get_nowait()
            assert item is not None
            driver.admit_relayed(*item)

    mode = value.get("mode") if type(value.get("mode")) is int else 2
    sender = value.get("sender") if type(value.get("sender")) is str else "v1"
    frames = value.get("frames")
    if type(frames) is not list:
        return r
    asyncio.run(_session(mode % 3, sender, wire(frames, mode % 3), deliver))
    for _ in range(MAX_TIMERS):  # the timers the replica set, in order
        if not driver._timers:
            break
        import heapq

        at, _seq, key = heapq.heappop(driver._timers)
        clock[0] = max(clock[0], at)
        driver._carry_out(r.replica.on_timer(key, clock[0]))
    return r


def test_one_input(data: bytes) -> None:
    try:
        value = codec.decode(data, _harness.input_limits(), max_bytes=1 << 20)
    except DecodeError:
        return
    if type(value) is not dict:
        return
    with _harness.quiet_logs():
        r = run_input(value)
        r.restart().start(_net.NOW)
    if r.wal.unreadable:
        raise _harness.Finding(f"a WAL record the replica wrote does not read back: {r.wal.unreadable[0]}")


# --------------------------------------------------------------------------- mutation


def _resign(value: Any, rng: random.Random) -> Any:
    if type(value) is not dict or type(value.get("frames")) is not list:
        return value
    frames = value["frames"]
    mode = value.get("mode")
    if mode in (0, 1) and len(frames) >= 2 and type(frames[0]) is dict and type(frames[1]) is dict \
            and rng.random() < 0.8:
        hello, name, nonce = frames[0], frames[0].get("name"), frames[0].get("nonce")
        if type(name) is str and name in _net.known_keys() and type(nonce) is bytes and hello.get("type") == "hello" \
                and type(hello.get("eph")) is bytes:
            role = "initiator" if mode == 0 else "responder"
            sig = T.sign_handshake(_net.signer(name), role=role, **_transcript(mode, hello))
            frames[1] = {**frames[1], "sig": sig}
    for i, f in enumerate(frames):
        if type(f) is not dict or rng.random() < 0.2:
            continue
        if f.get("t") in ("proposal", "vote"):
            frames[i] = _net.sign_message(f)
        elif f.get("t") == "commit":
            frames[i] = _net.certify(f)
    return value


def _hello(name: str, nonce: bytes) -> dict[str, Any]:
    g = _net.genesis()
    return T.hello_message(chain=g.chain, genesis_hash=g.hash, name=name, nonce=nonce, eph=EPH_PEER_PUB)


def height_one() -> list[dict[str, Any]]:
    """A genuine height 1 as the node would see it from its peers."""
    value, payload = _net.block_one()
    p = _net.proposer_of(1, 0)
    msgs: list[dict[str, Any]] = [_net.sign_message({
        "t": "proposal", "chain": _net.CHAIN, "height": 1, "round": 0, "value": value, "valid_round": -1,
        "block": payload, "from": p, "sig": b""})]
    for typ in ("prevote", "precommit"):
        for n in ("v1", "v2", "v3"):
            msgs.append(_net.sign_message({"t": "vote", "type": typ, "chain": _net.CHAIN, "height": 1, "round": 0,
                                           "value": value, "from": n, "sig": b""}))
    return msgs


def seeds() -> list[bytes]:
    value, payload = _net.block_one()
    chain = _net.CHAIN
    status = {"t": "status", "chain": chain, "height": 1, "from": "v1"}
    commit = _net.certify({"t": "commit", "chain": chain, "height": 1, "block": payload,
                           "cert": {"height": 1, "round": 0, "block": value, "precommits": []}})
    events = {"t": "events", "chain": chain, "events": list(_net.enrol_leaves())}
    early = _net.sign_message({"t": "vote", "type": "prevote", "chain": chain, "height": 2, "round": 0,
                               "value": None, "from": "v2", "sig": b""})
    nil = _net.sign_message({"t": "vote", "type": "prevote", "chain": chain, "height": 1, "round": 1,
                             "value": None, "from": "v3", "sig": b""})
    junk = [{"t": "weird"}, {"t": "sync_req", "chain": chain, "height": 1}, {"x": 1}]
    inputs: list[dict[str, Any]] = [
        {"mode": 2, "sender": "v1", "frames": height_one()},
        {"mode": 2, "sender": "v2", "frames": [status, commit, early]},
        {"mode": 2, "sender": "obs", "frames": [events, *junk, nil]},
        {"mode": 2, "sender": "v3", "frames": [events, *height_one()[1:], height_one()[0]]},
        {"mode": 0, "sender": "", "frames": [_hello("v1", b"\x01" * 32), {"type": "auth", "sig": bytes(64)},
                                             *height_one()[:3]]},
        {"mode": 0, "sender": "", "frames": [_hello("obs", b"\x02" * 32), {"type": "auth", "sig": bytes(64)},
                                             events, status]},
        {"mode": 1, "sender": "", "frames": [_hello("v1", b"\x03" * 32), {"type": "auth", "sig": bytes(64)},
                                             commit]},
        {"mode": 2, "sender": "v1", "frames": [b"\x00\x00\x00\x01\xc0", b"\xff\xff\xff\xff"]},
        {"mode": 2, "sender": "v2", "watch": True, "frames": [*height_one(), early]},
        {"mode": 2, "sender": "v2", "watch": True, "frames": [_net.sign_message(
            {"t": "vote", "type": "prevote", "chain": chain, "height": 1, "round": 0, "value": value,
             "from": _net.ME, "sig": b""}), nil]},
    ]
    rng = random.Random(0)
    return [codec.encode(_resign(x, rng)) for x in inputs]


def _dictionary() -> list[Any]:
    value, payload = _net.block_one()
    return [*_net.NAMES, "obs", _net.CHAIN, "proposal", "vote", "prevote", "precommit", "status", "sync_req",
            "commit", "events", "hello", "auth", value, payload, payload["header"], *_net.enrol_leaves(), -1, 0, 1,
            2, 3, 63, 64, 65, NONCE_INITIATOR, NONCE_RESPONDER, EPH_PEER_PUB, _net.genesis().hash]


MUTATOR = _harness.Mutator(dictionary=_dictionary(), post=_resign, canonical_share=1.0, byte_share=0.03)


if __name__ == "__main__":
    _harness.run(test_one_input, seeds, MUTATOR)
