"""Authenticated peer transport between nodes: asyncio TCP, canonical frames (ADR 0006).

The consensus driver hands this module maps and gets maps back; what travels between
them is settled here.

**Connection story.**  A node dials every configured peer and accepts connections from
any node whose key it knows (validators from genesis plus configured observers).  Nothing
but the handshake is read from a new connection:

1. the initiator sends ``hello {type, v, chain, genesis, name, nonce, eph}`` (``nonce``: 32
   random bytes; ``eph``: a fresh X25519 public key for this connection alone);
2. the responder checks chain, genesis hash and that it knows the claimed name, and
   answers with its own hello;
3. the initiator checks the responder's hello (chain, genesis, and that the name is the
   peer it meant to dial) and sends ``auth {type, sig}``: its signature over
   :func:`handshake_signing_bytes`, a transcript that binds both names, both nonces, both
   ephemeral keys, the chain, the genesis hash and the signer's role;
4. the responder verifies that signature under the key ``known_keys`` holds for the
   claimed name, then sends its own ``auth``, which the initiator verifies.

Because each transcript carries the other side's fresh nonce, a recorded signature is
worthless on any other connection; because it carries the role, an initiator's signature
cannot be reflected back as a responder's.  Because it carries both ephemeral keys, the
X25519 secret the two sides then share is known to the two signers alone: every frame
after the handshake is sealed under keys derived from it (:class:`Channel`), so nobody
on the path can read, forge, replay, reorder or drop-and-splice frames without the
receiver noticing (ADR 0022).  Anything wrong (wrong chain or genesis,
unknown or unexpected name, bad signature, a reflected nonce, a frame that is not the
expected hello/auth, or no progress within ``handshake_timeout_s``) closes the connection
and counts ``handshake_failed``.  The responder signs only after the initiator has proved
its key, so an unauthenticated caller cannot make a node sign anything.

**One connection per pair.**  If both sides dial, both end up with two authenticated
connections; each side keeps the one initiated by the lexicographically smaller name and
closes the other, so both sides pick the same one without talking about it.  Between two
connections of the same direction the newer wins (the older is most likely the dead half
of a connection the peer has since restarted).

**Frames.**  After the handshake every frame is a 4-byte big-endian length followed by
the sealed (ChaCha20-Poly1305) canonical msgpack encoding of a map.  The length is
checked against ``limits.max_message_bytes`` (plus the 16-byte tag) before a single body
byte is read, so an oversized prefix costs nothing; the body is opened under the
direction's key and the frame's number (``dropped_unauthenticated`` if that fails) and
decoded with :func:`ledger.codec.decode`, which refuses anything non-canonical.  An
oversized, unauthenticated, malformed or non-canonical frame is counted and the
connection closed: a peer that sends garbage is cut (it may reconnect and handshake
again).  Waiting for the first byte of a frame has no deadline (an idle link stays up),
but once it has arrived the rest of the frame must follow within
``frame_complete_timeout_s`` (default :data:`FRAME_COMPLETE_TIMEOUT_S`, or the
``LAMBTRACE_FRAME_COMPLETE_TIMEOUT_S`` environment variable); otherwise the connection is
closed and counted in ``dropped_stalled``, so a peer cannot hold a link (and its buffer)
open by sending half a frame and going silent.  One lazily re-armed timer per connection
enforces this, not a timeout per frame, so the cost per frame is a clock read.

**Sending.**  :meth:`Transport.send` and :meth:`Transport.broadcast` encode at once (in
the caller's thread for :class:`TransportThread`) and never block: each peer has a
bounded outbound queue (frames and bytes) that survives reconnects; when it is full the
oldest frame is dropped and counted (consensus re-sends, gossip recovers).  A writer
task per connection drains the queue.

**Dialling.**  Each configured peer has a dial loop that waits while the peer is
connected (in either direction) and otherwise dials with exponential backoff
(``backoff_initial_s`` doubling to ``backoff_max_s``, jitter ×[0.5, 1.5)) until
:meth:`Transport.close`.

This is the node's shell, not its pure core: sockets, the event loop, a clock and
jitter live here and nowhere in ``ledger/``.  Every exception a peer can cause is caught,
logged at debug level, counted and ends only that peer's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import math
import os
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger import codec
from ledger.errors import DecodeError, Rejected, TransportError
from ledger.hashing import HASH_SIZE, signing_message
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.sigs import SIGNATURE_SIZE, check_public_key, verify_signature
from signer import Signer

__all__ = [
    "BACKOFF_INITIAL_S",
    "BACKOFF_MAX_S",
    "EPH_KEY_BYTES",
    "FRAME_COMPLETE_TIMEOUT_ENV",
    "FRAME_COMPLETE_TIMEOUT_S",
    "FRAME_HEADER_BYTES",
    "HANDSHAKE_MAX_FRAME_BYTES",
    "HANDSHAKE_TIMEOUT_S",
    "NONCE_BYTES",
    "PROTOCOL_VERSION",
    "STAT_NAMES",
    "TAG_BYTES",
    "TAG_HANDSHAKE",
    "TAG_SESSION_KEYS",
    "Channel",
    "HandshakeResult",
    "MessageHandler",
    "PeerInfo",
    "Transport",
    "TransportThread",
    "auth_message",
    "backoff_delay",
    "encode_frame",
    "handshake_signing_bytes",
    "hello_message",
    "initiator_handshake",
    "read_frame",
    "responder_handshake",
    "session_keys",
    "sign_handshake",
    "verify_handshake",
]

log = logging.getLogger(__name__)

TAG_HANDSHAKE: Final = b"lambtrace/handshake/v2"
"""Domain tag of the handshake transcript a node signs (see :func:`handshake_signing_bytes`)."""
TAG_SESSION_KEYS: Final = b"lambtrace/transport/v2/keys"
"""HKDF ``info`` of the two frame keys of a connection (see :func:`session_keys`)."""

PROTOCOL_VERSION: Final = 2
"""2: frames after the handshake are sealed (ADR 0022).  A node of version 1 is refused
at the hello (``wrong_version``)."""
NONCE_BYTES: Final = 32
EPH_KEY_BYTES: Final = 32
"""An X25519 public key."""
TAG_BYTES: Final = 16
"""The Poly1305 tag each sealed frame body carries."""
FRAME_HEADER_BYTES: Final = 4
HANDSHAKE_MAX_FRAME_BYTES: Final = 1024
"""Largest hello or auth frame accepted; both are well under 200 bytes."""
HANDSHAKE_TIMEOUT_S: Final = 5.0
FRAME_COMPLETE_TIMEOUT_S: Final = 30.0
"""Once the first byte of a frame has arrived, the rest of it (header and body) must
arrive within this many seconds or the connection is closed (``dropped_stalled``).  At
the 16 MiB frame limit that asks for about 4.5 Mbit/s from the peer."""
FRAME_COMPLETE_TIMEOUT_ENV: Final = "LAMBTRACE_FRAME_COMPLETE_TIMEOUT_S"
"""Environment variable that overrides :data:`FRAME_COMPLETE_TIMEOUT_S` for a transport
built without ``frame_complete_timeout_s`` (e.g. a node process under test)."""
BACKOFF_INITIAL_S: Final = 0.1
BACKOFF_MAX_S: Final = 5.0
MAX_NAME_CHARS: Final = 128
FRAME_DEPTH_ALLOWANCE: Final = 4
"""Nesting a message may add around the events it carries: frames are decoded with
``limits.max_depth + FRAME_DEPTH_ALLOWANCE``, since an event alone may use ``max_depth``."""
DEFAULT_MAX_QUEUE_FRAMES: Final = 4096
DEFAULT_MAX_QUEUE_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_PENDING_HANDSHAKES: Final = 64
_WRITE_BATCH_FRAMES: Final = 256
_WRITE_BATCH_BYTES: Final = 1024 * 1024
_CLOSE_TIMEOUT_S: Final = 5.0
_INBOUND_WARN_S: Final = 3600.0

_LEN: Final = struct.Struct(">I")
_MAX_FRAME_LEN: Final = 2**32 - 1

STAT_NAMES: Final = (
    "frames_in",
    "frames_out",
    "bytes_in",
    "bytes_out",
    "dropped_oversized",
    "dropped_malformed",
    "dropped_unauthenticated",
    "dropped_queue_full",
    "dropped_stalled",
    "handshake_failed",
    "handshakes_ok",
    "reconnects",
    "dial_failed",
    "duplicate_closed",
    "connection_errors",
    "handler_errors",
)
"""Counters in :attr:`Transport.stats`; frames/bytes count post-handshake frames, prefix included."""

MessageHandler = Callable[[str, dict[str, Any]], Awaitable[None] | None]
"""``on_message(peer_name, message)``; may be a coroutine function (awaited before the next
frame from that peer is read, which back-pressures that peer alone)."""

_HELLO_KEYS: Final = frozenset({"type", "v", "chain", "genesis", "name", "nonce", "eph"})
MISCONFIGURED: Final = frozenset({"wrong_version", "wrong_chain", "wrong_genesis", "unexpected_peer",
                                  "bad_signature"})
"""Codes of a failed dial that no retry will mend: another version, chain or genesis at the
peer's address, another node there, or a key that is not the one genesis (or the
configuration) names.  The first such failure per peer and code is logged as a warning."""
_AUTH_KEYS: Final = frozenset({"type", "sig"})
_ROLES: Final = ("initiator", "responder")


# --- frames --------------------------------------------------------------------------------


def encode_frame(msg: Mapping[str, Any], *, max_bytes: int | None = None) -> bytes:
    """The frame for ``msg``: 4-byte big-endian body length, then ``canonical(msg)``.

    Raises :class:`~ledger.errors.DecodeError` (``non_canonical``) for a value with no
    canonical encoding (floats, non-str keys, ...), and :class:`TransportError`
    ``message_too_large`` if the body is longer than ``max_bytes`` (or than 2**32 - 1).
    """
    if not isinstance(msg, Mapping):
        raise TypeError(f"a message must be a map, not {type(msg).__name__}")
    body = codec.encode(dict(msg))
    cap = _MAX_FRAME_LEN if max_bytes is None else min(max_bytes, _MAX_FRAME_LEN)
    if len(body) > cap:
        raise TransportError(
            f"message of {len(body)} bytes exceeds the limit of {cap}",
            code="message_too_large",
            size=len(body),
            limit=cap,
        )
    return _LEN.pack(len(body)) + body


class Channel:
    """The frame keys of one authenticated connection, and how many frames each way used them.

    Each direction has its own 32-byte key (:func:`session_keys`).  Frame *n* in a
    direction (counting from 0) is sealed with ChaCha20-Poly1305 under that direction's
    key and the 12-byte nonce ``0x00000000 || n`` (64-bit little-endian), as in the Noise
    protocol framework: a frame replayed, dropped, reordered or taken from another
    connection or the other direction does not open.  Not thread-safe: the transport
    seals in a connection's writer task and opens in its reader task.
    """

    __slots__ = ("_open", "_recv_n", "_seal", "_send_n")

    def __init__(self, send_key: bytes, recv_key: bytes) -> None:
        self._seal = ChaCha20Poly1305(send_key)
        self._open = ChaCha20Poly1305(recv_key)
        self._send_n = 0
        self._recv_n = 0

    @staticmethod
    def _nonce(n: int) -> bytes:
        if n >= 2**64 - 1:  # pragma: no cover - 2**64 frames on one connection
            raise TransportError("frame counter exhausted: reconnect", code="closed")
        return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")

    def seal(self, frame: bytes) -> bytes:
        """The wire form of a plain frame (:func:`encode_frame`): its body sealed under the
        next sending number, behind a new length prefix (``TAG_BYTES`` longer)."""
        body = self._seal.encrypt(self._nonce(self._send_n), frame[FRAME_HEADER_BYTES:], None)
        self._send_n += 1
        return _LEN.pack(len(body)) + body

    def open(self, sealed: bytes) -> bytes:
        """The plain body of the next frame received; raises :class:`TransportError`
        ``unauthenticated`` unless ``sealed`` is exactly what the peer sealed next."""
        try:
            body = self._open.decrypt(self._nonce(self._recv_n), sealed, None)
        except InvalidTag:
            raise TransportError("a frame that the peer did not seal, or not next", code="unauthenticated") from None
        self._recv_n += 1
        return body


def session_keys(shared: bytes, transcript: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """``(initiator→responder, responder→initiator)`` frame keys: HKDF-SHA-256 of the X25519
    secret, salted with the SHA-256 of the bytes the initiator signed
    (:func:`handshake_signing_bytes`), with :data:`TAG_SESSION_KEYS` as ``info``."""
    salt = hashlib.sha256(handshake_signing_bytes(role="initiator", **transcript)).digest()
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=TAG_SESSION_KEYS).derive(shared)
    return okm[:32], okm[32:]


def _x25519(private: X25519PrivateKey, peer_eph: bytes) -> bytes:
    """The secret shared with the owner of ``peer_eph``; ``bad_hello`` for a key of small
    order (the all-zero secret), which would make the frame keys public."""
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_eph))
    except ValueError:
        raise TransportError("the peer's ephemeral key is of small order", code="bad_hello") from None


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    max_bytes: int,
    limits: Limits = DEFAULT_LIMITS,
    on_start: Callable[[], None] | None = None,
    channel: Channel | None = None,
) -> tuple[dict[str, Any], int]:
    """Read one frame from an untrusted peer; return ``(message, frame_bytes)``.

    The length prefix is checked against ``max_bytes`` (plus :data:`TAG_BYTES` when
    sealed) before any of the body is read, so an oversized frame is refused without
    reading or allocating it.  With a ``channel`` the body is opened first.  The plain body
    must be canonical msgpack (:func:`ledger.codec.decode` under ``limits``) of a map.
    ``on_start`` (if given) is called as soon as the first byte of the frame has arrived,
    before the rest of it is awaited: the transport starts the frame's deadline there.

    Raises :class:`TransportError` with code ``closed`` (end of stream, also mid-frame),
    ``oversized`` (prefix over the limit), ``unauthenticated`` (a sealed body that does not
    open) or ``malformed`` (not msgpack, not canonical, too deep, or not a map; ``reason``
    holds the codec's code).
    """
    try:
        if on_start is None:
            head = await reader.readexactly(FRAME_HEADER_BYTES)
        else:
            head = await reader.read(FRAME_HEADER_BYTES)  # whatever has arrived, at least a byte
            if not head:
                raise asyncio.IncompleteReadError(head, FRAME_HEADER_BYTES)
            on_start()
            if len(head) < FRAME_HEADER_BYTES:
                head += await reader.readexactly(FRAME_HEADER_BYTES - len(head))
    except asyncio.IncompleteReadError:
        raise TransportError("the peer closed the connection", code="closed") from None
    (size,) = _LEN.unpack(head)
    limit = max_bytes if channel is None else max_bytes + TAG_BYTES
    if size > limit:
        raise TransportError(
            f"frame of {size} bytes exceeds the limit of {limit}", code="oversized", size=size, limit=limit
        )
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        raise TransportError("the peer closed the connection mid-frame", code="closed") from None
    if channel is not None:
        body = channel.open(body)
    try:
        msg = codec.decode(body, limits, max_bytes=max_bytes)
    except DecodeError as exc:
        raise TransportError(f"bad frame: {exc.message}", code="malformed", reason=exc.code) from None
    if type(msg) is not dict:
        raise TransportError("a frame must hold a map", code="malformed", reason="not_a_map")
    return msg, FRAME_HEADER_BYTES + size


async def _write_frame(writer: asyncio.StreamWriter, msg: Mapping[str, Any]) -> None:
    writer.write(encode_frame(msg, max_bytes=HANDSHAKE_MAX_FRAME_BYTES))
    await writer.drain()


# --- the handshake -------------------------------------------------------------------------


def hello_message(*, chain: str, genesis_hash: bytes, name: str, nonce: bytes, eph: bytes) -> dict[str, Any]:
    """The hello a node sends first (initiator) or in answer (responder); ``eph`` is the
    public half of its X25519 key for this connection."""
    return {"type": "hello", "v": PROTOCOL_VERSION, "chain": chain, "genesis": genesis_hash, "name": name,
            "nonce": nonce, "eph": eph}


def auth_message(sig: bytes) -> dict[str, Any]:
    """The frame carrying a node's handshake signature."""
    return {"type": "auth", "sig": sig}


def handshake_signing_bytes(
    *,
    chain: str,
    genesis_hash: bytes,
    initiator: str,
    initiator_nonce: bytes,
    initiator_eph: bytes,
    responder: str,
    responder_nonce: bytes,
    responder_eph: bytes,
    role: str,
) -> bytes:
    """The exact bytes a node signs to prove its key on one connection.

    ``TAG_HANDSHAKE || 0x00 || canonical({chain, genesis, initiator, initiator_eph,
    initiator_nonce, responder, responder_eph, responder_nonce, role, v})``, where
    ``role`` is the signer's role (``"initiator"`` or ``"responder"``).  Raises
    ``ValueError`` for another role.
    """
    if role not in _ROLES:
        raise ValueError(f"role must be one of {_ROLES}, not {role!r}")
    transcript = {
        "chain": chain,
        "genesis": genesis_hash,
        "initiator": initiator,
        "initiator_nonce": initiator_nonce,
        "initiator_eph": initiator_eph,
        "responder": responder,
        "responder_nonce": responder_nonce,
        "responder_eph": responder_eph,
        "role": role,
        "v": PROTOCOL_VERSION,
    }
    return signing_message(TAG_HANDSHAKE, codec.encode(transcript))


def sign_handshake(signer: Signer, **transcript: Any) -> bytes:
    """``signer``'s signature over :func:`handshake_signing_bytes` of ``transcript``."""
    return signer.sign(handshake_signing_bytes(**transcript))


def verify_handshake(alg: str, public_key: bytes, sig: bytes, **transcript: Any) -> bool:
    """Whether ``sig`` is ``public_key``'s signature over the transcript; never raises for bad input."""
    try:
        message = handshake_signing_bytes(**transcript)
    except (ValueError, TypeError, DecodeError):
        return False
    return verify_signature(alg, public_key, message, sig)


@dataclass(frozen=True)
class HandshakeResult:
    """An authenticated connection: who the peer is, the transcript both sides signed, and
    the :class:`Channel` its frames are sealed with from now on."""

    peer: str
    initiator: str
    local_nonce: bytes
    peer_nonce: bytes
    local_sig: bytes
    peer_sig: bytes
    channel: Channel


def _unverified_hello(msg: dict[str, Any], *, chain: str, genesis_hash: bytes) -> tuple[str, bytes, bytes]:
    """Structure, chain and genesis of a peer's hello; returns the claimed ``(name, nonce,
    eph)``.

    Raises :class:`TransportError` ``bad_hello``, ``wrong_version``, ``wrong_chain`` or
    ``wrong_genesis``.  The name is only a claim until the peer's signature checks out.
    """
    if msg.get("type") != "hello":
        raise TransportError("expected a hello", code="bad_hello")
    claimed = msg.get("name")
    claimed = claimed if type(claimed) is str and 0 < len(claimed) <= MAX_NAME_CHARS else None
    if msg.get("v") != PROTOCOL_VERSION:  # before the fields: another version has others
        raise TransportError(f"it speaks transport version {msg.get('v')!r}, this node {PROTOCOL_VERSION}: "
                             "upgrade every node of the network together", code="wrong_version", peer=claimed)
    if set(msg) != _HELLO_KEYS:
        raise TransportError("expected a hello", code="bad_hello")
    name, nonce, eph = msg["name"], msg["nonce"], msg["eph"]
    if type(name) is not str or not 0 < len(name) <= MAX_NAME_CHARS:
        raise TransportError("hello name must be a short string", code="bad_hello")
    if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
        raise TransportError(f"hello nonce must be {NONCE_BYTES} bytes", code="bad_hello")
    if type(eph) is not bytes or len(eph) != EPH_KEY_BYTES:
        raise TransportError(f"hello eph must be {EPH_KEY_BYTES} bytes", code="bad_hello")
    if msg["chain"] != chain:
        raise TransportError(f"it is on chain {str(msg['chain'])[:64]!r}, this node on {chain!r}", code="wrong_chain",
                             peer=name)
    if msg["genesis"] != genesis_hash:
        raise TransportError("it holds another genesis than this node (same chain id)", code="wrong_genesis",
                             peer=name)
    return name, nonce, eph


def _unverified_auth(msg: dict[str, Any]) -> bytes:
    """The signature in an auth frame; raises :class:`TransportError` ``bad_auth``."""
    if set(msg) != _AUTH_KEYS or msg["type"] != "auth":
        raise TransportError("expected an auth", code="bad_auth")
    sig = msg["sig"]
    if type(sig) is not bytes or len(sig) != SIGNATURE_SIZE:
        raise TransportError(f"auth signature must be {SIGNATURE_SIZE} bytes", code="bad_auth")
    return sig


async def _read_handshake_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    msg, _ = await read_frame(reader, max_bytes=HANDSHAKE_MAX_FRAME_BYTES)
    return msg


async def initiator_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    name: str,
    signer: Signer,
    chain: str,
    genesis_hash: bytes,
    expected_peer: str,
    peer_key: tuple[str, bytes],
    nonce: bytes | None = None,
    eph: X25519PrivateKey | None = None,
) -> HandshakeResult:
    """Run the dialling side of the handshake on a fresh connection.

    Sends our hello, checks the responder's hello (chain, genesis, and that it names
    ``expected_peer``), signs the transcript, and verifies the responder's signature under
    ``peer_key`` = ``(alg, public_key)``.  ``nonce`` defaults to 32 fresh random bytes and
    ``eph`` (the X25519 key of this connection) to a fresh one; tests fix both.  No timeout
    here: the caller bounds the whole exchange.

    Raises :class:`TransportError`: ``closed``, ``oversized``, ``malformed`` (framing),
    ``bad_hello``, ``wrong_version``, ``wrong_chain``, ``wrong_genesis``, ``unexpected_peer``,
    ``reflected_nonce``, ``bad_auth``, ``bad_signature``; ``OSError`` from the socket.
    """
    my_nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    my_eph = X25519PrivateKey.generate() if eph is None else eph
    my_eph_pub = my_eph.public_key().public_bytes_raw()
    await _write_frame(writer, hello_message(chain=chain, genesis_hash=genesis_hash, name=name, nonce=my_nonce,
                                             eph=my_eph_pub))
    peer, peer_nonce, peer_eph = _unverified_hello(await _read_handshake_frame(reader), chain=chain,
                                                   genesis_hash=genesis_hash)
    if peer != expected_peer:
        raise TransportError(f"dialled {expected_peer!r} but {peer!r} answered", code="unexpected_peer")
    if peer_nonce == my_nonce or peer_eph == my_eph_pub:
        raise TransportError("the peer reflected our nonce", code="reflected_nonce")
    shared = _x25519(my_eph, peer_eph)
    transcript = {"chain": chain, "genesis_hash": genesis_hash, "initiator": name, "initiator_nonce": my_nonce,
                  "initiator_eph": my_eph_pub, "responder": peer, "responder_nonce": peer_nonce,
                  "responder_eph": peer_eph}
    my_sig = sign_handshake(signer, role="initiator", **transcript)
    await _write_frame(writer, auth_message(my_sig))
    peer_sig = _unverified_auth(await _read_handshake_frame(reader))
    alg, pub = peer_key
    if not verify_handshake(alg, pub, peer_sig, role="responder", **transcript):
        raise TransportError(f"{peer!r} did not prove its key", code="bad_signature")
    to_peer, from_peer = session_keys(shared, transcript)
    return HandshakeResult(peer, name, my_nonce, peer_nonce, my_sig, peer_sig, Channel(to_peer, from_peer))


async def responder_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    name: str,
    signer: Signer,
    chain: str,
    genesis_hash: bytes,
    known_keys: Mapping[str, tuple[str, bytes]],
    nonce: bytes | None = None,
    eph: X25519PrivateKey | None = None,
) -> HandshakeResult:
    """Run the accepting side of the handshake on a fresh connection.

    Reads the initiator's hello and refuses it unless chain and genesis match and the
    claimed name is in ``known_keys`` (and is not ours); answers with our hello; verifies
    the initiator's signature under the key ``known_keys`` names; only then signs and
    sends our own.  ``nonce`` and ``eph`` as for :func:`initiator_handshake`.  No timeout
    here: the caller bounds the whole exchange.

    Raises :class:`TransportError`: ``closed``, ``oversized``, ``malformed``, ``bad_hello``,
    ``wrong_version``, ``wrong_chain``, ``wrong_genesis``, ``unknown_peer``,
    ``reflected_nonce``, ``bad_auth``, ``bad_signature``; ``OSError`` from the socket.
    """
    peer, peer_nonce, peer_eph = _unverified_hello(await _read_handshake_frame(reader), chain=chain,
                                                   genesis_hash=genesis_hash)
    key = known_keys.get(peer)
    if key is None or peer == name:
        raise TransportError(f"no known node is called {peer!r}", code="unknown_peer")
    my_nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if peer_nonce == my_nonce:
        raise TransportError("the peer reflected our nonce", code="reflected_nonce")
    my_eph = X25519PrivateKey.generate() if eph is None else eph
    my_eph_pub = my_eph.public_key().public_bytes_raw()
    shared = _x25519(my_eph, peer_eph)
    await _write_frame(writer, hello_message(chain=chain, genesis_hash=genesis_hash, name=name, nonce=my_nonce,
                                             eph=my_eph_pub))
    transcript = {"chain": chain, "genesis_hash": genesis_hash, "initiator": peer, "initiator_nonce": peer_nonce,
                  "initiator_eph": peer_eph, "responder": name, "responder_nonce": my_nonce,
                  "responder_eph": my_eph_pub}
    peer_sig = _unverified_auth(await _read_handshake_frame(reader))
    alg, pub = key
    if not verify_handshake(alg, pub, peer_sig, role="initiator", **transcript):
        raise TransportError(f"{peer!r} did not prove its key", code="bad_signature", peer=peer)
    my_sig = sign_handshake(signer, role="responder", **transcript)
    await _write_frame(writer, auth_message(my_sig))
    from_peer, to_peer = session_keys(shared, transcript)
    return HandshakeResult(peer, peer, my_nonce, peer_nonce, my_sig, peer_sig, Channel(to_peer, from_peer))


# --- backoff -------------------------------------------------------------------------------


def backoff_delay(attempt: int, *, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before dial ``attempt`` (0-based): ``min(initial·2^attempt, max)`` × [0.5, 1.5)."""
    base = min(initial_s * (2 ** min(attempt, 62)), max_s)
    return base * (0.5 + rng.random())


# --- the transport -------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerInfo:
    """Where a configured peer listens."""

    name: str
    host: str
    port: int


class _Conn:
    """One authenticated connection and its reader and writer tasks."""

    __slots__ = ("channel", "closed", "established_at", "frame_deadline", "initiator", "peer", "reader",
                 "reader_task", "watchdog", "writer", "writer_task")

    def __init__(
        self, peer: str, initiator: str, channel: Channel, reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter, now: float,
    ) -> None:
        self.peer = peer
        self.initiator = initiator
        self.channel = channel
        self.reader = reader
        self.writer = writer
        self.established_at = now
        self.closed = False
        self.reader_task: asyncio.Task[None] | None = None
        self.writer_task: asyncio.Task[None] | None = None
        self.frame_deadline: float | None = None
        """Loop time by which the frame being read must be complete; ``None`` between frames."""
        self.watchdog: asyncio.TimerHandle | None = None
        """The timer that checks ``frame_deadline`` (see :meth:`Transport._check_stalled`)."""


class _Peer:
    """What the transport keeps about one peer across its connections."""

    __slots__ = ("address", "conn", "connected_since", "dial_task", "ever_connected", "last_seen", "lost", "queue",
                 "queued_bytes", "wake")

    def __init__(self, address: tuple[str, int] | None) -> None:
        self.address = address
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.lost = asyncio.Event()
        self.lost.set()
        self.conn: _Conn | None = None
        self.dial_task: asyncio.Task[None] | None = None
        self.ever_connected = False
        self.connected_since = 0.0
        self.last_seen: float | None = None


def _normalize_peers(
    peers: Mapping[str, tuple[str, int]] | Iterable[PeerInfo],
) -> dict[str, tuple[str, int]]:
    if isinstance(peers, Mapping):
        return {str(n): (str(a[0]), int(a[1])) for n, a in peers.items()}
    return {p.name: (p.host, p.port) for p in peers}


def _frame_complete_timeout_from_env() -> float:
    """:data:`FRAME_COMPLETE_TIMEOUT_S`, or the positive number of seconds in
    :data:`FRAME_COMPLETE_TIMEOUT_ENV` if that is set (an unusable value is logged and ignored)."""
    raw = os.environ.get(FRAME_COMPLETE_TIMEOUT_ENV, "").strip()
    if not raw:
        return FRAME_COMPLETE_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        log.warning("ignoring %s=%r: not a positive number of seconds", FRAME_COMPLETE_TIMEOUT_ENV, raw)
        return FRAME_COMPLETE_TIMEOUT_S
    return value


def _tune_socket(writer: asyncio.StreamWriter) -> None:
    """TCP keepalive, so a half-open connection to a vanished peer is noticed eventually."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, opt):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Reset the connection now, discarding anything unsent (for misbehaving peers)."""
    with contextlib.suppress(Exception):
        writer.transport.abort()


def _close_gracefully(writer: asyncio.StreamWriter) -> None:
    """Close after what is buffered has been sent (for duplicates of a healthy link), but
    reset it if that has not happened within ``_CLOSE_TIMEOUT_S``.

    asyncio keeps a closing socket open until its buffer drains, with no time limit: a
    peer that stops reading and reconnects again and again would otherwise leave one
    open descriptor (and its unsent frames) behind per connection.
    """
    with contextlib.suppress(Exception):
        writer.close()
    with contextlib.suppress(Exception):
        asyncio.get_running_loop().call_later(_CLOSE_TIMEOUT_S, _abort, writer)


class Transport:
    """Authenticated, framed, reconnecting connections from node ``me`` to its peers.

    Everything runs on one asyncio loop: call :meth:`start`, :meth:`send`,
    :meth:`broadcast`, :meth:`add_peer` and :meth:`close` from that loop (use
    :class:`TransportThread` from other threads).  :meth:`connected` and :attr:`stats`
    may be read from any thread.

    ``peers``: where to dial (name → ``(host, port)``, or :class:`PeerInfo` items).
    ``known_keys``: name → ``(alg, public_key)`` of every node allowed to connect,
    validators and observers alike; every dialled peer must be in it.  ``listen``:
    ``(host, port)`` to accept on (port 0 picks a free one, see :attr:`listen_address`),
    or ``None`` to only dial.  ``on_message(peer, msg)`` is called on the loop for every
    frame, in order per connection.  ``clock`` stamps :meth:`peer_status` and decides
    whether a lost connection had been stable (resetting the backoff).
    ``frame_complete_timeout_s``: how long the rest of a frame may take once its first
    byte has arrived (``None``: :data:`FRAME_COMPLETE_TIMEOUT_ENV` if set, else
    :data:`FRAME_COMPLETE_TIMEOUT_S`); a connection that misses it is closed and counted
    in ``dropped_stalled``.  Waiting for a frame to start has no deadline.

    Raises ``ValueError`` for an inconsistent configuration: a malformed key in
    ``known_keys``, a signer whose key is not the one ``known_keys`` holds for ``me``, a
    dialled peer without a known key, a genesis hash that is not 32 bytes, a
    ``frame_complete_timeout_s`` that is not a positive number.
    """

    def __init__(
        self,
        me: str,
        signer: Signer,
        peers: Mapping[str, tuple[str, int]] | Iterable[PeerInfo],
        known_keys: Mapping[str, tuple[str, bytes]],
        *,
        chain: str,
        genesis_hash: bytes,
        listen: tuple[str, int] | None,
        limits: Limits = DEFAULT_LIMITS,
        on_message: MessageHandler,
        clock: Callable[[], float] = time.monotonic,
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        frame_complete_timeout_s: float | None = None,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        max_queue_frames: int = DEFAULT_MAX_QUEUE_FRAMES,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        max_pending_handshakes: int = DEFAULT_MAX_PENDING_HANDSHAKES,
        rng: random.Random | None = None,
    ) -> None:
        if type(genesis_hash) is not bytes or len(genesis_hash) != HASH_SIZE:
            raise ValueError(f"genesis_hash must be {HASH_SIZE} bytes")
        if not me or len(me) > MAX_NAME_CHARS:
            raise ValueError("the node needs a short, non-empty name")
        keys: dict[str, tuple[str, bytes]] = {}
        for name, (alg, pub) in known_keys.items():
            try:
                check_public_key(alg, pub)
            except Rejected as exc:
                raise ValueError(f"known key of {name!r}: {exc.message}") from None
            keys[name] = (alg, bytes(pub))
        if me in keys and keys[me] != (signer.alg, bytes(signer.public_key)):
            raise ValueError(f"the signer's key is not the key known for {me!r}")
        dial = _normalize_peers(peers)
        for name in dial:
            if name == me:
                raise ValueError("a node cannot list itself as a peer")
            if name not in keys:
                raise ValueError(f"peer {name!r} has no known key")
        if min(max_queue_frames, max_queue_bytes, max_pending_handshakes) < 1:
            raise ValueError("queue and handshake bounds must be positive")
        if frame_complete_timeout_s is None:
            frame_complete_timeout_s = _frame_complete_timeout_from_env()
        elif not 0 < frame_complete_timeout_s < math.inf:
            raise ValueError("frame_complete_timeout_s must be a positive number of seconds")
        self.me = me
        self._signer = signer
        self._keys = keys
        self._chain = chain
        self._genesis_hash = genesis_hash
        self._listen = listen
        self._limits = limits
        self._max_frame = limits.max_message_bytes
        self._decode_limits = replace(limits, max_depth=limits.max_depth + FRAME_DEPTH_ALLOWANCE)
        self._on_message = on_message
        self._clock = clock
        self._hs_timeout = handshake_timeout_s
        self._frame_timeout = float(frame_complete_timeout_s)
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._max_queue_frames = max_queue_frames
        self._max_queue_bytes = max_queue_bytes
        self._max_pending = max_pending_handshakes
        self._rng = rng if rng is not None else random.Random()
        self._peers: dict[str, _Peer] = {n: _Peer(a) for n, a in dial.items()}
        self._stats_lock = threading.Lock()
        self._stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self._dial_failures: dict[str, dict[str, Any]] = {}
        """Per dialled peer, its last failed dial or handshake (``code``, ``message``, ``at``:
        wall-clock ms), until a link to it is up; read from any thread under ``_stats_lock``."""
        self._inbound_warned: dict[tuple[str, str], float] = {}
        """(claimed name, code) -> when a refused inbound handshake was last warned about."""
        self._connected: frozenset[str] = frozenset()
        self._server: asyncio.Server | None = None
        self._listen_address: tuple[str, int] | None = None
        self._pending = 0
        self._handshake_tasks: dict[asyncio.Task[Any], None] = {}
        """Inbound handshakes in progress, oldest first (see :meth:`_on_inbound`)."""
        self._started = False
        self._closing = False

    # -- observation (any thread) --

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters named in :data:`STAT_NAMES`."""
        with self._stats_lock:
            return dict(self._stats)

    def connected(self) -> set[str]:
        """Names of the peers with an authenticated connection right now."""
        return set(self._connected)

    def dial_failures(self) -> dict[str, dict[str, Any]]:
        """Per dialled peer not linked since, why the last dial to it failed: ``{"code",
        "message", "at"}`` (``at``: wall-clock ms).  Thread-safe."""
        with self._stats_lock:
            return {n: dict(f) for n, f in sorted(self._dial_failures.items())}

    def _inbound_refused(self, exc: TransportError) -> None:
        """Warn about a refused hello or key proof that *claims* a known node's name, for a
        reason retrying will not mend: that node is most likely misconfigured (or someone
        poses as it).  At most once per name and reason an hour, so strangers cannot flood
        the log (the names are the known ones only)."""
        claimed = exc.details.get("peer")
        if exc.code not in MISCONFIGURED or claimed not in self._keys or claimed == self.me:
            return
        now = time.monotonic()
        key = (claimed, exc.code)
        if now - self._inbound_warned.get(key, -_INBOUND_WARN_S) < _INBOUND_WARN_S:
            return
        self._inbound_warned[key] = now
        log.warning("%s: refused a connection from a node calling itself %s: %s (%s)", self.me, claimed,
                    exc.message, exc.code)

    def _dial_failed(self, name: str, code: str, message: str) -> None:
        """Remember why dialling ``name`` failed; warn once per peer and code for a failure
        that retrying will not mend (:data:`MISCONFIGURED`)."""
        with self._stats_lock:
            last = self._dial_failures.get(name)
            self._dial_failures[name] = {"code": code, "message": message, "at": int(time.time() * 1000)}
        if code in MISCONFIGURED and (last is None or last["code"] != code):
            log.warning("%s: cannot link to %s: %s (%s); dialling again with backoff", self.me, name, message, code)

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """The ``(host, port)`` actually listened on after :meth:`start` (``None`` before or if not listening)."""
        return self._listen_address

    def peers(self) -> list[PeerInfo]:
        """The peers this node dials, with their addresses."""
        return [PeerInfo(n, p.address[0], p.address[1]) for n, p in sorted(self._peers.items()) if p.address]

    def peer_status(self) -> dict[str, dict[str, Any]]:
        """Per peer: ``connected``, ``initiator`` (who dialled the live connection, or ``None``),
        ``address`` (``None`` if not dialled), ``queued`` frames, ``last_seen`` (clock value of
        its last frame, or ``None``).  Call on the loop thread."""
        out: dict[str, dict[str, Any]] = {}
        for name, p in sorted(self._peers.items()):
            out[name] = {
                "connected": p.conn is not None,
                "initiator": p.conn.initiator if p.conn is not None else None,
                "address": p.address,
                "queued": len(p.queue),
                "last_seen": p.last_seen,
            }
        return out

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[name] += n

    # -- sending --

    def encode(self, msg: Mapping[str, Any]) -> bytes:
        """The frame for ``msg`` under this transport's limit; thread-safe and pure.

        Raises :class:`TransportError` ``message_too_large`` over ``limits.max_message_bytes``
        and :class:`~ledger.errors.DecodeError` for a value with no canonical encoding.
        """
        return encode_frame(msg, max_bytes=self._max_frame)

    def check_peer(self, peer: str) -> None:
        """Raise ``RuntimeError`` unless ``peer`` is a known node other than this one."""
        if peer == self.me or peer not in self._keys:
            raise RuntimeError(f"cannot send to {peer!r}: not a known peer")

    def send(self, peer: str, msg: Mapping[str, Any]) -> None:
        """Queue ``msg`` for ``peer``; never blocks (loop thread only).

        The frame waits in the peer's bounded queue while it is not connected, and is
        delivered once it connects, unless newer frames pushed it out (counted in
        ``dropped_queue_full``).  Raises ``RuntimeError`` for an unknown peer or ``me``,
        and whatever :meth:`encode` raises.
        """
        self.check_peer(peer)
        self.send_frame(peer, self.encode(msg))

    def broadcast(self, msg: Mapping[str, Any]) -> None:
        """Queue ``msg`` (encoded once) for every peer this node dials or has been connected
        to; never blocks (loop thread only).  Raises what :meth:`encode` raises."""
        self.broadcast_frame(self.encode(msg))

    def send_frame(self, peer: str, frame: bytes) -> None:
        """Queue an already encoded frame (from :meth:`encode`) for ``peer`` (loop thread only)."""
        if self._closing:
            return
        p = self._peers.get(peer)
        if p is None:
            p = self._peers[peer] = _Peer(None)
        p.queue.append(frame)
        p.queued_bytes += len(frame)
        dropped = 0
        while len(p.queue) > 1 and (len(p.queue) > self._max_queue_frames or p.queued_bytes > self._max_queue_bytes):
            p.queued_bytes -= len(p.queue.popleft())
            dropped += 1
        if dropped:
            self._count("dropped_queue_full", dropped)
        p.wake.set()

    def broadcast_frame(self, frame: bytes) -> None:
        """Queue an already encoded frame for every peer :meth:`broadcast` reaches (loop thread only)."""
        for name in list(self._peers):
            self.send_frame(name, frame)

    # -- life cycle --

    async def start(self) -> None:
        """Listen (if configured) and start dialling every configured peer.

        Raises ``OSError`` if the listen address cannot be bound, ``RuntimeError`` if
        called twice or after :meth:`close`.
        """
        if self._started or self._closing:
            raise RuntimeError("a transport starts once")
        self._started = True
        if self._listen is not None:
            host, port = self._listen
            self._server = await asyncio.start_server(self._on_inbound, host, port, reuse_address=True)
            sockname = self._server.sockets[0].getsockname()
            self._listen_address = (str(sockname[0]), int(sockname[1]))
        for name, p in self._peers.items():
            if p.address is not None:
                p.dial_task = asyncio.create_task(self._dial_loop(name, p), name=f"dial {self.me}->{name}")

    def add_peer(self, name: str, host: str, port: int) -> None:
        """Dial ``name`` at ``(host, port)`` from now on (loop thread only); replaces an
        earlier address.  Raises ``RuntimeError`` unless ``name`` is a known peer."""
        self.check_peer(name)
        p = self._peers.get(name)
        if p is None:
            p = self._peers[name] = _Peer(None)
        p.address = (host, port)
        if self._started and not self._closing and p.dial_task is None:
            p.dial_task = asyncio.create_task(self._dial_loop(name, p), name=f"dial {self.me}->{name}")

    async def close(self) -> None:
        """Stop listening and dialling, close every connection; idempotent.  Frames still
        queued are discarded."""
        if self._closing:
            return
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks: list[asyncio.Task[Any]] = list(self._handshake_tasks)
        for p in self._peers.values():
            if p.dial_task is not None:
                tasks.append(p.dial_task)
            if p.conn is not None:
                conn = p.conn
                tasks.extend(t for t in (conn.reader_task, conn.writer_task) if t is not None)
                self._drop(conn)
        current = asyncio.current_task()
        tasks = [t for t in tasks if t is not current]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_S)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), _CLOSE_TIMEOUT_S)
        for p in self._peers.values():
            p.queue.clear()
            p.queued_bytes = 0
        self._connected = frozenset()

    # -- connections --

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._closing:
            self._count("handshake_failed")
            _abort(writer)
            return
        if self._pending >= self._max_pending:
            # Full of unfinished handshakes: end the oldest rather than refuse the newcomer.
            # Refusing would let anyone who merely opens ``max_pending`` idle connections
            # (and reopens them every ``handshake_timeout_s``) lock every peer out; an honest
            # handshake takes a few round trips, so evicting the oldest costs an attacker a
            # connection rate of ``max_pending`` per handshake time instead.
            oldest = next(iter(self._handshake_tasks), None)
            if oldest is None:
                self._count("handshake_failed")
                _abort(writer)
                return
            del self._handshake_tasks[oldest]
            self._count("handshake_failed")
            oldest.cancel()
        if task is not None:
            self._handshake_tasks[task] = None
        self._pending += 1
        try:
            _tune_socket(writer)
            async with asyncio.timeout(self._hs_timeout):
                res = await responder_handshake(
                    reader, writer, name=self.me, signer=self._signer, chain=self._chain,
                    genesis_hash=self._genesis_hash, known_keys=self._keys,
                )
        except asyncio.CancelledError:
            _abort(writer)
            raise
        except Exception as exc:  # anything a stranger can cause ends only this connection
            self._count("handshake_failed")
            log.debug("%s: inbound handshake failed: %r", self.me, exc)
            if isinstance(exc, TransportError):
                self._inbound_refused(exc)
            _abort(writer)
            return
        finally:
            self._pending -= 1
            if task is not None:
                self._handshake_tasks.pop(task, None)
        self._count("handshakes_ok")
        self._adopt(res, reader, writer)

    async def _dial_loop(self, name: str, p: _Peer) -> None:
        """Keep ``name`` connected until close: dial while it is not, wait while it is.

        Every wait before a dial is jittered backoff; it starts over only after a
        connection that stayed up ``backoff_max_s``, so a peer that accepts and then drops
        us at once is not dialled in a tight loop.
        """
        attempt = 0
        while not self._closing:
            if p.conn is None:
                if p.address is None:  # pragma: no cover - dial loops start only with an address
                    return
                if not await self._dial_once(name, p.address) or p.conn is None:
                    await asyncio.sleep(self._jitter(attempt))
                    attempt += 1
                    continue
            await p.lost.wait()
            if self._clock() - p.connected_since >= self._backoff_max:
                attempt = 0  # it had been stable: start over quickly
            await asyncio.sleep(self._jitter(attempt))
            attempt += 1

    def _jitter(self, attempt: int) -> float:
        return backoff_delay(attempt, initial_s=self._backoff_initial, max_s=self._backoff_max, rng=self._rng)

    async def _dial_once(self, name: str, address: tuple[str, int]) -> bool:
        """One dial and handshake; whether it ended with a connection to ``name`` in place."""
        try:
            async with asyncio.timeout(self._hs_timeout):
                reader, writer = await asyncio.open_connection(address[0], address[1])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._count("dial_failed")
            log.debug("%s: dialling %s at %s failed: %r", self.me, name, address, exc)
            self._dial_failed(name, "unreachable", f"{address[0]}:{address[1]}: {exc.strerror or exc!r}"
                              if isinstance(exc, OSError) else f"{address[0]}:{address[1]}: {exc!r}")
            return False
        try:
            _tune_socket(writer)
            async with asyncio.timeout(self._hs_timeout):
                res = await initiator_handshake(
                    reader, writer, name=self.me, signer=self._signer, chain=self._chain,
                    genesis_hash=self._genesis_hash, expected_peer=name, peer_key=self._keys[name],
                )
        except asyncio.CancelledError:
            _abort(writer)
            raise
        except Exception as exc:
            self._count("handshake_failed")
            log.debug("%s: outbound handshake with %s failed: %r", self.me, name, exc)
            _abort(writer)
            if isinstance(exc, TransportError) and exc.code == "closed":
                self._dial_failed(name, "refused_by_peer", "it closed the connection during the handshake: it is on "
                                  "another chain, genesis or transport version, or does not know this node's name "
                                  "or key (its log says which)")
            elif isinstance(exc, TransportError):
                self._dial_failed(name, exc.code, exc.message)
            elif isinstance(exc, TimeoutError):
                self._dial_failed(name, "handshake_timeout", f"no handshake within {self._hs_timeout:g} s")
            else:
                self._dial_failed(name, "handshake_failed", repr(exc))
            return False
        self._count("handshakes_ok")
        self._adopt(res, reader, writer)
        return True

    def _adopt(self, res: HandshakeResult, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Make an authenticated connection the peer's live one, or close it as a duplicate."""
        if self._closing:
            _abort(writer)
            return
        conn = _Conn(res.peer, res.initiator, res.channel, reader, writer, self._clock())
        p = self._peers.get(res.peer)
        if p is None:
            p = self._peers[res.peer] = _Peer(None)
        old = p.conn
        if old is not None:
            preferred = min(self.me, res.peer)
            if old.initiator == preferred and conn.initiator != preferred:
                self._count("duplicate_closed")
                log.debug("%s: keeping the connection %s dialled to %s", self.me, old.initiator, res.peer)
                _close_gracefully(writer)  # flush our auth first, so the peer does not count a failure
                return
            self._count("duplicate_closed")
            p.conn = None  # so that dropping the old one does not report the peer lost
            self._drop(old, graceful=True)
        if p.ever_connected and old is None:
            self._count("reconnects")
        p.ever_connected = True
        if old is None:
            p.connected_since = conn.established_at  # a replacement continues the same link
        p.conn = conn
        p.lost.clear()
        with self._stats_lock:
            self._dial_failures.pop(res.peer, None)  # linked, whoever dialled
        conn.reader_task = asyncio.create_task(self._read_loop(conn, p), name=f"read {self.me}<-{res.peer}")
        conn.writer_task = asyncio.create_task(self._write_loop(conn, p), name=f"write {self.me}->{res.peer}")
        self._refresh_connected()
        log.debug("%s: connected to %s (dialled by %s)", self.me, res.peer, res.initiator)

    def _drop(self, conn: _Conn, *, graceful: bool = False) -> None:
        """Close ``conn`` (reset it unless ``graceful``) and stop its tasks (not the calling one); idempotent."""
        if conn.closed:
            return
        conn.closed = True
        if conn.watchdog is not None:
            conn.watchdog.cancel()
            conn.watchdog = None
        current = asyncio.current_task()
        for t in (conn.reader_task, conn.writer_task):
            if t is not None and t is not current:
                t.cancel()
        if graceful:
            _close_gracefully(conn.writer)
        else:
            _abort(conn.writer)
        p = self._peers.get(conn.peer)
        if p is not None and p.conn is conn:
            p.conn = None
            p.lost.set()
            self._refresh_connected()

    def _refresh_connected(self) -> None:
        self._connected = frozenset(n for n, p in self._peers.items() if p.conn is not None)

    async def _read_loop(self, conn: _Conn, p: _Peer) -> None:
        loop = asyncio.get_running_loop()
        now, timeout = loop.time, self._frame_timeout

        def frame_started() -> None:
            # The first byte of a frame is in: the rest is due by the deadline.  The
            # watchdog is armed only if none is pending; it re-arms itself for a later
            # deadline, so a busy link costs one timer per ``timeout``, not one per frame.
            conn.frame_deadline = deadline = now() + timeout
            if conn.watchdog is None:
                conn.watchdog = loop.call_at(deadline, self._check_stalled, conn)

        try:
            while True:
                msg, size = await read_frame(
                    conn.reader, max_bytes=self._max_frame, limits=self._decode_limits, on_start=frame_started,
                    channel=conn.channel,
                )
                conn.frame_deadline = None  # between frames, and while delivering: no deadline
                with self._stats_lock:
                    self._stats["frames_in"] += 1
                    self._stats["bytes_in"] += size
                p.last_seen = self._clock()
                await self._deliver(conn.peer, msg)
        except asyncio.CancelledError:
            raise
        except TransportError as exc:
            if exc.code == "oversized":
                self._count("dropped_oversized")
            elif exc.code == "malformed":
                self._count("dropped_malformed")
            elif exc.code == "unauthenticated":
                self._count("dropped_unauthenticated")
            log.debug("%s: closing the connection with %s: %s (%s)", self.me, conn.peer, exc.message, exc.code)
        except Exception as exc:
            self._count("connection_errors")
            log.debug("%s: connection with %s failed: %r", self.me, conn.peer, exc)
        finally:
            self._drop(conn)

    def _check_stalled(self, conn: _Conn) -> None:
        """The watchdog of ``conn``: close it if the frame being read is past its deadline,
        wait for the deadline of a frame that is still in time, stop if it is between frames."""
        conn.watchdog = None
        deadline = conn.frame_deadline
        if conn.closed or deadline is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < deadline:
            conn.watchdog = loop.call_at(deadline, self._check_stalled, conn)
            return
        self._count("dropped_stalled")
        log.debug("%s: closing the connection with %s: a frame not complete within %.3g s",
                  self.me, conn.peer, self._frame_timeout)
        self._drop(conn)

    async def _deliver(self, peer: str, msg: dict[str, Any]) -> None:
        try:
            result = self._on_message(peer, msg)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:  # the handler's bug, not the peer's fault: keep the connection
            self._count("handler_errors")
            log.exception("%s: on_message failed for a frame from %s", self.me, peer)

    async def _write_loop(self, conn: _Conn, p: _Peer) -> None:
        try:
            while True:
                if not p.queue:
                    p.wake.clear()
                    await p.wake.wait()
                    continue
                batch: list[bytes] = []
                total = 0
                seal = conn.channel.seal
                while p.queue and len(batch) < _WRITE_BATCH_FRAMES and total < _WRITE_BATCH_BYTES:
                    frame = p.queue.popleft()
                    p.queued_bytes -= len(frame)
                    sealed = seal(frame)
                    batch.append(sealed)
                    total += len(sealed)
                conn.writer.writelines(batch)
                await conn.writer.drain()
                with self._stats_lock:
                    self._stats["frames_out"] += len(batch)
                    self._stats["bytes_out"] += total
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._count("connection_errors")
            log.debug("%s: writing to %s failed: %r", self.me, conn.peer, exc)
        finally:
            self._drop(conn)


# --- a thread-friendly wrapper --------------------------------------------------------------


class TransportThread:
    """A :class:`Transport` on its own event loop in a background thread.

    Takes exactly :class:`Transport`'s arguments.  ``on_message`` runs on the transport's
    loop thread: hand messages over to your own thread (e.g. through a ``queue.Queue``)
    and return quickly.  :meth:`send`, :meth:`broadcast`, :meth:`add_peer`,
    :meth:`connected`, :attr:`stats` and :meth:`close` are safe to call from any thread.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.transport = Transport(*args, **kwargs)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The transport's loop while it runs."""
        return self._loop

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """See :attr:`Transport.listen_address`."""
        return self.transport.listen_address

    @property
    def stats(self) -> dict[str, int]:
        """See :attr:`Transport.stats`."""
        return self.transport.stats

    def dial_failures(self) -> dict[str, dict[str, Any]]:
        """See :meth:`Transport.dial_failures`."""
        return self.transport.dial_failures()

    def connected(self) -> set[str]:
        """See :meth:`Transport.connected`."""
        return self.transport.connected()

    def start(self, timeout: float = 10.0) -> tuple[str, int] | None:
        """Start the loop thread and the transport; return :attr:`listen_address`.

        Raises what :meth:`Transport.start` raised (e.g. ``OSError`` when the port is
        taken), ``TimeoutError`` if it did not start within ``timeout`` seconds, and
        ``RuntimeError`` if called twice.
        """
        if self._thread is not None:
            raise RuntimeError("a transport thread starts once")
        self._thread = threading.Thread(target=self._run, name=f"transport-{self.transport.me}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the transport did not start in time")
        if self._error is not None:
            raise self._error
        return self.transport.listen_address

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); the thread must not die noisily
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("transport loop of %s ended with an error", self.transport.me)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.transport.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            await self.transport.close()
            return
        self._ready.set()
        await self._stop.wait()
        await self.transport.close()

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed under us: shutting down
            loop.call_soon_threadsafe(fn, *args)

    def send(self, peer: str, msg: Mapping[str, Any]) -> None:
        """Encode ``msg`` in the calling thread and queue it for ``peer``; never blocks.

        Silently does nothing once closed.  Raises like :meth:`Transport.send`.
        """
        self.transport.check_peer(peer)
        self._call(self.transport.send_frame, peer, self.transport.encode(msg))

    def broadcast(self, msg: Mapping[str, Any]) -> None:
        """Encode ``msg`` once in the calling thread and queue it for every peer; never blocks."""
        self._call(self.transport.broadcast_frame, self.transport.encode(msg))

    def add_peer(self, name: str, host: str, port: int) -> None:
        """See :meth:`Transport.add_peer`; raises ``RuntimeError`` for an unknown name."""
        self.transport.check_peer(name)
        self._call(self.transport.add_peer, name, host, port)

    def close(self, timeout: float = 10.0) -> None:
        """Close the transport and stop the loop thread; idempotent; waits up to ``timeout`` s."""
        if self._closed:
            return
        loop, stop = self._loop, self._stop
        self._closed = True
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
