"""A witness: follow one node's checkpoints over time and raise the alarm on a fork.

A witness keeps the last checkpoint it trusted — a block header with its commit
certificate, verified against genesis alone.  Each time it looks again it takes the
node's latest checkpoint, verifies that one the same way, and then demands proof that
the new log *extends* the trusted one: an RFC 9162 consistency proof from the trusted
``log_size`` to the new one, checked against the two ``log_root`` values the two
certified headers carry (never against roots the server sends beside the proof), and
the node's header at the trusted height, which must still hash to the trusted hash.

Outcomes (:func:`check_extension`):

* ``"unchanged"`` — the same checkpoint; ``"advanced"`` — a later one that provably
  extends the trusted log: the witness moves on to it;
* :class:`~verify.errors.ForkDetected` (``fork``) — two certified headers at one height,
  a history that no longer passes through the trusted header, or a log that cannot be
  shown to extend the trusted one (the server could not or would not prove it);
* :class:`~verify.errors.Rollback` (``rollback``) — the server's latest checkpoint is
  behind the trusted one.

A new checkpoint that does not itself verify against genesis raises
:class:`~verify.errors.BadCertificate` (or another verification error) and is simply
not trusted: that is a bad answer, not yet proof of a fork.

Pure: the command line (``lambtrace witness``) fetches and stores; this module decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import merkle
from ledger.blocks.certificate import CommitCertificate, verify_commit
from ledger.blocks.header import Header
from ledger.errors import InsufficientSignatures, Rejected, VerificationError
from ledger.genesis import Genesis

from .errors import BadCertificate, BadHeader, ChainMismatch, ForkDetected, InsufficientPower, Rollback

__all__ = ["STATE_FORMAT", "Checkpoint", "check_extension", "conflict_evidence", "verify_checkpoint"]

STATE_FORMAT = "lambtrace-witness/v1"


@dataclass(frozen=True)
class Checkpoint:
    """A header whose commit certificate verified against genesis."""

    header: Header
    certificate: CommitCertificate

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def log_size(self) -> int:
        return self.header.log_size

    @property
    def log_root(self) -> bytes:
        return self.header.log_root

    def to_dict(self) -> dict[str, Any]:
        """Values with real bytes (header, certificate, and the hash for people to read)."""
        return {"height": self.height, "hash": self.hash, "header": self.header.to_dict(),
                "certificate": self.certificate.to_dict()}


def verify_checkpoint(header: Any, certificate: Any, genesis: Genesis) -> Checkpoint:
    """Parse an untrusted header and certificate (maps with real bytes) and check that
    the certificate commits that header with more than 2/3 of genesis's voting power.

    Raises :class:`BadHeader`, :class:`ChainMismatch`, :class:`BadCertificate` or
    :class:`InsufficientPower`.
    """
    try:
        h = Header.from_dict(header)
    except Rejected as exc:
        raise BadHeader(f"the checkpoint header does not parse: {exc.message}") from None
    if h.chain != genesis.chain or h.validators != genesis.validators_hash:
        raise ChainMismatch("the checkpoint belongs to another chain or validator set", height=h.height)
    if h.height < 1 or h.time < genesis.time:
        raise BadHeader("a checkpoint is a committed block after genesis", height=h.height)
    try:
        cert = CommitCertificate.from_dict(certificate)
    except Rejected as exc:
        raise BadCertificate(f"the checkpoint certificate does not parse: {exc.message}", height=h.height) from None
    try:
        verify_commit(cert, genesis.chain, h.height, h.hash, genesis.validators)
    except InsufficientSignatures as exc:
        raise InsufficientPower(exc.message, height=h.height) from None
    except VerificationError as exc:
        raise BadCertificate(exc.message, height=h.height, cause=exc.code) from None
    return Checkpoint(h, cert)


def check_extension(
    trusted: Checkpoint,
    new: Checkpoint,
    proof: Sequence[bytes],
    *,
    served_at_trusted_height: bytes | None = None,
) -> str:
    """Whether ``new`` (verified) extends ``trusted`` (verified earlier).

    ``proof``: the RFC 9162 consistency proof from ``trusted.log_size`` to
    ``new.log_size`` as the server gave it (ignored when the sizes are equal).
    ``served_at_trusted_height``: the hash of the header the server now serves at
    ``trusted.height``, if asked for.

    Returns ``"unchanged"`` or ``"advanced"``.  Raises :class:`ForkDetected` or
    :class:`Rollback` (each names the trusted and the served height and hash).
    """
    where: Mapping[str, Any] = {
        "trusted_height": trusted.height, "trusted_hash": trusted.hash.hex(),
        "served_height": new.height, "served_hash": new.hash.hex(),
    }
    if served_at_trusted_height is not None and served_at_trusted_height != trusted.hash:
        raise ForkDetected(f"the server's block {trusted.height} is no longer the trusted one: history was "
                           "rewritten", **where)
    if new.height < trusted.height:
        raise Rollback(f"the server's latest block {new.height} is behind the trusted block {trusted.height}",
                       **where)
    if new.height == trusted.height:
        if new.hash != trusted.hash:
            raise ForkDetected(f"two different certified blocks at height {new.height}", **where)
        return "unchanged"
    if new.log_size < trusted.log_size:
        raise ForkDetected(f"the log shrank from {trusted.log_size} to {new.log_size} leaves", **where)
    if new.log_size == trusted.log_size:
        if new.log_root != trusted.log_root:
            raise ForkDetected("the same log size with a different root", **where)
        return "advanced"
    try:
        merkle.verify_consistency(trusted.log_size, new.log_size, proof, trusted.log_root, new.log_root)
    except VerificationError as exc:
        raise ForkDetected(f"the log of {new.log_size} leaves cannot be shown to extend the trusted "
                           f"{trusted.log_size}: {exc.message}", **where) from None
    return "advanced"


def conflict_evidence(a: Checkpoint, b: Checkpoint) -> dict[str, Any]:
    """What two different certified headers at one height say about who signed them.

    Each certificate holds precommits of more than 2/3 of the voting power, so more than
    1/3 signed both: ``signed_both`` names them.  In the same round that is proof: each of
    them signed two precommits for one height and round (``equivocation``).  In different
    rounds a validator may have moved on from a lock in good faith, so the names are where
    an inquiry starts, not a verdict.
    """
    if a.height != b.height or a.hash == b.hash:
        raise ValueError("evidence is about two different headers at one height")
    both = sorted({n for n, _s in a.certificate.precommits} & {n for n, _s in b.certificate.precommits})
    same_round = a.certificate.round == b.certificate.round
    return {"height": a.height, "hashes": sorted([a.hash.hex(), b.hash.hex()]),
            "rounds": sorted({a.certificate.round, b.certificate.round}), "signed_both": both,
            "equivocation": same_round and bool(both)}
