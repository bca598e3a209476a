"""Signature verification for the two algorithms the chain admits (DESIGN §3).

Every signature on the ledger (event signatures, validator votes, genesis root keys) is
checked here, so this module decides, for every node alike, which bytes count as a valid
signature:

* ``ed25519``: RFC 8032 Ed25519 through libsodium (PyNaCl).  Public keys are 32 bytes and
  must be canonical encodings of a point in the prime-order subgroup (no small-order or
  mixed-order keys); signatures are 64 bytes ``R || S`` with ``S < L`` (libsodium refuses
  the ``S + L`` malleation and small-order ``R``).
* ``ecdsa-p256``: ECDSA over NIST P-256 with SHA-256 of the message, through
  ``cryptography``.  Public keys are SEC1 *compressed* points (33 bytes); signatures are
  the raw 64 bytes ``r || s`` (32-byte big-endian each), with ``1 <= r < n`` and
  ``1 <= s <= n/2`` (low-S), so each signature has exactly one accepted encoding.

:func:`verify_signature` is the hot path of a node and takes untrusted bytes: it never
raises for them, it answers ``False``.  It checks cheap structure (types, sizes, scalar
ranges) before any curve arithmetic, and keeps decoded public keys in a small bounded LRU
cache so that a busy actor's key is decoded and validated once, not once per event.

Pure: no file or network I/O, no clock, no randomness.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .errors import Rejected

ALG_ED25519: Final = "ed25519"
ALG_ECDSA_P256: Final = "ecdsa-p256"
ALGS: Final = (ALG_ED25519, ALG_ECDSA_P256)

PUBLIC_KEY_SIZES: Final[dict[str, int]] = {ALG_ED25519: 32, ALG_ECDSA_P256: 33}
"""Encoded public key size per algorithm; ecdsa-p256 keys are SEC1 compressed points."""

SIGNATURE_SIZE: Final = 64
"""Both algorithms: Ed25519 ``R || S``, ECDSA P-256 raw ``r || s``."""

P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""``n``, the order of the P-256 base point."""

P256_HALF_ORDER: Final = P256_ORDER // 2
"""Largest accepted ``s`` (low-S).  ``n`` is odd, so ``s <= n/2`` iff ``s <= n // 2``."""

_P256_SCALAR_SIZE: Final = 32
_COMPRESSED_PREFIXES: Final = (2, 3)
_KEY_CACHE_SIZE: Final = 4096
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())


# --- decoded, validated public keys (bounded caches) -----------------------------------------


@lru_cache(maxsize=_KEY_CACHE_SIZE)
def _ed25519_verify_key(public_key: bytes) -> nacl.signing.VerifyKey:
    """A ``VerifyKey`` for a 32-byte key that is a valid prime-order point.

    Raises ``ValueError`` for anything else.  Exceptions are not cached by ``lru_cache``,
    so only valid keys occupy the cache.
    """
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(public_key):
        raise ValueError("not a canonical ed25519 point of prime order")
    return nacl.signing.VerifyKey(public_key)


@lru_cache(maxsize=_KEY_CACHE_SIZE)
def _p256_public_key(public_key: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 key for a 33-byte SEC1 compressed point on the curve.

    Raises ``ValueError`` for anything else (P-256 has cofactor 1, so a point on the curve
    is in the group; the point at infinity has no 33-byte encoding).
    """
    if len(public_key) != PUBLIC_KEY_SIZES[ALG_ECDSA_P256] or public_key[0] not in _COMPRESSED_PREFIXES:
        raise ValueError("not a SEC1 compressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)


def _as_bytes(value: object) -> bytes | None:
    """``value`` as ``bytes`` if it is bytes-like, else ``None`` (untrusted input may be anything)."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None


def _split_rs(signature: bytes) -> tuple[int, int]:
    return (
        int.from_bytes(signature[:_P256_SCALAR_SIZE], "big"),
        int.from_bytes(signature[_P256_SCALAR_SIZE:], "big"),
    )


# --- verification ----------------------------------------------------------------------------


def verify_signature(alg: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a valid ``alg`` signature by ``public_key`` over ``message``.

    Promises: ``True`` only for a well-formed key of ``alg`` (as :func:`check_public_key`
    would accept) and a signature in its one accepted encoding (sizes exact; ecdsa-p256
    low-S with ``r, s`` in range) that verifies over exactly ``message``.  Deterministic:
    the same inputs give the same answer on every node.

    Never raises for bad input: an unknown ``alg``, non-bytes values, wrong sizes, invalid
    points or a bad signature all give ``False``.
    """
    pk = _as_bytes(public_key)
    msg = _as_bytes(message)
    sig = _as_bytes(signature)
    if pk is None or msg is None or sig is None or len(sig) != SIGNATURE_SIZE:
        return False
    if alg == ALG_ED25519:
        return _verify_ed25519(pk, msg, sig)
    if alg == ALG_ECDSA_P256:
        return _verify_ecdsa_p256(pk, msg, sig)
    return False


def _verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_SIZES[ALG_ED25519]:
        return False
    try:
        key = _ed25519_verify_key(public_key)
        key.verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        # ValueError: invalid point; TypeError/ValueError from PyNaCl on malformed sizes.
        return False
    return True


def _verify_ecdsa_p256(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_SIZES[ALG_ECDSA_P256]:
        return False
    r, s = _split_rs(signature)
    # Range and low-S first: cheap, and it makes the encoding unique before any curve work.
    if not (1 <= r < P256_ORDER and 1 <= s <= P256_HALF_ORDER):
        return False
    try:
        key = _p256_public_key(public_key)
        key.verify(encode_dss_signature(r, s), message, _ECDSA_SHA256)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check_public_key(alg: str, public_key: bytes) -> None:
    """Check that ``public_key`` is a usable public key of ``alg``; return ``None`` if so.

    ed25519: 32 bytes, a canonical encoding of a point in the prime-order subgroup (small-
    and mixed-order points are refused).  ecdsa-p256: 33 bytes, SEC1 compressed
    (``0x02``/``0x03`` prefix), ``x`` below the field prime and on the curve.

    Raises :class:`~ledger.errors.Rejected` with code ``bad_key`` otherwise, including for
    an unknown ``alg`` or a value that is not bytes.
    """
    pk = _as_bytes(public_key)
    if alg not in ALGS:
        raise Rejected("bad_key", f"unknown key algorithm {alg!r}", alg=str(alg))
    if pk is None:
        raise Rejected("bad_key", "public key must be bytes", alg=alg)
    expected = PUBLIC_KEY_SIZES[alg]
    if len(pk) != expected:
        raise Rejected("bad_key", f"{alg} public key must be {expected} bytes, got {len(pk)}", alg=alg)
    try:
        if alg == ALG_ED25519:
            _ed25519_verify_key(pk)
        else:
            _p256_public_key(pk)
    except (ValueError, TypeError) as exc:
        raise Rejected("bad_key", f"invalid {alg} public key: {exc}", alg=alg) from None


def is_low_s(signature: bytes) -> bool:
    """Whether a raw 64-byte ecdsa-p256 ``r || s`` has ``1 <= s <= n/2``.  Never raises."""
    sig = _as_bytes(signature)
    if sig is None or len(sig) != SIGNATURE_SIZE:
        return False
    return 1 <= _split_rs(sig)[1] <= P256_HALF_ORDER


def normalize_low_s(signature: bytes) -> bytes:
    """The low-S form of a raw ecdsa-p256 ``r || s``: ``s`` replaced by ``n - s`` if ``s > n/2``.

    Both forms verify under plain ECDSA; only the low-S one is accepted by
    :func:`verify_signature`.  Signers (software or HSM) pass their output through this.

    Raises ``ValueError`` if ``signature`` is not 64 bytes or ``r``/``s`` are outside
    ``[1, n-1]`` (such bytes are not an ECDSA signature at all; this is a signer-side
    helper, not a check of untrusted input).
    """
    if len(signature) != SIGNATURE_SIZE:
        raise ValueError(f"ecdsa-p256 raw signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}")
    r, s = _split_rs(bytes(signature))
    if not (1 <= r < P256_ORDER and 1 <= s < P256_ORDER):
        raise ValueError("ecdsa-p256 r and s must lie in [1, n-1]")
    if s > P256_HALF_ORDER:
        s = P256_ORDER - s
    return r.to_bytes(_P256_SCALAR_SIZE, "big") + s.to_bytes(_P256_SCALAR_SIZE, "big")
