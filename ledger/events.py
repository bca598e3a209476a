"""Events: envelopes, kinds, signing and parsing (DESIGN §4).

An envelope is ``{v, chain, kind, actor, time, body}``; a signed event is
``{"event": envelope, "sigs": [{"key": key_id, "sig": bytes}]}``.  Signatures cover
``lambtrace/event/v1 || 0x00 || canonical(envelope)`` and the event id is
``H(lambtrace/event/v1, canonical(envelope))``, so an id never depends on signatures.

Untrusted events are parsed with :func:`parse_unverified` (structure and schema only)
into a :class:`SignedEvent`; signatures and the rules are checked by
:mod:`ledger.rules` against state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import codec, schema
from .errors import DecodeError, Rejected
from .hashing import TAG_EVENT, H, signing_message
from .limits import DEFAULT_LIMITS, Limits
from .schema import Field

if TYPE_CHECKING:  # pragma: no cover
    from signer import Signer

VERSION = 1
ROLES = ("trace_office", "banner_office", "cooperative", "herder_agent", "plant", "regulator")
ALGS = ("ed25519", "ecdsa-p256")
STORAGES = ("software", "hsm")

_KEY = Field(
    "map",
    fields={
        "alg": Field("enum", choices=ALGS),
        "pub": Field("bytes", doc="ed25519: 32 bytes; ecdsa-p256: 33-byte compressed SEC1 point"),
        "storage": Field("enum", choices=STORAGES),
        "not_after": Field("int", required=False, min=0, doc="key expires after this instant (ms)"),
    },
)
_ID = Field("id")
_MASS_G = Field("int", min=1, max=200_000)
_PRICE = Field("int", min=0, max=100_000_00)


@dataclass(frozen=True)
class Kind:
    """What an event kind carries, who may sign it, and its EPCIS business step."""

    name: str
    roles: tuple[str, ...]
    body: dict[str, Field]
    biz_step: str = ""
    doc: str = ""


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind(
            "actor.enroll",
            ("trace_office",),
            {
                "id": _ID,
                "role": Field("enum", choices=ROLES),
                "banner": Field("county"),
                "name": Field("str", required=False, max=128, doc="organisation name (never a person's)"),
                "parent": Field("id", required=False, doc="a herder agent's cooperative"),
                "keys": Field("list", min=1, max=4, item=_KEY),
            },
            doc="enrol an actor with its role, banner and keys",
        ),
        Kind(
            "actor.revoke",
            ("trace_office",),
            {"id": _ID, "reason": Field("str", max=256)},
            doc="revoke an actor: its keys sign nothing more",
        ),
        Kind(
            "key.rotate",
            ("trace_office",),
            {
                "id": _ID,
                "add": Field("list", required=False, max=4, item=_KEY),
                "revoke": Field("list", required=False, max=8, item=Field("str", max=32)),
            },
            doc="add keys to an actor and/or revoke some of its keys",
        ),
        Kind(
            "device.register",
            ("trace_office", "banner_office"),
            {
                "device": _ID,
                "owner": _ID,
                "key": _KEY,
                "model": Field("str", required=False, max=64),
            },
            doc="file a handheld terminal and its key; its signatures count for its owner",
        ),
        Kind(
            "device.retire",
            ("trace_office", "banner_office"),
            {"device": _ID, "reason": Field("str", min=1, max=256)},
            doc="retire a (lost or broken) terminal: its key signs nothing more",
        ),
        Kind(
            "tags.issue",
            ("trace_office",),
            {
                "to": _ID,
                "first": Field("tag"),
                "count": Field("int", min=1, max=100_000),
                "year": Field("int", min=2000, max=2100),
            },
            biz_step="commissioning",
            doc="issue a range of ear tags to a banner office or cooperative against its yearly quota",
        ),
        Kind(
            "lamb.tag",
            ("herder_agent", "cooperative"),
            {
                "tag": Field("tag"),
                "chip": Field("chip", required=False),
                "herder": Field("id", doc="pseudonymous herder id issued by the cooperative"),
                "born": Field("date"),
                "breed": Field("str", max=64),
                "sex": Field("enum", choices=("male", "female")),
                "sumu": Field("str", max=64, doc="sumu (township) of the pasture"),
            },
            biz_step="commissioning",
            doc="apply an issued ear tag to a lamb",
        ),
        Kind(
            "custody.ship",
            ("herder_agent", "cooperative", "plant"),
            {"shipment": _ID, "to": _ID, "lambs": Field("list", min=1, item=Field("tag"))},
            biz_step="shipping",
            doc="hand lambs the actor holds to another actor",
        ),
        Kind(
            "custody.receive",
            ("herder_agent", "cooperative", "plant"),
            {"shipment": _ID},
            biz_step="receiving",
            doc="take custody of a shipment addressed to the actor",
        ),
        Kind(
            "lamb.slaughter",
            ("plant",),
            {
                "tag": Field("tag"),
                "carcass": _ID,
                "carcass_mass_g": _MASS_G,
                "quarantine_cert": Field("str", min=1, max=64),
                "price_fen_per_kg": _PRICE,
                "market_price_fen_per_kg": _PRICE,
                "date": Field("date"),
            },
            biz_step="killing",
            doc="slaughter attestation, signed with the plant's (HSM) key",
        ),
        Kind(
            "label.issue",
            ("plant",),
            {
                "carcass": _ID,
                "labels": Field(
                    "list",
                    min=1,
                    max=64,
                    item=Field(
                        "map",
                        fields={
                            "label": _ID,
                            "cut": Field("str", min=1, max=64),
                            "net_mass_g": _MASS_G,
                            "packed": Field("date"),
                            "check": Field("bytes", size=32, doc="salted hash of the scratch-off check code"),
                        },
                    ),
                ),
            },
            biz_step="packing",
            doc="labels for cuts of a carcass",
        ),
        Kind(
            "recall",
            ("trace_office",),
            {
                "targets": Field(
                    "list",
                    min=1,
                    item=Field(
                        "map",
                        fields={"type": Field("enum", choices=("lamb", "carcass", "label")), "id": Field("str")},
                    ),
                ),
                "reason": Field("str", min=1, max=256),
            },
            doc="mark lambs, carcasses or labels recalled",
        ),
    ]
}


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """A structurally valid signed event; its signatures are NOT yet verified."""

    envelope: dict[str, Any]
    sigs: tuple[tuple[str, bytes], ...]
    id: bytes
    envelope_bytes: bytes
    leaf: bytes

    @property
    def kind(self) -> str:
        return str(self.envelope["kind"])

    @property
    def actor(self) -> str:
        return str(self.envelope["actor"])

    @property
    def time(self) -> int:
        return int(self.envelope["time"])

    @property
    def chain(self) -> str:
        return str(self.envelope["chain"])

    @property
    def body(self) -> dict[str, Any]:
        return self.envelope["body"]

    def signing_bytes(self) -> bytes:
        return signing_message(TAG_EVENT, self.envelope_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.envelope, "sigs": [{"key": k, "sig": s} for k, s in self.sigs]}


def envelope(chain: str, kind: str, actor: str, time_ms: int, body: dict[str, Any]) -> dict[str, Any]:
    """A new envelope (not yet checked)."""
    return {"v": VERSION, "chain": chain, "kind": kind, "actor": actor, "time": time_ms, "body": body}


def event_id(env: dict[str, Any]) -> bytes:
    return H(TAG_EVENT, codec.encode(env))


def sign(env: dict[str, Any], *signers: Signer) -> dict[str, Any]:
    """A signed event ``{"event": env, "sigs": [...]}`` with one signature per signer."""
    if not signers:
        raise RuntimeError("sign() needs at least one signer")
    msg = signing_message(TAG_EVENT, codec.encode(env))
    return {"event": codec.canonicalize(env), "sigs": [{"key": s.key_id, "sig": s.sign(msg)} for s in signers]}


_ENVELOPE_KEYS = {"v", "chain", "kind", "actor", "time", "body"}


def parse_unverified(value: Any, limits: Limits = DEFAULT_LIMITS, *, presorted: bool = False,
                     leaf: bytes | None = None) -> SignedEvent:
    """Check the structure and body schema of an untrusted signed event value.

    Raises :class:`Rejected` with ``malformed``, ``bad_version``, ``unknown_kind``,
    ``unknown_field``, ``missing_field``, ``bad_field``, ``missing_signature`` or
    ``too_large``.  Cheap checks only: no signature is verified here.  ``presorted`` says
    the value came out of :func:`ledger.codec.decode` (so it is already canonical and its
    bytes need no re-sorting); ``leaf``, with ``presorted``, the canonical bytes it was
    decoded from (so they need not be encoded again).
    """
    if type(value) is not dict or set(value) != {"event", "sigs"}:
        raise Rejected("malformed", 'a signed event is a map with exactly "event" and "sigs"')
    env, sigs = value["event"], value["sigs"]
    if type(env) is not dict:
        raise Rejected("malformed", "event must be a map")
    extra = set(env) - _ENVELOPE_KEYS
    if extra:
        raise Rejected("unknown_field", f"unknown envelope field {sorted(extra)[0]}", field=sorted(extra)[0])
    missing = _ENVELOPE_KEYS - set(env)
    if missing:
        raise Rejected("missing_field", f"envelope field {sorted(missing)[0]} is required")
    if env["v"] != VERSION or type(env["v"]) is not int:
        raise Rejected("bad_version", f"envelope version must be {VERSION}")
    for name in ("chain", "kind", "actor"):
        if type(env[name]) is not str or not 0 < len(env[name]) <= 64:
            raise Rejected("bad_field", f"event.{name} must be a short string", field=f"event.{name}")
    if type(env["time"]) is not int or not 0 <= env["time"] < 2**53:
        raise Rejected("bad_field", "event.time must be milliseconds since the epoch", field="event.time")
    kind = KINDS.get(env["kind"])
    if kind is None:
        raise Rejected("unknown_kind", f"unknown event kind {env['kind']!r}")
    schema.check(kind.body, env["body"], "body", limits)
    if type(sigs) is not list or not sigs:
        raise Rejected("missing_signature", "an event needs at least one signature")
    if len(sigs) > limits.max_sigs_per_event:
        raise Rejected("bad_field", f"at most {limits.max_sigs_per_event} signatures", field="sigs")
    parsed: list[tuple[str, bytes]] = []
    for s in sigs:
        if type(s) is not dict or set(s) != {"key", "sig"}:
            raise Rejected("malformed", 'a signature is a map with exactly "key" and "sig"')
        if type(s["key"]) is not str or len(s["key"]) != 32 or type(s["sig"]) is not bytes:
            raise Rejected("bad_field", "sig.key is a 32-char hex key id and sig.sig bytes", field="sigs")
        if len(s["sig"]) != 64:
            raise Rejected("bad_signature", "signatures are 64 bytes")
        parsed.append((s["key"], s["sig"]))
    if len({k for k, _ in parsed}) != len(parsed):
        raise Rejected("bad_field", "a key signs an event once", field="sigs")
    try:
        if presorted:
            env_bytes = codec.encode_canonical_value(env)
            if leaf is None:
                leaf = codec.encode_canonical_value(value)
        else:
            env = codec.canonicalize(env)
            env_bytes = codec.encode(env)
            leaf = codec.encode(value)
    except DecodeError as exc:
        raise Rejected("non_canonical", exc.message) from exc
    if len(leaf) > limits.max_event_bytes:
        raise Rejected("too_large", f"event is {len(leaf)} bytes, the limit is {limits.max_event_bytes}")
    return SignedEvent(
        envelope=env,
        sigs=tuple(parsed),
        id=H(TAG_EVENT, env_bytes),
        envelope_bytes=env_bytes,
        leaf=leaf,
    )


def parse_leaf(leaf: bytes, limits: Limits = DEFAULT_LIMITS) -> SignedEvent:
    """Parse canonical leaf bytes (from the log or the wire) into a :class:`SignedEvent`."""
    try:
        value = codec.decode(leaf, limits, max_bytes=limits.max_event_bytes)
    except DecodeError as exc:
        raise Rejected(exc.code, exc.message) from exc
    return parse_unverified(value, limits, presorted=True, leaf=bytes(leaf))


def from_json(value: Any) -> Any:
    """Convert a JSON signed event (bytes as hex) to a value; structure is checked later."""
    if type(value) is not dict:
        return value
    out = dict(value)
    env = value.get("event")
    if type(env) is dict:
        env = dict(env)
        kind = KINDS.get(env.get("kind")) if type(env.get("kind")) is str else None  # type: ignore[arg-type]
        if kind is not None and "body" in env:
            env["body"] = schema.from_json(kind.body, env["body"])
        out["event"] = env
    sigs = value.get("sigs")
    if type(sigs) is list:
        conv = []
        for s in sigs:
            if type(s) is dict and type(s.get("sig")) is str:
                s = dict(s)
                s["sig"] = schema.from_json(Field("bytes"), s["sig"], "sigs.sig")
            conv.append(s)
        out["sigs"] = conv
    return out


def to_json(signed: dict[str, Any] | SignedEvent) -> Any:
    """JSON form of a signed event (bytes as lowercase hex)."""
    if isinstance(signed, SignedEvent):
        signed = signed.to_dict()
    return schema.to_json(signed)


def ids_in(events: Sequence[SignedEvent]) -> list[str]:
    return [e.id.hex() for e in events]
