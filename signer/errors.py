"""Errors raised while loading or using signing keys.

:class:`SignerError` is a :class:`~ledger.errors.LedgerError`, so the command line and the
API report it like every other domain error: a stable snake_case ``code`` and a message
that tells the operator what to do.  Codes:

``bad_passphrase``
    the key file is encrypted and the passphrase does not open it (or the encrypted part
    was altered: the two cannot be told apart).
``key_file_missing``
    no file at the given path.
``key_file_invalid``
    the file is not a LambTrace key file, is damaged, its stored public key does not match
    its private key, or it holds no private key where one is needed.
``passphrase_required``
    an encrypted key file was opened without a passphrase, or a key was about to be saved
    unencrypted without ``insecure_plain=True``.
``unsupported_alg``
    an algorithm other than ``ed25519`` / ``ecdsa-p256``.
``unsupported_spec``
    a signer spec this build cannot open (e.g. ``pkcs11:`` before signer/pkcs11.py lands).
"""

from __future__ import annotations

from typing import Final

from ledger.errors import LedgerError

BAD_PASSPHRASE: Final = "bad_passphrase"
KEY_FILE_MISSING: Final = "key_file_missing"
KEY_FILE_INVALID: Final = "key_file_invalid"
PASSPHRASE_REQUIRED: Final = "passphrase_required"
UNSUPPORTED_ALG: Final = "unsupported_alg"
UNSUPPORTED_SPEC: Final = "unsupported_spec"

CODES: Final = (
    BAD_PASSPHRASE,
    KEY_FILE_MISSING,
    KEY_FILE_INVALID,
    PASSPHRASE_REQUIRED,
    UNSUPPORTED_ALG,
    UNSUPPORTED_SPEC,
)


class SignerError(LedgerError):
    """A key could not be loaded, saved or used; ``code`` is one of :data:`CODES`."""

    code = "signer_error"
