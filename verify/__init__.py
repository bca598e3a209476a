"""Offline verification of what a node serves (label bundles, audits, witnesses).

* :func:`verify_label` checks a label proof bundle against genesis alone and returns a
  :class:`LabelReport` (docs/verify.md, docs/adr/0005-label-verification.md).
* :mod:`verify.audit` replays a whole chain from genesis (``lambtrace audit``).
* :mod:`verify.witness` follows a node's checkpoints over time (``lambtrace witness``).

Every failure is a :class:`VerificationError` with a precise subclass and a stable code
(:mod:`verify.errors`).  Pure: no network, no disk, no clock.
"""

from ledger.errors import BadSignature, InsufficientSignatures, ProofError, RootMismatch, VerificationError

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
    StaleCheckpoint,
    UnexpectedEvent,
    UnsupportedFormat,
    WrongGenesis,
    WrongLabel,
)
from .label import FORMAT, FORMAT_V1, FORMATS, CustodyHop, LabelReport, Recall, load_genesis_value, verify_label

__all__ = [
    "FORMAT",
    "FORMATS",
    "FORMAT_V1",
    "ActorNotProven",
    "BadCertificate",
    "BadEvent",
    "BadEventSignature",
    "BadSignature",
    "ChainMismatch",
    "CustodyHop",
    "InclusionFailed",
    "IncompleteBundle",
    "InconsistentStory",
    "InsufficientPower",
    "InsufficientSignatures",
    "KeyNotProven",
    "KeyNotValidAtTime",
    "LabelReport",
    "MalformedBundle",
    "MissingEvent",
    "NotAuthorised",
    "ProofError",
    "Recall",
    "RootMismatch",
    "StaleCheckpoint",
    "UnexpectedEvent",
    "UnsupportedFormat",
    "VerificationError",
    "WrongGenesis",
    "WrongLabel",
    "load_genesis_value",
    "verify_label",
]
