"""Genesis: the chain's trust anchor (DESIGN §5).

Genesis names the chain, its start time, the validators (name, banner, node key,
power), the league trace office with its root keys, and the parameters every node
must agree on.  Its hash is the anchor for every proof.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import codec, schema
from .errors import Rejected
from .hashing import TAG_GENESIS, H, key_id
from .sigs import check_public_key

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Validator:
    name: str
    banner: str
    alg: str
    pub: bytes
    power: int = 1

    @property
    def key_id(self) -> str:
        return key_id(self.alg, self.pub)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "banner": self.banner, "alg": self.alg, "pub": self.pub, "power": self.power}


STATE_ROOT_KINDS = ("recalls/v1",)
"""The values ``params.state_root`` may take in a genesis document."""
FINGERPRINT_HEX = 32
"""A genesis fingerprint (the ``#g=`` of a label link) is the first 32 to 64 lowercase hex
characters of the genesis hash: at least 128 bits, since the consumer page trusts the
genesis a server sends it only as far as it matches. Labels carry 32."""
FINGERPRINT_MAX_HEX = 64


@dataclass(frozen=True)
class Params:
    """Parameters every node must agree on; all times in milliseconds."""

    slaughter_requires_hsm: bool = False
    max_lateness_ms: int = 30 * DAY_MS
    """How long after its own time an event (signed offline) may still be committed."""
    max_future_ms: int = 5 * 60_000
    """How far ahead of the block time an event's time may be."""
    tag_quotas: dict[str, int] = field(default_factory=dict)
    """Ear tags a banner may be issued per year; banners not named have no quota."""
    terminal_quotas: dict[str, int] = field(default_factory=dict)
    """Handheld terminals a banner may have in service (filed, not retired); banners not
    named have no quota.  Written into the genesis only when non-empty, so genesis files
    (and hashes) made before it existed stay as they were."""
    state_root: str = ""
    """What every header's ``state_root`` commits to: ``""`` nothing (no ``state_root``),
    ``"recalls/v1"`` the recall map (ledger/recallmap.py, docs/adr/0011).  Written into
    the genesis only when set, so genesis files (and hashes) made before it stay as they
    were."""
    block_interval_ms: int = 500
    timeout_propose_ms: int = 3_000
    timeout_prevote_ms: int = 1_000
    timeout_precommit_ms: int = 1_000
    timeout_delta_ms: int = 500

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "slaughter_requires_hsm": self.slaughter_requires_hsm,
            "max_lateness_ms": self.max_lateness_ms,
            "max_future_ms": self.max_future_ms,
            "tag_quotas": dict(self.tag_quotas),
            "block_interval_ms": self.block_interval_ms,
            "timeout_propose_ms": self.timeout_propose_ms,
            "timeout_prevote_ms": self.timeout_prevote_ms,
            "timeout_precommit_ms": self.timeout_precommit_ms,
            "timeout_delta_ms": self.timeout_delta_ms,
        }
        if self.terminal_quotas:
            out["terminal_quotas"] = dict(self.terminal_quotas)
        if self.state_root:
            out["state_root"] = self.state_root
        return out


@dataclass(frozen=True)
class Genesis:
    chain: str
    time: int
    validators: tuple[Validator, ...]
    trace_office: dict[str, Any]
    """``{id, banner, name, keys: [{alg, pub, storage}]}``: the root of membership."""
    params: Params = field(default_factory=Params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "time": self.time,
            "validators": [v.to_dict() for v in self.validators],
            "trace_office": self.trace_office,
            "params": self.params.to_dict(),
        }

    def encode(self) -> bytes:
        return codec.encode(self.to_dict())

    @property
    def hash(self) -> bytes:
        return H(TAG_GENESIS, self.encode())

    @property
    def validators_hash(self) -> bytes:
        """Hash of the validator set, as headers carry it."""
        return validators_hash(self.validators)

    def total_power(self) -> int:
        return sum(v.power for v in self.validators)

    def validator(self, name: str) -> Validator | None:
        for v in self.validators:
            if v.name == name:
                return v
        return None

    @classmethod
    def from_dict(cls, d: Any) -> Genesis:
        """Parse an untrusted genesis value; raises :class:`Rejected` (``bad_genesis``)."""
        try:
            return _parse(d)
        except Rejected:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Rejected("bad_genesis", f"genesis is malformed: {exc}") from exc

    @classmethod
    def decode(cls, data: bytes) -> Genesis:
        return cls.from_dict(codec.decode(data))


def validators_hash(validators: tuple[Validator, ...] | list[Validator]) -> bytes:
    return H(TAG_GENESIS, codec.encode({"validators": [v.to_dict() for v in validators]}))


MAX_VALIDATORS = 1024
"""Most validators a genesis may name: a commit certificate carries at most one precommit
from each (``MAX_PRECOMMITS``), and the browser's verifier holds the same bound."""
_VALIDATOR_FIELDS = {"name", "banner", "alg", "pub", "power"}
_SAFE_INT = 2**53
"""Times, parameters and quotas stay below this: the browser's verifier reads a genesis's
JSON numbers exactly only up to 2^53 (and no sane parameter comes near it)."""

_PARAM_INTS = (
    "max_lateness_ms",
    "max_future_ms",
    "block_interval_ms",
    "timeout_propose_ms",
    "timeout_prevote_ms",
    "timeout_precommit_ms",
    "timeout_delta_ms",
)


def _parse(d: Any) -> Genesis:
    if type(d) is not dict:
        raise Rejected("bad_genesis", "genesis must be a map")
    unknown = set(d) - {"chain", "time", "validators", "trace_office", "params"}
    if unknown:
        raise Rejected("bad_genesis", f"unknown genesis field {sorted(unknown)[0]}")
    chain = d["chain"]
    if type(chain) is not str or not schema.ID_RE.match(chain):
        raise Rejected("bad_genesis", "chain id must be a short id")
    if type(d["time"]) is not int or not 0 <= d["time"] < _SAFE_INT:
        raise Rejected("bad_genesis", "time must be milliseconds since the epoch")
    vals = []
    names = set()
    keys: dict[tuple[str, bytes], str] = {}
    if type(d["validators"]) is not list or len(d["validators"]) > MAX_VALIDATORS:
        raise Rejected("bad_genesis", f"validators must be a list of at most {MAX_VALIDATORS}")
    for v in d["validators"]:
        # exactly these fields: one left over would be dropped from the genesis hash without
        # a word here, and the browser's verifier refuses it
        if type(v) is not dict or set(v) != _VALIDATOR_FIELDS:
            raise Rejected("bad_genesis", f"a validator has exactly the fields {', '.join(sorted(_VALIDATOR_FIELDS))}")
        val = Validator(v["name"], v["banner"], v["alg"], v["pub"], v["power"])
        if type(val.name) is not str or not schema.ID_RE.match(val.name) or val.name in names:
            raise Rejected("bad_genesis", f"validator name {val.name!r} is not a unique id")
        if type(val.power) is not int or not 0 < val.power < 2**32:
            raise Rejected("bad_genesis", "validator power must be a positive integer")
        if type(val.banner) is not str or val.banner not in schema.COUNTIES:
            raise Rejected("bad_genesis", f"validator {val.name}'s banner must be a county code of the league")
        check_public_key(val.alg, val.pub)
        # one key for two validators would let whoever holds it speak (handshake, votes,
        # precommits) as both, a hidden double vote; a key file named twice is a mistake
        other = keys.get((val.alg, bytes(val.pub)))
        if other is not None:
            raise Rejected("bad_genesis", f"validators {other} and {val.name} have the same key")
        keys[(val.alg, bytes(val.pub))] = val.name
        names.add(val.name)
        vals.append(val)
    if not vals:
        raise Rejected("bad_genesis", "genesis needs at least one validator")
    to = d["trace_office"]
    schema.check(
        {
            "id": schema.Field("id"),
            "banner": schema.Field("county"),
            "name": schema.Field("str", required=False, max=128),
            "keys": schema.Field(
                "list",
                min=1,
                max=8,
                item=schema.Field(
                    "map",
                    fields={
                        "alg": schema.Field("enum", choices=("ed25519", "ecdsa-p256")),
                        "pub": schema.Field("bytes"),
                        "storage": schema.Field("enum", choices=("software", "hsm")),
                    },
                ),
            ),
        },
        to,
        "trace_office",
    )
    for k in to["keys"]:
        check_public_key(k["alg"], k["pub"])
    p = d["params"]
    if type(p) is not dict:
        raise Rejected("bad_genesis", "params must be a map")
    known = set(Params().to_dict()) | {"terminal_quotas", "state_root"}
    if set(p) - known:
        raise Rejected("bad_genesis", f"unknown parameter {sorted(set(p) - known)[0]}")
    kwargs: dict[str, Any] = {}
    for name in _PARAM_INTS:
        if name in p:
            if type(p[name]) is not int or not 0 <= p[name] < _SAFE_INT:
                raise Rejected("bad_genesis", f"{name} must be a non-negative integer")
            kwargs[name] = p[name]
    if "slaughter_requires_hsm" in p:
        if type(p["slaughter_requires_hsm"]) is not bool:
            raise Rejected("bad_genesis", "slaughter_requires_hsm must be true or false")
        kwargs["slaughter_requires_hsm"] = p["slaughter_requires_hsm"]
    if "tag_quotas" in p:
        q = p["tag_quotas"]
        if type(q) is not dict or any(
            k not in schema.COUNTIES or type(n) is not int or not 0 <= n < _SAFE_INT for k, n in q.items()
        ):
            raise Rejected("bad_genesis", "tag_quotas maps county codes to non-negative counts")
        kwargs["tag_quotas"] = dict(q)
    if "terminal_quotas" in p:
        q = p["terminal_quotas"]
        if type(q) is not dict or any(
            k not in schema.COUNTIES or type(n) is not int or not 0 <= n < _SAFE_INT for k, n in q.items()
        ):
            raise Rejected("bad_genesis", "terminal_quotas maps county codes to non-negative counts")
        kwargs["terminal_quotas"] = dict(q)
    if "state_root" in p:
        if p["state_root"] not in STATE_ROOT_KINDS:
            raise Rejected("bad_genesis", f"state_root must be one of {', '.join(STATE_ROOT_KINDS)}")
        kwargs["state_root"] = p["state_root"]
    return Genesis(
        chain=chain,
        time=d["time"],
        validators=tuple(vals),
        trace_office=codec.canonicalize(to),
        params=Params(**kwargs),
    )
