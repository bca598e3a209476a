"""Who signs: the :class:`Signer` protocol and :func:`load_signer`.

Everything that signs ledger bytes (actors' events, validators' votes) goes through a
:class:`Signer`: it knows its algorithm, public key and key id, and turns the exact bytes
to sign into a 64-byte signature that :func:`ledger.sigs.verify_signature` accepts.
Where the private key lives is the signer's business: in process memory
(:class:`~signer.software.SoftwareSigner`, loaded from a key file) or in an HSM behind
PKCS#11 (:class:`~signer.pkcs11.Pkcs11Signer`).

``load_signer(spec)`` opens a signer from a spec string: a key file path, or a
``pkcs11:...`` spec naming a key on a token.  An encrypted key file's passphrase comes from the
``passphrase`` argument, else the ``LAMBTRACE_KEY_PASSPHRASE`` environment variable, else
the file named by ``LAMBTRACE_KEY_PASSPHRASE_FILE``; these are consulted only when the
file is actually encrypted.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Mapping
from typing import Final, Protocol, runtime_checkable

from .errors import PASSPHRASE_REQUIRED, SignerError
from .software import (
    STORAGE_HSM,
    STORAGE_SOFTWARE,
    PublicKey,
    SoftwareSigner,
    generate,
    load_key_file,
    load_public_key,
    public_key_record,
    save_key_file,
    save_public_key_file,
)

__all__ = [
    "ENV_PASSPHRASE",
    "ENV_PASSPHRASE_FILE",
    "PKCS11_PREFIX",
    "STORAGE_HSM",
    "STORAGE_SOFTWARE",
    "PublicKey",
    "Signer",
    "SignerError",
    "SoftwareSigner",
    "generate",
    "load_key_file",
    "load_public_key",
    "load_signer",
    "passphrase_from_env",
    "public_key_record",
    "save_key_file",
    "save_public_key_file",
]

ENV_PASSPHRASE: Final = "LAMBTRACE_KEY_PASSPHRASE"
ENV_PASSPHRASE_FILE: Final = "LAMBTRACE_KEY_PASSPHRASE_FILE"
PKCS11_PREFIX: Final = "pkcs11:"
_MAX_PASSPHRASE_FILE_BYTES: Final = 4096


@runtime_checkable
class Signer(Protocol):
    """Something that signs ledger bytes with one key.

    ``sign(message)`` takes the full bytes to sign (domain tag included) and returns 64
    bytes: Ed25519 ``R || S``, or for ``ecdsa-p256`` raw ``r || s`` over SHA-256 of
    ``message``, low-S.  ``public_key`` is 32 bytes (ed25519) or a 33-byte SEC1 compressed
    point (ecdsa-p256); ``key_id`` is :func:`ledger.hashing.key_id` of the two;
    ``storage`` is ``"software"`` or ``"hsm"``.
    """

    @property
    def alg(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    @property
    def key_id(self) -> str: ...

    @property
    def storage(self) -> str: ...

    def sign(self, message: bytes | bytearray | memoryview) -> bytes: ...


def passphrase_from_env(environ: Mapping[str, str] | None = None) -> str | bytes | None:
    """The key passphrase from the environment, or ``None`` if none is configured.

    ``LAMBTRACE_KEY_PASSPHRASE`` wins if set and non-empty; otherwise the file named by
    ``LAMBTRACE_KEY_PASSPHRASE_FILE`` is read and one trailing newline (``\\n`` or
    ``\\r\\n``) removed; its content is used as NFC text if it is UTF-8, else as raw bytes.

    Raises :class:`SignerError` ``passphrase_required`` if the passphrase file is named
    but cannot be read, is empty or is larger than 4 KiB.
    """
    env = os.environ if environ is None else environ
    direct = env.get(ENV_PASSPHRASE)
    if direct:
        return direct
    file_name = env.get(ENV_PASSPHRASE_FILE)
    if not file_name:
        return None
    try:
        with open(file_name, "rb") as f:
            data = f.read(_MAX_PASSPHRASE_FILE_BYTES + 1)
    except OSError as exc:
        raise SignerError(
            f"cannot read the passphrase file named by {ENV_PASSPHRASE_FILE}: {exc}",
            code=PASSPHRASE_REQUIRED,
        ) from None
    if len(data) > _MAX_PASSPHRASE_FILE_BYTES:
        raise SignerError(
            f"the passphrase file named by {ENV_PASSPHRASE_FILE} is too large", code=PASSPHRASE_REQUIRED
        )
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise SignerError(
            f"the passphrase file named by {ENV_PASSPHRASE_FILE} is empty", code=PASSPHRASE_REQUIRED
        )
    try:
        return unicodedata.normalize("NFC", data.decode("utf-8"))
    except UnicodeDecodeError:
        return data


def load_signer(spec: str | os.PathLike[str], *, passphrase: str | bytes | None = None) -> Signer:
    """The signer that ``spec`` names.

    ``spec`` is a key file path (``str`` or path-like) or a ``pkcs11:`` spec naming an HSM
    key (see :mod:`signer.pkcs11`; its PIN comes from the variable or file the spec names,
    never from ``passphrase``).  For an encrypted key file the passphrase is
    ``passphrase`` if given, else :func:`passphrase_from_env` (looked up only when needed).

    Raises :class:`SignerError`: for ``pkcs11:`` specs what
    :meth:`signer.pkcs11.Pkcs11Signer.open` raises (``unsupported_spec`` for a malformed
    spec or one carrying a PIN, ``hsm_*`` codes); otherwise whatever
    :func:`~signer.software.load_key_file` raises (``key_file_missing``,
    ``key_file_invalid``, ``unsupported_alg``, ``passphrase_required``, ``bad_passphrase``).
    """
    if isinstance(spec, str) and spec.lstrip()[: len(PKCS11_PREFIX)].lower() == PKCS11_PREFIX:
        # Imported here: python-pkcs11 is only needed by those who use HSM keys.
        from .pkcs11 import Pkcs11Signer

        return Pkcs11Signer.open(spec)
    if passphrase is not None:
        return load_key_file(spec, passphrase=passphrase)
    return load_key_file(spec, passphrase=passphrase_from_env)
