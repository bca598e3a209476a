"""Offline verification of a label proof bundle (docs/label-proof.md, docs/verify.md).

:func:`verify_label` takes an *untrusted* bundle and the genesis the caller trusts and
either returns a :class:`LabelReport` (the lamb's story, every part of it proven) or
raises a precise :class:`~ledger.errors.VerificationError` (see :mod:`verify.errors`).
It is pure: no network, no disk, no clock (``now_ms`` comes in as an argument).

The workflow, cheap checks first and attacker-sized work last (STYLE §4):

1. **Decode** the bundle (canonical msgpack, or JSON with lowercase hex) into
   ``_unverified_*`` values: a known ``format`` (:data:`FORMATS`: ``v3`` and ``v2``, which
   the prover emits on chains with and without a recall map, and the archived ``v1``),
   exact field sets, types, sizes, at most
   :data:`MAX_EVENTS` events, at most 64 proof hashes per event.  ``v3`` sends each
   event as a pair ``[index, leaf]``, its multiproof and recall-path hashes as one byte
   string each and its certificate without the height and block hash, which are the
   header's; a field in the other format's form is malformed.  ``gaps`` must be empty:
   a bundle whose builder could not find a part is not a proof.
2. **Anchor**: the bundle's ``genesis_hash`` is the hash of the trusted genesis, and
   an embedded genesis document (always in ``v1``, on request in ``v2``) is that
   genesis; the checkpoint header names genesis's chain and validator set; the
   certificate is for that header's hash and height and names known validators
   (unique, sorted) holding more than 2/3 of the power (signatures come later).
3. **Placement**: leaf indexes strictly ascending and below ``log_size``; the proof
   exactly as long as its shape demands (``v2``: one multiproof,
   :func:`ledger.merkle.multiproof_length`; ``v1``: one RFC 9162 inclusion proof per
   event); then it is folded to the checkpoint's ``log_root`` (hashing only).
4. **Parsing**: every leaf is a canonical signed event of this chain
   (:func:`ledger.events.parse_leaf`), no two alike, its time not before genesis nor
   beyond the checkpoint's clock.
5. **The story**: exactly one ``label.issue`` names the label; exactly one
   ``lamb.slaughter`` made its carcass, by the same plant; exactly one ``lamb.tag`` put
   that ear tag on a lamb; exactly one ``tags.issue`` range holds the tag and went to the
   tagger's cooperative (or banner office); custody runs unbroken from the tagger to the
   plant (each ``custody.ship`` by the holder, each received by its addressee, in log
   order); recalls of the lamb, carcass or label are noted.  ``v3``: the label's path
   in the recall map (``recalls``) leads from exactly those recalls (or none) to the
   checkpoint's ``state_root``, so none was left out (:mod:`ledger.recallmap`).
6. **Membership**: every signing key is a genesis root key of the trace office or was
   put on the ledger by an ``actor.enroll``, ``key.rotate`` or ``device.register`` in
   the bundle, earlier in the log, signed (transitively) by actors whose own enrolment
   is proven; each key belongs to the event's actor and was valid at the event's time
   (``not_before`` = its enrolment's time, ``not_after``, no revocation in the bundle at
   or before that time); each actor's proven role may sign the event's kind.
7. **Exactness**: the bundle holds exactly the events the story and its membership
   closure need, nothing missing and nothing extra.
8. **Signatures**, last: the commit certificate's precommits
   (:func:`ledger.blocks.certificate.verify_commit`), then every event signature.

What this proves, and what it cannot (revocations a server leaves out; before ``v3``,
recalls too), is in docs/adr/0005-label-verification.md and docs/adr/0011.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledger import codec, merkle, recallmap
from ledger.blocks.certificate import CommitCertificate, verify_commit
from ledger.blocks.header import Header
from ledger.errors import DecodeError, InsufficientSignatures, LedgerError, Rejected, VerificationError
from ledger.events import KINDS, SignedEvent, parse_leaf
from ledger.genesis import Genesis
from ledger.hashing import key_id
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.schema import COUNTIES, ID_RE
from ledger.sigs import verify_signature

from .errors import (
    ActorNotProven,
    BadCertificate,
    BadEvent,
    BadEventSignature,
    ChainMismatch,
    InclusionFailed,
    IncompleteBundle,
    InconsistentStory,
    InsufficientPower,
    KeyNotProven,
    KeyNotValidAtTime,
    MalformedBundle,
    MissingEvent,
    NotAuthorised,
    RecallsNotProven,
    StaleCheckpoint,
    UnexpectedEvent,
    UnsupportedFormat,
    WrongGenesis,
    WrongLabel,
)

__all__ = [
    "FORMAT",
    "FORMATS",
    "FORMAT_V1",
    "FORMAT_V2",
    "MAX_BUNDLE_BYTES",
    "MAX_EVENTS",
    "CustodyHop",
    "LabelReport",
    "Recall",
    "load_genesis_value",
    "verify_label",
]

FORMAT = "lambtrace-label-proof/v3"
"""The format the prover emits on chains with a recall map (api/proofs.py): v2 plus the
label's path in the recall map (``recalls``)."""
FORMAT_V2 = "lambtrace-label-proof/v2"
"""One multiproof, genesis by reference; what the prover emits on chains without a recall map."""
FORMAT_V1 = "lambtrace-label-proof/v1"
"""The first format: an inclusion proof per event and the genesis document embedded."""
FORMATS = (FORMAT, FORMAT_V2, FORMAT_V1)
"""Every format this verifier reads."""
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
"""Largest bundle accepted (bytes of msgpack or JSON), checked before parsing."""
MAX_EVENTS = 1024
"""Most events one bundle may hold (the builder's ``ProofOptions.max_events``)."""
MAX_PROOF_HASHES = 64
"""Most hashes on one inclusion path: enough for a log of 2^64 leaves."""

_FIELDS_V1 = frozenset({"format", "genesis_hash", "genesis", "label", "checkpoint", "events", "gaps"})
_EVENT_FIELDS_V1 = frozenset({"leaf", "index", "proof"})
_FIELDS_V2 = frozenset({"format", "genesis_hash", "label", "checkpoint", "events", "proof", "gaps"})
_FIELDS_V3 = _FIELDS_V2 | {"recalls"}
_OPTIONAL_V2 = frozenset({"genesis"})
_EVENT_FIELDS_V2 = frozenset({"leaf", "index"})
_HASH_TO_COME = bytes(32)
"""A v3 certificate's block hash until the header is hashed (it is the header's)."""
_MEMBERSHIP = ("actor.enroll", "key.rotate", "device.register", "actor.revoke")
_PATH = ("tags.issue", "lamb.tag", "custody.ship", "custody.receive", "lamb.slaughter", "label.issue", "recall")


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class CustodyHop:
    """One proven hand-over: a ``custody.ship`` and the ``custody.receive`` that ended it."""

    shipment: str
    from_actor: str
    to_actor: str
    shipped_at: int
    received_at: int
    ship_index: int
    receive_index: int


@dataclass(frozen=True)
class Recall:
    """A proven recall of the lamb, its carcass or this label."""

    target_type: str
    target_id: str
    at: int
    reason: str
    index: int


@dataclass(frozen=True)
class LabelReport:
    """The story a verified bundle proves, for display.  Every field comes from a signed,
    included, certified event; names are the organisations' names as enrolled."""

    label: str
    cut: str
    net_mass_g: int
    packed: str
    check_commitment: bytes
    labelled_at: int
    carcass: str
    carcass_mass_g: int
    slaughter_date: str
    quarantine_cert: str
    price_fen_per_kg: int
    market_price_fen_per_kg: int
    slaughtered_at: int
    plant: str
    plant_name: str
    plant_banner: str
    tag: str
    chip: str | None
    banner: str
    banner_name: str | None
    sumu: str
    born: str
    breed: str
    sex: str
    tagged_at: int
    tagged_by: str
    cooperative: str
    cooperative_name: str
    tag_range_first: str
    tag_range_count: int
    tag_range_to: str
    custody: tuple[CustodyHop, ...]
    recalls: tuple[Recall, ...]
    chain: str
    genesis_hash: bytes
    checkpoint_height: int
    checkpoint_time: int
    checkpoint_hash: bytes
    log_size: int
    events: int
    checkpoint_age_ms: int | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    """Kept in the report's form for its readers; no check of this version warns (a leaf
    signed after its actor's or key's revocation in the log is refused, as the rules do)."""
    recalls_complete: bool = False
    """v3: ``recalls`` are proven to be every recall of the lamb, carcass and label up to
    the checkpoint (the recall map); v1, v2: only that each one listed happened."""

    @property
    def recalled(self) -> bool:
        """Whether the bundle proves a recall of the lamb, its carcass or this label."""
        return bool(self.recalls)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (bytes as lowercase hex), with ``verified: true``."""
        out: dict[str, Any] = {"verified": True}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bytes):
                value = value.hex()
            elif name == "custody":
                value = [hop.__dict__.copy() for hop in value]
            elif name == "recalls":
                value = [r.__dict__.copy() for r in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        out["recalled"] = self.recalled
        return out


# --------------------------------------------------------------------------- untrusted values


@dataclass(frozen=True)
class _UnverifiedEntry:
    leaf: bytes
    index: int
    proof: tuple[bytes, ...]
    """v1: the entry's own inclusion proof; v2: empty (the bundle's multiproof)."""


@dataclass(frozen=True)
class _UnverifiedBundle:
    format: str
    genesis_hash: bytes
    has_genesis: bool
    genesis: Any
    label: str
    header: Header
    certificate: CommitCertificate
    """v3: with the header's height, and :data:`_HASH_TO_COME` for its block hash."""
    entries: tuple[_UnverifiedEntry, ...]
    multiproof: tuple[bytes, ...] | None
    """v2: the one multiproof of every entry's leaf; v1: ``None``."""
    recalls: recallmap.Proof | None = None
    """v3: the label's path in the recall map; v1, v2: ``None``."""


def _is_hex(text: str) -> bool:
    return len(text) % 2 == 0 and all(c in "0123456789abcdef" for c in text)


def _unhex(value: Any, what: str) -> Any:
    """Lowercase hex → bytes for a JSON bundle; other types are left for the shape check
    (which refuses them), except bytes, which a JSON bundle never holds."""
    if isinstance(value, bytes | bytearray | memoryview):
        raise MalformedBundle(f"{what}: a JSON bundle holds bytes as hex, not raw")
    if type(value) is str:
        if not _is_hex(value):
            raise MalformedBundle(f"{what} is not lowercase hex")
        return bytes.fromhex(value)
    return value


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise MalformedBundle(f"JSON object repeats the key {k!r}")
        out[k] = v
    return out


def _from_json_text(text: str | bytes) -> Any:
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_float=_refuse_float,
                           parse_int=_json_int, parse_constant=_refuse_float)
    except MalformedBundle:
        raise
    except (ValueError, RecursionError) as exc:
        raise MalformedBundle(f"bundle is not JSON: {exc}") from None
    return _json_to_values(value)


JSON_MAX_DEPTH = 64
"""How deep a JSON bundle may nest (a genuine one: 6); deeper is ``malformed_bundle``, as on
the consumer page, whatever the JSON reader could take."""
JSON_SAFE_INT = 2**53 - 1
"""A JSON bundle's integers lie within ±(2^53 − 1): what JSON numbers hold exactly in every
reader, the consumer page's included (so the two verifiers read one number alike)."""


def _json_bounds(value: Any) -> None:
    """A JSON bundle (text, or parsed by the caller) nests at most ``JSON_MAX_DEPTH`` deep
    and holds no number but integers within ±(2^53 − 1), as the consumer page reads it."""
    todo = [(value, 1)]
    while todo:
        v, depth = todo.pop()
        if type(v) is dict or type(v) is list:
            if depth > JSON_MAX_DEPTH:
                raise MalformedBundle(f"a JSON bundle is nested at most {JSON_MAX_DEPTH} deep")
            todo.extend((x, depth + 1) for x in (v.values() if type(v) is dict else v))
        elif type(v) is float or (type(v) is int and abs(v) > JSON_SAFE_INT):
            raise MalformedBundle("numbers in a JSON bundle are integers within ±(2^53 - 1)")


def _json_int(text: str) -> int:
    if len(text) > 17 or abs(n := int(text)) > JSON_SAFE_INT:
        raise MalformedBundle(f"numbers in a JSON bundle lie within ±(2^53 - 1), not {text[:40]}")
    return n


def _refuse_float(text: str) -> Any:
    raise MalformedBundle(f"numbers in a bundle are integers, not {text!r}")


def _json_to_values(value: Any) -> Any:
    """The JSON form of a bundle (bytes as lowercase hex) as values with real bytes.  A
    bundle of no format this verifier reads is left as it is: the shape check refuses it
    for its format first, as the consumer page does."""
    _json_bounds(value)
    if type(value) is not dict or value.get("format") not in FORMATS:
        return value
    out = dict(value)
    out["genesis_hash"] = _unhex(value.get("genesis_hash"), "genesis_hash")
    if "genesis" in value:
        out["genesis"] = _unhex_pubs(value["genesis"])
    cp = value.get("checkpoint")
    if type(cp) is dict:
        cp = dict(cp)
        hdr = cp.get("header")
        if type(hdr) is dict:
            hdr = dict(hdr)
            for k in ("prev", "log_root", "validators", "state_root"):
                if k in hdr:
                    hdr[k] = _unhex(hdr[k], f"header.{k}")
            cp["header"] = hdr
        cert = cp.get("certificate")
        if type(cert) is dict:
            cert = dict(cert)
            if "block" in cert:
                cert["block"] = _unhex(cert["block"], "certificate.block")
            pcs = cert.get("precommits")
            if type(pcs) is list:
                conv = []
                for p in pcs:
                    if type(p) is dict and "sig" in p:
                        p = {**p, "sig": _unhex(p["sig"], "precommit.sig")}
                    conv.append(p)
                cert["precommits"] = conv
            cp["certificate"] = cert
        out["checkpoint"] = cp
    evs = value.get("events")
    if type(evs) is list:
        conv_evs = []
        for e in evs:
            if type(e) is dict:
                e = dict(e)
                if "leaf" in e:
                    e["leaf"] = _unhex(e["leaf"], "event.leaf")
                if type(e.get("proof")) is list:
                    e["proof"] = [_unhex(h, "event.proof") for h in e["proof"]]
            elif type(e) is list and len(e) == 2:  # v3: [index, leaf]
                e = [e[0], _unhex(e[1], "event.leaf")]
            conv_evs.append(e)
        out["events"] = conv_evs
    if type(value.get("proof")) is list:
        out["proof"] = [_unhex(h, "proof") for h in value["proof"]]
    elif "proof" in value:
        out["proof"] = _unhex(value["proof"], "proof")
    rc = value.get("recalls")
    if type(rc) is dict:
        rc = dict(rc)
        for k in ("mask", "siblings", "other"):
            if k in rc:
                rc[k] = _unhex(rc[k], f"recalls.{k}")
        out["recalls"] = rc
    return out


def _unhex_pubs(v: Any) -> Any:
    """A JSON genesis map with its ``pub`` fields (the only bytes in genesis) as bytes."""
    if type(v) is dict:
        return {k: (_unhex(x, "genesis pub") if k == "pub" else _unhex_pubs(x)) for k, x in v.items()}
    if type(v) is list:
        return [_unhex_pubs(x) for x in v]
    return v


def _decode_bundle(bundle: Any, limits: Limits) -> Any:
    """Bytes (canonical msgpack or JSON text), text, or a parsed value → a value with bytes.

    Raises :class:`MalformedBundle` for anything that does not decode.
    """
    if isinstance(bundle, bytes | bytearray | memoryview):
        data = bytes(bundle)
        if len(data) > MAX_BUNDLE_BYTES:
            raise MalformedBundle(f"bundle is {len(data)} bytes; at most {MAX_BUNDLE_BYTES} are accepted")
        if data.lstrip(b" \t\r\n")[:1] == b"{":
            return _from_json_text(data)
        try:
            return codec.decode(data, limits, max_bytes=MAX_BUNDLE_BYTES)
        except DecodeError as exc:
            raise MalformedBundle(f"bundle is not canonical msgpack: {exc.message}", cause=exc.code) from None
    if isinstance(bundle, str):
        if len(bundle) > MAX_BUNDLE_BYTES:
            raise MalformedBundle("bundle text is too large")
        return _from_json_text(bundle)
    if type(bundle) is dict:
        if type(bundle.get("genesis_hash")) is str:
            return _json_to_values(bundle)
        return bundle
    raise MalformedBundle(f"a bundle is bytes, text or a map, not {type(bundle).__name__}")


def _unverified_bundle(value: Any, limits: Limits) -> _UnverifiedBundle:
    """Check the bundle's shape (format, fields, types, sizes) and parse header and
    certificate.

    Raises :class:`MalformedBundle`, :class:`UnsupportedFormat` or
    :class:`IncompleteBundle`; touches no hash or signature.
    """
    if type(value) is not dict:
        raise MalformedBundle("a bundle is a map")
    if "format" not in value:
        raise MalformedBundle("bundle fields: missing ['format']")
    fmt = value["format"]
    if type(fmt) is not str:
        raise MalformedBundle("format must be text")
    if fmt not in FORMATS:
        raise UnsupportedFormat(f"bundle format {fmt[:64]!r}; this verifier reads {', '.join(FORMATS)}")
    v1 = fmt == FORMAT_V1
    required, optional = {FORMAT_V1: (_FIELDS_V1, frozenset()), FORMAT_V2: (_FIELDS_V2, _OPTIONAL_V2),
                          FORMAT: (_FIELDS_V3, _OPTIONAL_V2)}[fmt]
    keys = set(value)
    if not required <= keys <= required | optional:
        extra, missing = sorted(keys - required - optional), sorted(required - keys)
        raise MalformedBundle(f"bundle fields: unknown {extra}, missing {missing}")
    gaps = value["gaps"]
    if type(gaps) is not list:
        raise MalformedBundle("gaps must be a list")
    if gaps:
        named = [f"{g.get('kind')} {g.get('subject')}" for g in gaps[:5] if type(g) is dict]
        raise IncompleteBundle(f"the bundle's builder left parts out: {'; '.join(map(str, named)) or gaps[:1]}")
    gh = value["genesis_hash"]
    if type(gh) is not bytes or len(gh) != 32:
        raise MalformedBundle("genesis_hash must be 32 bytes")
    label = value["label"]
    if type(label) is not str or not ID_RE.match(label):
        raise MalformedBundle("label must be a label id")
    cp = value["checkpoint"]
    if type(cp) is not dict or set(cp) != {"header", "certificate"}:
        raise MalformedBundle("checkpoint is a map of header and certificate")
    try:
        header = Header.from_dict(cp["header"])
    except Rejected as exc:
        raise MalformedBundle(f"checkpoint header: {exc.message}") from None
    cert_value = cp["certificate"]
    if fmt == FORMAT:
        # v3 leaves out the certificate's height and block hash: they are the header's
        # (the block hash is filled in once the header is hashed, at the anchor step)
        if type(cert_value) is not dict or set(cert_value) != {"round", "precommits"}:
            raise MalformedBundle("checkpoint certificate: a v3 certificate has exactly round and precommits")
        cert_value = {**cert_value, "height": header.height, "block": _HASH_TO_COME}
    try:
        cert = CommitCertificate.from_dict(cert_value)
    except Rejected as exc:
        raise MalformedBundle(f"checkpoint certificate: {exc.message}") from None
    evs = value["events"]
    if type(evs) is not list or not 0 < len(evs) <= MAX_EVENTS:
        raise MalformedBundle(f"events must be a list of 1 to {MAX_EVENTS} entries")
    entry_fields = _EVENT_FIELDS_V1 if v1 else _EVENT_FIELDS_V2
    entries = []
    for k, e in enumerate(evs):
        if fmt == FORMAT:  # v3: a pair [index, leaf]
            if type(e) is not list or len(e) != 2:
                raise MalformedBundle(f"events[{k}] must be a pair [index, leaf]")
            index, leaf = e
        elif type(e) is not dict or set(e) != entry_fields:
            raise MalformedBundle(f"events[{k}] must have exactly {', '.join(sorted(entry_fields))}")
        else:
            leaf, index = e["leaf"], e["index"]
        if type(leaf) is not bytes or not 0 < len(leaf) <= limits.max_event_bytes:
            raise MalformedBundle(f"events[{k}].leaf must be 1 to {limits.max_event_bytes} bytes")
        if type(index) is not int or index < 0:
            raise MalformedBundle(f"events[{k}].index must be a non-negative integer")
        proof = _hash_list(e["proof"], MAX_PROOF_HASHES, f"events[{k}].proof") if v1 else ()
        entries.append(_UnverifiedEntry(leaf, index, proof))
    if v1:
        multi = None
    elif fmt == FORMAT:
        multi = _hash_string(value["proof"], MAX_PROOF_HASHES * len(evs), "proof")
    else:
        multi = _hash_list(value["proof"], MAX_PROOF_HASHES * len(evs), "proof")
    has_genesis = "genesis" in value
    recalls = None
    if fmt == FORMAT:
        try:
            recalls = recallmap.proof_from_value(value["recalls"])
        except VerificationError as exc:
            raise MalformedBundle(exc.message) from None
    return _UnverifiedBundle(fmt, gh, has_genesis, value.get("genesis"), label, header, cert, tuple(entries), multi,
                             recalls)


def _hash_string(proof: Any, most: int, what: str) -> tuple[bytes, ...]:
    """v3's form of a list of hashes: one byte string, 32 bytes after 32 bytes."""
    if type(proof) is not bytes or len(proof) % merkle.HASH_SIZE or len(proof) > most * merkle.HASH_SIZE:
        raise MalformedBundle(f"{what} must be at most {most} 32-byte hashes, one after another")
    return tuple(merkle.split_hashes(proof))


def _hash_list(proof: Any, most: int, what: str) -> tuple[bytes, ...]:
    if type(proof) is not list or len(proof) > most:
        raise MalformedBundle(f"{what} must be a list of at most {most} hashes")
    for h in proof:
        if type(h) is not bytes or len(h) != merkle.HASH_SIZE:
            raise MalformedBundle(f"{what} holds a value that is not a 32-byte hash")
    return tuple(proof)


# --------------------------------------------------------------------------- genesis


def load_genesis_value(genesis: Genesis | bytes | str | Mapping[str, Any]) -> Genesis:
    """The trusted genesis from a :class:`Genesis`, its JSON file text (bytes as hex), its
    canonical msgpack bytes, or a parsed map (``pub`` as bytes or hex).

    Raises :class:`~ledger.errors.Rejected` (``bad_genesis``) when it does not parse: a
    bad trust anchor is the caller's error, not a failed verification.
    """
    if isinstance(genesis, Genesis):
        return genesis
    value: Any
    if isinstance(genesis, bytes | bytearray | memoryview):
        data = bytes(genesis)
        if data.lstrip()[:1] == b"{":
            genesis = data.decode("utf-8", "replace")
        else:
            try:
                value = codec.decode(data)
            except DecodeError as exc:
                raise Rejected("bad_genesis", f"genesis is neither JSON nor canonical msgpack: {exc.message}") from None
            return Genesis.from_dict(value)
    if isinstance(genesis, str):
        try:
            value = json.loads(genesis)
        except ValueError as exc:
            raise Rejected("bad_genesis", f"genesis is not valid JSON: {exc}") from None
    else:
        value = genesis
    return Genesis.from_dict(_genesis_pubs(value))


def _genesis_pubs(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: (bytes.fromhex(x) if k == "pub" and isinstance(x, str) and _is_hex(x.lower()) else _genesis_pubs(x))
                for k, x in v.items()}
    if isinstance(v, list):
        return [_genesis_pubs(x) for x in v]
    return v


# --------------------------------------------------------------------------- membership


@dataclass
class _Actor:
    id: str
    role: str
    banner: str
    name: str
    parent: str | None
    index: int
    """Leaf index of the enrolment; -1 for the genesis trace office."""
    revoked_at: int | None = None
    revoked_index: int | None = None


@dataclass
class _Key:
    kid: str
    alg: str
    pub: bytes
    storage: str
    actor: str
    device: str | None
    not_before: int
    not_after: int | None
    index: int
    """Leaf index of the event that put the key on the ledger; -1 for genesis keys."""
    revoked_at: int | None = None
    revoked_index: int | None = None


@dataclass
class _Members:
    root: str
    actors: dict[str, _Actor]
    keys: dict[str, _Key]
    enrol_index: dict[str, int]
    key_index: dict[str, int]
    revocations: dict[int, tuple[set[str], set[str]]]
    """Revoking event index → (actor ids, key ids) it revokes."""


def _members(g: Genesis, events: list[tuple[int, SignedEvent]]) -> _Members:
    """Actors and keys as the membership events in the bundle (and genesis) make them.

    Raises :class:`InconsistentStory` for what the rules could never have committed
    (an actor or a key enrolled twice, a revocation of an unknown actor or key).
    """
    to = g.trace_office
    root = _Actor(to["id"], "trace_office", to["banner"], to.get("name", ""), None, -1)
    actors = {root.id: root}
    keys: dict[str, _Key] = {}
    for k in to["keys"]:
        kid = key_id(k["alg"], k["pub"])
        keys[kid] = _Key(kid, k["alg"], k["pub"], k["storage"], root.id, None, g.time, None, -1)
    enrol_index: dict[str, int] = {}
    key_index: dict[str, int] = {}
    revocations: dict[int, tuple[set[str], set[str]]] = {}

    def add_key(rec: dict[str, Any], actor: str, device: str | None, index: int, ev: SignedEvent) -> None:
        kid = key_id(rec["alg"], rec["pub"])
        if kid in keys:
            raise InconsistentStory(f"key {kid} is put on the ledger twice", index=index, key=kid)
        keys[kid] = _Key(kid, rec["alg"], rec["pub"], rec["storage"], actor, device, ev.time,
                         rec.get("not_after"), index)
        key_index[kid] = index

    for index, ev in events:
        b = ev.body
        if ev.kind == "actor.enroll":
            if b["id"] in actors:
                raise InconsistentStory(f"actor {b['id']} is enrolled twice", index=index, actor=b["id"])
            actors[b["id"]] = _Actor(b["id"], b["role"], b["banner"], b.get("name", ""), b.get("parent"), index)
            enrol_index[b["id"]] = index
            for rec in b["keys"]:
                add_key(rec, b["id"], None, index, ev)
        elif ev.kind == "device.register":
            add_key(b["key"], b["owner"], b["device"], index, ev)
        elif ev.kind == "key.rotate":
            revoked: set[str] = set()
            for kid in b.get("revoke", []):
                k = keys.get(kid)
                if k is None:
                    continue  # a key the bundle does not prove signed nothing in it
                if k.actor != b["id"] or k.device is not None:
                    raise InconsistentStory(f"key.rotate revokes key {kid}, which is not a key of {b['id']}",
                                            index=index, key=kid)
                if k.revoked_at is None:
                    k.revoked_at, k.revoked_index = ev.time, index
                revoked.add(kid)
            for rec in b.get("add", []):
                add_key(rec, b["id"], None, index, ev)
            if revoked:
                revocations[index] = (set(), revoked)
        elif ev.kind == "actor.revoke":
            a = actors.get(b["id"])
            if a is None:
                raise ActorNotProven(f"actor.revoke of {b['id']}, whose enrolment is not in the bundle",
                                     index=index, actor=b["id"])
            if a.revoked_at is None:
                a.revoked_at, a.revoked_index = ev.time, index
            revocations[index] = ({b["id"]}, set())
    return _Members(root.id, actors, keys, enrol_index, key_index, revocations)


def _referenced_actors(ev: SignedEvent) -> list[str]:
    """Actors an event's rules look up besides its signer (as the builder includes them)."""
    b = ev.body
    if ev.kind in ("tags.issue", "custody.ship"):
        return [b["to"]]
    if ev.kind == "actor.enroll":
        return [b["parent"]] if b.get("parent") else []
    if ev.kind == "device.register":
        return [b["owner"]]
    if ev.kind in ("key.rotate", "actor.revoke"):
        return [b["id"]]
    return []


# --------------------------------------------------------------------------- the story


@dataclass
class _Story:
    indexes: set[int]
    tag_ev: tuple[int, SignedEvent]
    issue_ev: tuple[int, SignedEvent]
    slaughter_ev: tuple[int, SignedEvent]
    label_ev: tuple[int, SignedEvent]
    label_entry: dict[str, Any]
    custody: list[CustodyHop]
    recalls: list[Recall]


def _one(found: list[tuple[int, SignedEvent]], what: str, **details: Any) -> tuple[int, SignedEvent]:
    if not found:
        raise MissingEvent(f"the bundle has no {what}", **details)
    if len(found) > 1:
        raise InconsistentStory(f"the bundle has {len(found)} of {what}", indexes=[i for i, _ in found], **details)
    return found[0]


def _in_range(tag: str, first: str, count: int) -> bool:
    return tag[:7] == first[:7] and 0 <= int(tag[7:]) - int(first[7:]) < count


def _story(label: str, events: list[tuple[int, SignedEvent]]) -> _Story:
    """The one story of ``label`` the bundle's path events must tell (step 5).

    Raises :class:`MissingEvent` or :class:`InconsistentStory`.
    """
    by_kind: dict[str, list[tuple[int, SignedEvent]]] = {k: [] for k in KINDS}
    for item in events:
        by_kind[item[1].kind].append(item)

    li = _one([x for x in by_kind["label.issue"] if any(e["label"] == label for e in x[1].body["labels"])],
              f"label.issue naming label {label}", label=label)
    li_index, li_ev = li
    entry = next(e for e in li_ev.body["labels"] if e["label"] == label)
    carcass = li_ev.body["carcass"]
    plant = li_ev.actor
    sl_index, sl_ev = _one([x for x in by_kind["lamb.slaughter"] if x[1].body["carcass"] == carcass],
                           f"lamb.slaughter of carcass {carcass}", carcass=carcass)
    if sl_ev.actor != plant:
        raise InconsistentStory(f"carcass {carcass} was slaughtered by {sl_ev.actor}, labelled by {plant}",
                                index=li_index)
    if sl_index > li_index:
        raise InconsistentStory("the label was issued before its carcass existed", index=li_index)
    if sum(e["net_mass_g"] for e in li_ev.body["labels"]) > sl_ev.body["carcass_mass_g"]:
        raise InconsistentStory("labelled cuts weigh more than the carcass", index=li_index)
    tag = sl_ev.body["tag"]
    tg_index, tg_ev = _one([x for x in by_kind["lamb.tag"] if x[1].body["tag"] == tag],
                           f"lamb.tag of ear tag {tag}", tag=tag)
    if tg_index > sl_index:
        raise InconsistentStory("the lamb was slaughtered before it was tagged", index=sl_index)
    is_index, is_ev = _one(
        [x for x in by_kind["tags.issue"] if _in_range(tag, x[1].body["first"], x[1].body["count"])],
        f"tags.issue of a range holding ear tag {tag}", tag=tag,
    )
    if is_index > tg_index:
        raise InconsistentStory("the tag was applied before it was issued", index=tg_index)
    if is_ev.body["first"][1:7] != tag[1:7]:  # pragma: no cover - _in_range already compares the prefix
        raise InconsistentStory("the range is coded for another county", index=is_index)

    # custody: ship by the holder -> receive by the addressee -> ..., in log order
    ships = sorted(x for x in by_kind["custody.ship"] if tag in x[1].body["lambs"])
    receives: dict[str, list[tuple[int, SignedEvent]]] = {}
    for x in by_kind["custody.receive"]:
        receives.setdefault(x[1].body["shipment"], []).append(x)
    shipment_ids = [s[1].body["shipment"] for s in ships]
    if len(set(shipment_ids)) != len(shipment_ids):
        raise InconsistentStory("two shipments of this lamb share an id")
    holder, last = tg_ev.actor, tg_index
    hops: list[CustodyHop] = []
    for s_index, s_ev in ships:
        sid = s_ev.body["shipment"]
        if s_index < last:
            raise InconsistentStory(f"shipment {sid} is out of order in the custody chain", index=s_index)
        if s_ev.actor != holder:
            raise InconsistentStory(f"shipment {sid} was sent by {s_ev.actor}, but {holder} held the lamb",
                                    index=s_index)
        r_index, r_ev = _one(receives.get(sid, []), f"custody.receive of shipment {sid}", shipment=sid)
        if r_index < s_index:
            raise InconsistentStory(f"shipment {sid} was received before it was sent", index=r_index)
        if r_ev.actor != s_ev.body["to"]:
            raise InconsistentStory(f"shipment {sid} was received by {r_ev.actor}, not its addressee",
                                    index=r_index)
        hops.append(CustodyHop(sid, s_ev.actor, r_ev.actor, s_ev.time, r_ev.time, s_index, r_index))
        holder, last = r_ev.actor, r_index
    if sl_index < last:
        raise InconsistentStory("the lamb was slaughtered while still in custody elsewhere", index=sl_index)
    if holder != plant:
        raise InconsistentStory(f"the custody chain ends with {holder}, not with the plant {plant}",
                                index=sl_index)

    created = {"lamb": (tag, tg_index), "carcass": (carcass, sl_index), "label": (label, li_index)}
    recalls: list[Recall] = []
    recall_indexes: set[int] = set()
    for r_index, r_ev in by_kind["recall"]:
        for t in r_ev.body["targets"]:
            ident, made = created[t["type"]]
            if t["id"] != ident:
                continue
            if r_index < made:
                raise InconsistentStory(f"a recall of {t['type']} {ident} precedes its creation", index=r_index)
            recalls.append(Recall(t["type"], ident, r_ev.time, r_ev.body["reason"], r_index))
            recall_indexes.add(r_index)

    indexes = {li_index, sl_index, tg_index, is_index, *recall_indexes}
    for hop in hops:
        indexes.update((hop.ship_index, hop.receive_index))
    return _Story(indexes, (tg_index, tg_ev), (is_index, is_ev), (sl_index, sl_ev), li, entry, hops, recalls)


# --------------------------------------------------------------------------- verification


def verify_label(
    bundle: bytes | str | Mapping[str, Any],
    genesis: Genesis | bytes | str | Mapping[str, Any],
    *,
    now_ms: int | None = None,
    label: str | None = None,
    max_age_ms: int | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> LabelReport:
    """Verify every part of an untrusted label proof bundle against a trusted genesis.

    ``bundle``: canonical msgpack bytes (as ``GET /v1/labels/<label>/proof`` serves with
    ``Accept: application/msgpack``), the JSON text, or either form already parsed.
    ``genesis``: a :class:`Genesis`, its JSON text, canonical msgpack, or parsed map.
    ``label``: if given, the label the caller asked about (the bundle must be for it).
    ``now_ms``: the caller's clock, if it wants the checkpoint's age checked: a
    checkpoint later than ``now_ms`` plus genesis's ``max_future_ms`` fails, and with
    ``max_age_ms`` one older than that fails too.

    Returns a :class:`LabelReport` when every check of the module docstring passes.
    Raises a :class:`~ledger.errors.VerificationError` subclass from
    :mod:`verify.errors` otherwise (decode failures included: :class:`MalformedBundle`),
    and :class:`~ledger.errors.Rejected` (``bad_genesis``) if ``genesis`` itself does
    not parse.  Pure: no network, no disk, no clock.
    """
    g = load_genesis_value(genesis)
    try:
        return _verify(bundle, g, now_ms=now_ms, label=label, max_age_ms=max_age_ms, limits=limits)
    except VerificationError:
        raise
    except (LedgerError, KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError,
            OverflowError, UnicodeError) as exc:
        # Every untrusted value is shape-checked before use, so this is a safety net: an
        # input nobody foresaw still fails as a verification error, never as a crash.
        raise MalformedBundle(f"bundle does not hold together: {type(exc).__name__}: {exc}") from exc


def _verify(
    bundle: Any, g: Genesis, *, now_ms: int | None, label: str | None, max_age_ms: int | None, limits: Limits
) -> LabelReport:
    # 1. decode and shape
    b = _unverified_bundle(_decode_bundle(bundle, limits), limits)

    # 2. anchor
    if b.genesis_hash != g.hash:
        raise WrongGenesis(f"the bundle is anchored in genesis {b.genesis_hash.hex()}, "
                           f"not the trusted {g.hash.hex()}")
    if b.has_genesis:
        try:
            same_genesis = codec.encode(b.genesis) == g.encode()
        except DecodeError:
            same_genesis = False
        if not same_genesis:
            raise WrongGenesis("the genesis document in the bundle is not the trusted genesis")
    if label is not None and b.label != label:
        raise WrongLabel(f"the bundle is for label {b.label}, not {label}", label=b.label)
    header, cert = b.header, b.certificate
    if header.chain != g.chain:
        raise ChainMismatch(f"the checkpoint is of chain {header.chain!r}, not {g.chain!r}")
    if header.validators != g.validators_hash:
        raise ChainMismatch("the checkpoint names another validator set than genesis")
    if header.height < 1 or header.log_size < 1:
        raise BadCertificate("a checkpoint is a committed block (height and log size at least 1)")
    if header.time < g.time:
        raise BadCertificate("the checkpoint's time is before genesis")
    if g.validator(header.proposer) is None:
        raise BadCertificate(f"the checkpoint's proposer {header.proposer!r} is not a validator")
    if recallmap.enabled(g):
        if b.recalls is None:
            raise IncompleteBundle(f"this chain commits its recalls in every header; a {b.format} bundle "
                                   "cannot prove that no recall was left out")
        if header.state_root is None:
            raise BadCertificate("the checkpoint has no state_root, which this chain's genesis requires")
    else:
        if b.recalls is not None:
            raise MalformedBundle("a recall proof for a chain whose genesis defines no recall map")
        if header.state_root is not None:
            raise BadCertificate("the checkpoint carries a state_root, which this chain's genesis does not define")
    block_hash = header.hash
    if b.format == FORMAT:
        cert = dataclasses.replace(cert, block=block_hash)
    _check_certificate_shape(cert, g, header.height, block_hash)
    age: int | None = None
    if now_ms is not None:
        if header.time > now_ms + g.params.max_future_ms:
            raise StaleCheckpoint("the checkpoint's time is ahead of the verifier's clock", time=header.time)
        age = now_ms - header.time
        if max_age_ms is not None and age > max_age_ms:
            raise StaleCheckpoint(f"the checkpoint is {age} ms old; at most {max_age_ms} ms is accepted",
                                  time=header.time)

    # 3. placement: shapes first, then hashing
    size = header.log_size
    prev = -1
    for e in b.entries:
        if e.index <= prev:
            raise MalformedBundle("events must be in strictly ascending leaf order", index=e.index)
        prev = e.index
        if e.index >= size:
            raise InclusionFailed(f"leaf {e.index} is not below the checkpoint's log size {size}", index=e.index)
        if b.multiproof is None:
            want = merkle.inclusion_proof_length(e.index, size)
            if len(e.proof) != want:
                raise InclusionFailed(f"the proof of leaf {e.index} has {len(e.proof)} hashes, not {want}",
                                      index=e.index)
    if b.multiproof is not None:
        _check_multiproof(b.entries, b.multiproof, size, header.log_root)
    else:
        for e in b.entries:
            try:
                merkle.verify_inclusion(merkle.leaf_hash(e.leaf), e.index, size, e.proof, header.log_root)
            except VerificationError as exc:
                raise InclusionFailed(f"leaf {e.index} is not in the checkpoint's log: {exc.message}",
                                      index=e.index) from None

    # 4. parse every leaf
    events: list[tuple[int, SignedEvent]] = []
    ids: set[bytes] = set()
    latest = header.time + g.params.max_future_ms
    for e in b.entries:
        try:
            ev = parse_leaf(e.leaf, limits)
        except Rejected as exc:
            raise BadEvent(f"leaf {e.index} is not a well-formed signed event: {exc.message}",
                           index=e.index, cause=exc.code) from None
        if ev.leaf != e.leaf:  # pragma: no cover - parse_leaf accepts canonical bytes only
            raise BadEvent(f"leaf {e.index} is not canonical", index=e.index)
        if ev.chain != g.chain:
            raise BadEvent(f"leaf {e.index} is an event of chain {ev.chain!r}", index=e.index)
        if not g.time <= ev.time <= latest:
            raise BadEvent(f"leaf {e.index}'s time lies outside genesis..checkpoint", index=e.index)
        if ev.id in ids:
            raise BadEvent(f"leaf {e.index} repeats an event", index=e.index)
        ids.add(ev.id)
        events.append((e.index, ev))

    # 5. the story, 6. membership, 7. exactness
    story = _story(b.label, events)
    by_index = dict(events)
    if b.recalls is not None:
        _check_recalls(b, story, by_index)
    members = _members(g, [x for x in events if x[1].kind in _MEMBERSHIP])
    needed = _closure(story.indexes, by_index, members)
    extra = sorted(set(by_index) - needed)
    if extra:
        i = extra[0]
        raise UnexpectedEvent(f"leaf {i} ({by_index[i].kind}) is not part of this label's proof", index=i)
    for i in sorted(needed):
        _check_authorised(i, by_index[i], members, g)
    tagger = members.actors[story.tag_ev[1].actor]
    _check_tagger(story, members, tagger)

    # 8. signatures, last
    try:
        verify_commit(cert, g.chain, header.height, block_hash, g.validators)
    except InsufficientSignatures as exc:
        raise InsufficientPower(exc.message) from None
    except VerificationError as exc:
        raise BadCertificate(exc.message, cause=exc.code) from None
    for i, ev in events:
        msg = ev.signing_bytes()
        for kid, sig in ev.sigs:
            k = members.keys[kid]
            if not verify_signature(k.alg, k.pub, msg, sig):
                raise BadEventSignature(f"leaf {i}: the signature by key {kid} does not verify", index=i, key=kid)

    return _report(b, g, story, members, tagger, block_hash, len(events), age)


def _check_recalls(b: _UnverifiedBundle, story: _Story, by_index: Mapping[int, SignedEvent]) -> None:
    """v3: the story's recalls are all the label's recalls up to the checkpoint (its chain
    in the recall map, or its absence).  Raises :class:`RecallsNotProven`."""
    assert b.recalls is not None and b.header.state_root is not None
    indexes = sorted({r.index for r in story.recalls})
    value = recallmap.chain_of([by_index[i].leaf for i in indexes])
    try:
        recallmap.check_proof(b.recalls, b.label, value, b.header.state_root)
    except VerificationError as exc:
        what = f"{len(indexes)} recall(s)" if indexes else "no recall"
        raise RecallsNotProven(f"the recall map does not confirm that this label has {what}: {exc.message}",
                               cause=exc.code) from None


def _check_multiproof(entries: tuple[_UnverifiedEntry, ...], proof: tuple[bytes, ...], size: int,
                      root: bytes) -> None:
    """The v2 multiproof: exactly as many hashes as the entries' indexes (ascending,
    below ``size``: checked before) demand, then it must lead from their leaf hashes to
    ``root``.  Raises :class:`InclusionFailed`."""
    indexes = [e.index for e in entries]
    want = merkle.multiproof_length(indexes, size)
    if len(proof) != want:
        raise InclusionFailed(f"the multiproof has {len(proof)} hashes; these {len(indexes)} leaves need {want}")
    try:
        merkle.verify_multiproof({e.index: merkle.leaf_hash(e.leaf) for e in entries}, size, proof, root)
    except VerificationError as exc:
        raise InclusionFailed(f"the events are not in the checkpoint's log: {exc.message}") from None


def _check_certificate_shape(cert: CommitCertificate, g: Genesis, height: int, block_hash: bytes) -> None:
    """Everything about the certificate but its signatures.  Raises :class:`BadCertificate`
    or :class:`InsufficientPower`."""
    if cert.height != height:
        raise BadCertificate(f"the certificate is for height {cert.height}, the header is {height}")
    if cert.block != block_hash:
        raise BadCertificate("the certificate is for another block than the checkpoint header")
    names = [n for n, _ in cert.precommits]
    power = {v.name: v.power for v in g.validators}
    if any(n not in power for n in names):
        raise BadCertificate("the certificate names a validator genesis does not know")
    if names != sorted(set(names)):
        raise BadCertificate("certificate precommits must be sorted by validator, each once")
    signed = sum(power[n] for n in names)
    if 3 * signed <= 2 * g.total_power():
        raise InsufficientPower(f"precommits name {signed} of {g.total_power()} voting power; more than 2/3 needed")


def _closure(story: Iterable[int], events: dict[int, SignedEvent], m: _Members) -> set[int]:
    """Every leaf the story needs: the story's events, and transitively the enrolment of
    each actor they rely on and the event that put each signing key on the ledger, and
    the revocations in the bundle of those actors and keys.

    Raises :class:`ActorNotProven` or :class:`KeyNotProven` for what is missing.
    """
    needed: set[int] = set()
    actors: set[str] = set()
    keys: set[str] = set()
    # from the last leaf down, as verify.js walks it: where several parts are missing, both
    # name the same one first
    todo = sorted(story)
    while True:
        while todo:
            i = todo.pop()
            if i in needed:
                continue
            needed.add(i)
            ev = events[i]
            for aid in (ev.actor, *_referenced_actors(ev)):
                actors.add(aid)
                if aid == m.root:
                    continue
                j = m.enrol_index.get(aid)
                if j is None:
                    raise ActorNotProven(f"leaf {i} ({ev.kind}) relies on actor {aid}, whose enrolment is "
                                         "not in the bundle", index=i, actor=aid)
                todo.append(j)
            for kid, _sig in ev.sigs:
                k = m.keys.get(kid)
                if k is None:
                    raise KeyNotProven(f"leaf {i} is signed by key {kid}, which is neither a genesis key nor "
                                       "enrolled by an event in the bundle", index=i, key=kid)
                keys.add(kid)
                if k.index >= 0:
                    todo.append(k.index)
        for j, (r_actors, r_keys) in m.revocations.items():
            if j not in needed and (r_actors & actors or r_keys & keys):
                todo.append(j)
        if not todo:
            return needed


def _check_authorised(i: int, ev: SignedEvent, m: _Members, g: Genesis) -> None:
    """The proven actor may sign ``ev`` with the keys it names at the event's time, and
    neither it nor a key was revoked earlier in the log (the rules refuse anything from a
    revoked actor or key, even dated before the revocation: a stolen key must not sign
    backdated events).

    Raises :class:`NotAuthorised`, :class:`KeyNotProven`, :class:`KeyNotValidAtTime` or
    :class:`InconsistentStory`.
    """
    actor = m.actors[ev.actor]
    if actor.index >= i:
        raise KeyNotValidAtTime(f"leaf {i} is signed by {actor.id} before its enrolment", index=i)
    if actor.role not in KINDS[ev.kind].roles:
        raise NotAuthorised(f"a {actor.role} may not sign {ev.kind} (leaf {i})", index=i, actor=actor.id)
    if actor.revoked_at is not None and actor.revoked_at <= ev.time:
        raise KeyNotValidAtTime(f"leaf {i} is signed by {actor.id} after it was revoked", index=i)
    if actor.revoked_index is not None and actor.revoked_index < i:
        raise KeyNotValidAtTime(f"leaf {i} is signed by {actor.id}, revoked earlier in the log (leaf "
                                f"{actor.revoked_index})", index=i)
    for kid, _sig in ev.sigs:
        k = m.keys[kid]
        if k.actor != ev.actor:
            raise KeyNotProven(f"key {kid} belongs to {k.actor}, not to {ev.actor} (leaf {i})", index=i, key=kid)
        if k.index >= i:
            raise KeyNotValidAtTime(f"key {kid} came onto the ledger after leaf {i}", index=i, key=kid)
        if ev.time < k.not_before:
            raise KeyNotValidAtTime(f"key {kid} was not yet enrolled at leaf {i}'s time", index=i, key=kid)
        if k.not_after is not None and ev.time > k.not_after:
            raise KeyNotValidAtTime(f"key {kid} had expired at leaf {i}'s time", index=i, key=kid)
        if k.revoked_at is not None and k.revoked_at <= ev.time:
            raise KeyNotValidAtTime(f"key {kid} was revoked at leaf {i}'s time", index=i, key=kid)
        if k.revoked_index is not None and k.revoked_index < i:
            raise KeyNotValidAtTime(f"key {kid} was revoked earlier in the log (leaf {k.revoked_index}) than leaf {i}",
                                    index=i, key=kid)
        if ev.kind == "lamb.slaughter" and g.params.slaughter_requires_hsm and k.storage != "hsm":
            raise NotAuthorised(f"slaughter attestations must be signed with HSM keys (leaf {i})", index=i)
    for aid in _referenced_actors(ev):
        other = m.actors[aid]
        if other.index >= i:
            raise InconsistentStory(f"leaf {i} names actor {aid} before its enrolment", index=i, actor=aid)
        if other.revoked_index is not None and other.revoked_index < i and ev.kind != "actor.revoke":
            raise InconsistentStory(f"leaf {i} names actor {aid}, revoked earlier in the log", index=i, actor=aid)
    b = ev.body
    if ev.kind == "actor.enroll":
        parent = b.get("parent")
        if b["role"] == "herder_agent":
            p = m.actors.get(parent) if parent else None
            if p is None or p.role != "cooperative" or p.index >= i:
                raise InconsistentStory(f"herder agent {b['id']} needs an enrolled cooperative", index=i)
        elif parent is not None:
            raise InconsistentStory("only herder agents name a parent cooperative", index=i)
    elif ev.kind == "device.register":
        owner = m.actors[b["owner"]]
        if owner.index >= i or owner.role not in ("cooperative", "herder_agent", "plant", "banner_office"):
            raise InconsistentStory(f"terminal {b['device']} is filed for an unfit owner", index=i)
        if actor.role == "banner_office" and owner.banner != actor.banner:
            raise NotAuthorised("a banner office files terminals for its own banner only", index=i)
    elif ev.kind == "tags.issue":
        to = m.actors[b["to"]]
        if to.index >= i or to.role not in ("banner_office", "cooperative") or b["first"][1:7] != to.banner:
            raise InconsistentStory(f"ear tags {b['first']}.. went to an unfit recipient {to.id}", index=i)
    elif ev.kind == "custody.ship":
        to = m.actors[b["to"]]
        if to.id == ev.actor or to.index >= i or to.role not in ("herder_agent", "cooperative", "plant"):
            raise InconsistentStory(f"shipment {b['shipment']} goes to an unfit addressee", index=i)


def _check_tagger(story: _Story, m: _Members, tagger: _Actor) -> None:
    """The range went to the tagger's cooperative (or to its banner office)."""
    to = m.actors[story.issue_ev[1].body["to"]]
    # a cooperative's range: the cooperative or its herder agents; a banner office's
    # range: anyone tagging in that banner
    ok = to.id in (tagger.id, tagger.parent) if to.role == "cooperative" else tagger.banner == to.banner
    if not ok:
        raise InconsistentStory(
            f"ear tag {story.tag_ev[1].body['tag']} was issued to {to.id}, not to the tagger's cooperative or banner",
            index=story.tag_ev[0],
        )


def _report(
    b: _UnverifiedBundle,
    g: Genesis,
    story: _Story,
    m: _Members,
    tagger: _Actor,
    block_hash: bytes,
    n_events: int,
    age: int | None,
) -> LabelReport:
    li_ev = story.label_ev[1]
    sl_ev = story.slaughter_ev[1]
    tg_ev = story.tag_ev[1]
    is_ev = story.issue_ev[1]
    entry = story.label_entry
    coop_id = tagger.parent if tagger.role == "herder_agent" and tagger.parent else tagger.id
    coop = m.actors.get(coop_id)
    plant = m.actors[li_ev.actor]
    return LabelReport(
        label=b.label,
        cut=entry["cut"],
        net_mass_g=entry["net_mass_g"],
        packed=entry["packed"],
        check_commitment=entry["check"],
        labelled_at=li_ev.time,
        carcass=li_ev.body["carcass"],
        carcass_mass_g=sl_ev.body["carcass_mass_g"],
        slaughter_date=sl_ev.body["date"],
        quarantine_cert=sl_ev.body["quarantine_cert"],
        price_fen_per_kg=sl_ev.body["price_fen_per_kg"],
        market_price_fen_per_kg=sl_ev.body["market_price_fen_per_kg"],
        slaughtered_at=sl_ev.time,
        plant=plant.id,
        plant_name=plant.name,
        plant_banner=plant.banner,
        tag=tg_ev.body["tag"],
        chip=tg_ev.body.get("chip"),
        banner=tagger.banner,
        banner_name=COUNTIES.get(tagger.banner),
        sumu=tg_ev.body["sumu"],
        born=tg_ev.body["born"],
        breed=tg_ev.body["breed"],
        sex=tg_ev.body["sex"],
        tagged_at=tg_ev.time,
        tagged_by=tagger.id,
        cooperative=coop_id,
        cooperative_name=coop.name if coop else "",
        tag_range_first=is_ev.body["first"],
        tag_range_count=is_ev.body["count"],
        tag_range_to=is_ev.body["to"],
        custody=tuple(story.custody),
        recalls=tuple(story.recalls),
        chain=g.chain,
        genesis_hash=g.hash,
        checkpoint_height=b.header.height,
        checkpoint_time=b.header.time,
        checkpoint_hash=block_hash,
        log_size=b.header.log_size,
        events=n_events,
        checkpoint_age_ms=age,
        recalls_complete=b.recalls is not None,
    )
