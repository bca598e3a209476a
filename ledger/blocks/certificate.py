"""Votes and commit certificates (DESIGN §5).

A vote signs ``canonical({type, chain, height, round, block})`` under the vote tag.
A commit certificate carries the precommits of validators holding more than 2/3 of
the voting power for one block hash.  :func:`verify_commit` raises;
:func:`commit_tally` reports and never raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import codec
from ..errors import InsufficientSignatures, Rejected, VerificationError
from ..genesis import MAX_VALIDATORS, Validator
from ..hashing import TAG_VOTE, signing_message
from ..sigs import verify_signature

if TYPE_CHECKING:  # pragma: no cover
    from signer import Signer

VOTE_TYPES = ("prevote", "precommit")
MAX_PRECOMMITS = MAX_VALIDATORS
"""Most precommits one certificate may carry: one per validator (the browser's verifier holds
the same bound)."""


def vote_bytes(vote_type: str, chain: str, height: int, round_: int, block: bytes | None) -> bytes:
    """The exact bytes a validator signs for a vote (``block`` None is a nil vote)."""
    if vote_type not in VOTE_TYPES:
        raise RuntimeError(f"unknown vote type {vote_type}")
    body = {"type": vote_type, "chain": chain, "height": height, "round": round_, "block": block}
    return signing_message(TAG_VOTE, codec.encode(body))


@dataclass(frozen=True)
class CommitCertificate:
    height: int
    round: int
    block: bytes
    precommits: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)
    """``(validator name, signature)`` pairs, sorted by name."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "round": self.round,
            "block": self.block,
            "precommits": [{"validator": n, "sig": s} for n, s in self.precommits],
        }

    def encode(self) -> bytes:
        return codec.encode(self.to_dict())

    def quorum(self, validators: Sequence[Validator]) -> CommitCertificate:
        """The same certificate cut to its first precommits (by name) that hold more than
        2/3 of the voting power: what a proof needs, without the surplus a healthy
        network's certificates carry.  Unchanged when no prefix reaches the quorum (a
        certificate that would not verify stays as it is, for the verifier to refuse)."""
        power = {v.name: v.power for v in validators}
        total = sum(power.values())
        held = 0
        for k, (name, _sig) in enumerate(self.precommits):
            held += power.get(name, 0)
            if 3 * held > 2 * total:
                return CommitCertificate(self.height, self.round, self.block, self.precommits[: k + 1])
        return self

    @classmethod
    def from_dict(cls, d: Any) -> CommitCertificate:
        """Parse an untrusted certificate value; raises :class:`Rejected` (``bad_certificate``)."""
        if type(d) is not dict or set(d) != {"height", "round", "block", "precommits"}:
            raise Rejected("bad_certificate", "a certificate has height, round, block and precommits")
        if not (
            type(d["height"]) is int
            and type(d["round"]) is int
            and 0 <= d["height"] < 2**63
            and 0 <= d["round"] < 2**31
            and type(d["block"]) is bytes
            and len(d["block"]) == 32
            and type(d["precommits"]) is list
            and len(d["precommits"]) <= MAX_PRECOMMITS
        ):
            raise Rejected("bad_certificate", "certificate fields have the wrong type or size")
        pcs = []
        for p in d["precommits"]:
            if type(p) is not dict or set(p) != {"validator", "sig"}:
                raise Rejected("bad_certificate", "a precommit has validator and sig")
            if type(p["validator"]) is not str or type(p["sig"]) is not bytes or len(p["sig"]) != 64:
                raise Rejected("bad_certificate", "a precommit has a validator name and a 64-byte sig")
            pcs.append((p["validator"], p["sig"]))
        return cls(d["height"], d["round"], d["block"], tuple(pcs))


def sign_commit(
    chain: str, height: int, round_: int, block: bytes, signers: Sequence[tuple[str, Signer]]
) -> CommitCertificate:
    """A certificate signed by the given ``(validator name, signer)`` pairs."""
    msg = vote_bytes("precommit", chain, height, round_, block)
    pcs = sorted((name, s.sign(msg)) for name, s in signers)
    return CommitCertificate(height, round_, block, tuple(pcs))


@dataclass(frozen=True)
class Tally:
    signed: tuple[str, ...]
    missing: tuple[str, ...]
    invalid: tuple[str, ...]
    power: int
    total: int

    @property
    def committed(self) -> bool:
        return 3 * self.power > 2 * self.total


def commit_tally(
    cert: CommitCertificate, chain: str, validators: Sequence[Validator]
) -> Tally:
    """Count the valid precommits in ``cert``; never raises."""
    by_name = {v.name: v for v in validators}
    msg = vote_bytes("precommit", chain, cert.height, cert.round, cert.block)
    signed: list[str] = []
    invalid: list[str] = []
    seen: set[str] = set()
    power = 0
    for name, sig in cert.precommits:
        v = by_name.get(name)
        if v is None or name in seen or not verify_signature(v.alg, v.pub, msg, sig):
            invalid.append(name)
            continue
        seen.add(name)
        signed.append(name)
        power += v.power
    missing = tuple(n for n in by_name if n not in seen)
    return Tally(tuple(signed), missing, tuple(invalid), power, sum(v.power for v in validators))


def verify_commit(
    cert: CommitCertificate, chain: str, height: int, block_hash: bytes, validators: Sequence[Validator]
) -> None:
    """Raise unless ``cert`` commits ``block_hash`` at ``height`` with > 2/3 of the power.

    Cheap checks (height, block hash, names out of order, repeated or unknown) come before any
    signature.  Raises :class:`VerificationError` or :class:`InsufficientSignatures`.
    """
    if cert.height != height:
        raise VerificationError(f"certificate is for height {cert.height}, not {height}", code="wrong_height")
    if cert.block != block_hash:
        raise VerificationError("certificate is for another block", code="wrong_block")
    names = [n for n, _ in cert.precommits]
    known = {v.name for v in validators}
    if names != sorted(set(names)) or not set(names) <= known:
        # sorted, each once: the one form every certificate is made in (sign_commit, a
        # decision), and the only one the audit and the label verifiers accept
        raise VerificationError("certificate names a validator twice, out of order or an unknown one",
                                code="bad_certificate")
    tally = commit_tally(cert, chain, validators)
    if tally.invalid:
        raise VerificationError(f"bad precommit signature from {tally.invalid[0]}", code="bad_signature")
    if not tally.committed:
        raise InsufficientSignatures(
            f"precommits hold {tally.power} of {tally.total} voting power; more than 2/3 is needed"
        )
