"""Offline verification of what a node serves (label bundles, audits, witnesses)."""

from ledger.errors import BadSignature, InsufficientSignatures, ProofError, RootMismatch, VerificationError

__all__ = ["BadSignature", "InsufficientSignatures", "ProofError", "RootMismatch", "VerificationError"]
