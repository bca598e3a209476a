"""Domain-separated hashing (DESIGN §3).

``H(tag, data) = sha256(tag + b"\\x00" + data)``.  The Merkle log uses the RFC 9162
prefixes instead and lives in :mod:`ledger.merkle`.
"""

from __future__ import annotations

import hashlib

TAG_EVENT = b"lambtrace/event/v1"
TAG_HEADER = b"lambtrace/header/v1"
TAG_VOTE = b"lambtrace/vote/v1"
TAG_KEY = b"lambtrace/key/v1"
TAG_GENESIS = b"lambtrace/genesis/v1"

HASH_SIZE = 32
KEY_ID_BYTES = 16


def H(tag: bytes, data: bytes) -> bytes:  # noqa: N802 - the name the design uses
    """SHA-256 of ``tag || 0x00 || data``."""
    return hashlib.sha256(tag + b"\x00" + data).digest()


def signing_message(tag: bytes, data: bytes) -> bytes:
    """The exact bytes a signature covers: ``tag || 0x00 || data``."""
    return tag + b"\x00" + data


def key_id(alg: str, public_key: bytes) -> str:
    """First 16 bytes of ``H("lambtrace/key/v1", alg || 0x00 || public_key)``, hex."""
    return H(TAG_KEY, alg.encode() + b"\x00" + public_key)[:KEY_ID_BYTES].hex()
