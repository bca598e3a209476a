"""Precise verification errors: one class per way a bundle, a chain or a checkpoint fails.

Every class is a :class:`~ledger.errors.VerificationError` (so a
:class:`~ledger.errors.LedgerError`) with a stable snake_case ``code``; command lines
print ``error: <code>: <message>`` and reports carry the code, so scripts can rely on
it.  ``details`` (keyword arguments) say where: an event's leaf ``index``, a block
``height``, a ``key`` id, an ``actor``.

The codes, grouped by what they are about:

======================= ==============================================================
``malformed_bundle``    not canonical msgpack / JSON of the documented shape
``unsupported_format``  a bundle format this verifier does not know
``incomplete_bundle``   the builder itself says something is missing (``gaps``)
``wrong_label``         the bundle is for another label than the one asked about
``wrong_genesis``       the bundle (or chain) is anchored in another genesis
``chain_mismatch``      a header names another chain or another validator set
``bad_certificate``     a commit certificate is not for this header or a vote is bad
``insufficient_signatures`` the precommits hold 2/3 or less of the voting power
``stale_checkpoint``    the checkpoint is older than the caller accepts, or from the future
``inclusion_failed``    the events' multiproof (v1: an inclusion proof) does not lead to the checkpoint root
``bad_event``           a leaf is not a canonical, well-formed signed event of this chain
``bad_event_signature`` an event signature does not verify under its proven key
``key_not_proven``      a signing key's enrolment is neither in genesis nor in the bundle
``key_not_valid_at_time`` the key was not yet enrolled, expired or revoked when it signed
``actor_not_proven``    an actor's enrolment is missing from the bundle
``not_authorised``      the proven actor's role (or banner) may not sign that event
``inconsistent_story``  the events are not one story of one tag, carcass and label
``missing_event``       an event the story needs is not in the bundle
``unexpected_event``    the bundle holds an event the story does not need
======================= ==============================================================

Audit and witness codes (a chain replayed from genesis, a checkpoint followed over
time): ``bad_header``, ``broken_link``, ``log_mismatch``, ``store_mismatch``,
``rule_violation``, ``state_mismatch``, ``checkpoint_mismatch``, ``fork``,
``rollback``.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import InsufficientSignatures, VerificationError

__all__ = [
    "ActorNotProven",
    "BadCertificate",
    "BadEvent",
    "BadEventSignature",
    "BadHeader",
    "BrokenLink",
    "ChainMismatch",
    "CheckpointMismatch",
    "ForkDetected",
    "InclusionFailed",
    "IncompleteBundle",
    "InconsistentStory",
    "InsufficientPower",
    "KeyNotProven",
    "KeyNotValidAtTime",
    "LogMismatch",
    "MalformedBundle",
    "MissingEvent",
    "NotAuthorised",
    "RecallsNotProven",
    "Rollback",
    "RuleViolation",
    "StaleCheckpoint",
    "StateMismatch",
    "StoreMismatch",
    "UnexpectedEvent",
    "UnsupportedFormat",
    "VerificationError",
    "WrongGenesis",
    "WrongLabel",
]


class _Precise(VerificationError):
    """Base of this module's errors: ``code`` is fixed by the class."""

    code = "verification_failed"

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message, **details)


# -- a label bundle ---------------------------------------------------------------------


class MalformedBundle(_Precise):
    """Not canonical msgpack (or JSON) of the documented bundle shape."""

    code = "malformed_bundle"


class UnsupportedFormat(_Precise):
    """The bundle's ``format`` is not one this verifier knows."""

    code = "unsupported_format"


class IncompleteBundle(_Precise):
    """The bundle names gaps: its builder could not find everything the proof needs."""

    code = "incomplete_bundle"


class WrongLabel(_Precise):
    """The bundle proves another label than the one asked about."""

    code = "wrong_label"


class WrongGenesis(_Precise):
    """Anchored in another genesis than the one trusted."""

    code = "wrong_genesis"


class ChainMismatch(_Precise):
    """A header names another chain id or another validator set than genesis."""

    code = "chain_mismatch"


class BadCertificate(_Precise):
    """A commit certificate is not for this header, names unknown or repeated
    validators, or carries a precommit signature that does not verify."""

    code = "bad_certificate"


class InsufficientPower(BadCertificate, InsufficientSignatures):
    """The valid precommits hold 2/3 or less of the voting power."""

    code = "insufficient_signatures"


class StaleCheckpoint(_Precise):
    """The checkpoint is older than the caller accepts, or later than its clock allows."""

    code = "stale_checkpoint"


class InclusionFailed(_Precise):
    """The bundle's multiproof (v2), or an event's RFC 9162 inclusion proof (v1), has the
    wrong length, names an index beyond the log, or leads to another root."""

    code = "inclusion_failed"


class RecallsNotProven(_Precise):
    """v3: the label's path in the recall map (``recalls``) is not the canonical proof, or
    does not lead from the bundle's recalls of the label (or their absence) to the
    checkpoint's ``state_root``: the server left a recall out, or added one."""

    code = "recalls_not_proven"


class BadEvent(_Precise):
    """A leaf is not a canonical, well-formed signed event of this chain and time."""

    code = "bad_event"


class BadEventSignature(_Precise):
    """An event signature does not verify under the key it names."""

    code = "bad_event_signature"


class KeyNotProven(_Precise):
    """A signing key is neither a genesis root key nor enrolled by an event in the bundle,
    or it belongs to another actor than the event's."""

    code = "key_not_proven"


class KeyNotValidAtTime(_Precise):
    """The key was not yet enrolled, had expired, or was revoked at the event's time."""

    code = "key_not_valid_at_time"


class ActorNotProven(_Precise):
    """An actor the story relies on has no enrolment in the bundle (nor in genesis)."""

    code = "actor_not_proven"


class NotAuthorised(_Precise):
    """The proven role (or banner) of the signing actor may not sign that event."""

    code = "not_authorised"


class InconsistentStory(_Precise):
    """The events do not tell one story of one tag, carcass and label."""

    code = "inconsistent_story"


class MissingEvent(_Precise):
    """An event the story needs is not in the bundle."""

    code = "missing_event"


class UnexpectedEvent(_Precise):
    """The bundle holds an event the story does not need (anything extra fails)."""

    code = "unexpected_event"


# -- a chain (audit) and checkpoints over time (witness) -------------------------------------


class BadHeader(_Precise):
    """A block header (or certificate) does not decode, or has the wrong height or time."""

    code = "bad_header"


class BrokenLink(_Precise):
    """A header's ``prev`` is not the hash of the header before it (or of genesis)."""

    code = "broken_link"


class LogMismatch(_Precise):
    """A header's ``log_size`` or ``log_root`` differs from the one its leaves give."""

    code = "log_mismatch"


class StoreMismatch(_Precise):
    """The node's own records (Merkle nodes, event index) disagree with its log."""

    code = "store_mismatch"


class RuleViolation(_Precise):
    """A committed event that the rules refuse (``rule`` is the rules' code)."""

    code = "rule_violation"


class StateMismatch(_Precise):
    """The state replayed from genesis differs from the state the node holds."""

    code = "state_mismatch"


class CheckpointMismatch(_Precise):
    """The chain does not pass through a checkpoint the caller trusts."""

    code = "checkpoint_mismatch"


class ForkDetected(_Precise):
    """Two certified checkpoints that cannot both be on one append-only chain."""

    code = "fork"


class Rollback(_Precise):
    """The server's latest checkpoint is behind one it served (and we trusted) before."""

    code = "rollback"
