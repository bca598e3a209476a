"""Block headers and blocks (DESIGN §5).

A header commits to everything: the chain, its height and time, the previous header's
hash (the genesis hash for height 1), the RFC 9162 root over every leaf ever committed
(``log_root`` at ``log_size``), the validator set and the proposer.  The events of
block ``h`` are exactly the leaves ``[header(h-1).log_size, header(h).log_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import codec
from ..errors import DecodeError, Rejected
from ..hashing import TAG_HEADER, H

_FIELDS = {"chain", "height", "time", "prev", "log_size", "log_root", "validators", "proposer"}


@dataclass(frozen=True, slots=True)
class Header:
    chain: str
    height: int
    time: int
    prev: bytes
    log_size: int
    log_root: bytes
    validators: bytes
    proposer: str
    state_root: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "chain": self.chain,
            "height": self.height,
            "time": self.time,
            "prev": self.prev,
            "log_size": self.log_size,
            "log_root": self.log_root,
            "validators": self.validators,
            "proposer": self.proposer,
        }
        if self.state_root is not None:
            d["state_root"] = self.state_root
        return d

    def encode(self) -> bytes:
        return codec.encode(self.to_dict())

    @property
    def hash(self) -> bytes:
        return H(TAG_HEADER, self.encode())

    @classmethod
    def from_dict(cls, d: Any) -> Header:
        """Parse an untrusted header value; raises :class:`Rejected` (``bad_header``)."""
        if type(d) is not dict or not set(d) >= _FIELDS or not set(d) <= _FIELDS | {"state_root"}:
            raise Rejected("bad_header", "a header has exactly the fields of DESIGN §5")
        ok = (
            type(d["chain"]) is str
            and all(type(d[k]) is int and 0 <= d[k] < 2**63 for k in ("height", "time", "log_size"))
            and all(type(d[k]) is bytes and len(d[k]) == 32 for k in ("prev", "log_root", "validators"))
            and type(d["proposer"]) is str
            # absent, or 32 bytes: an explicit nil would decode to the header without it and so
            # give one header two encodings
            and ("state_root" not in d or (type(d["state_root"]) is bytes and len(d["state_root"]) == 32))
        )
        if not ok:
            raise Rejected("bad_header", "a header field has the wrong type or size")
        return cls(**d)

    @classmethod
    def decode(cls, data: bytes) -> Header:
        try:
            return cls.from_dict(codec.decode(data))
        except DecodeError as exc:
            raise Rejected("bad_header", exc.message) from exc
