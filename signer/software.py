"""Software-held signing keys and the key files they live in.

A :class:`SoftwareSigner` holds an Ed25519 or ECDSA P-256 private key in process memory
and signs exactly as :func:`ledger.sigs.verify_signature` expects: Ed25519 over the
message; ECDSA P-256 over SHA-256 of the message, output as raw ``r || s`` (32 bytes
each, big-endian) and always low-S.

Key files are JSON so an operator can see what a file is without opening it::

    {"format": "lambtrace-key/v1", "alg": "ed25519", "public_key": "<hex>",
     "key_id": "<hex>", "storage": "software",
     "encryption": {"kdf": "argon2id", "opslimit": 2, "memlimit": 67108864, "salt": "<hex>",
                    "cipher": "xsalsa20poly1305", "nonce": "<hex>", "ciphertext": "<hex>"}}

The private key (Ed25519: the 32-byte seed; P-256: the 32-byte big-endian scalar) is
sealed with ``nacl.secret.SecretBox`` under a key derived from the passphrase with
Argon2id.  Unencrypted files (``"encryption": null, "private_key": "<hex>"``) are for
demos only and must be asked for with ``insecure_plain=True``.  A *public-only* file
(``"encryption": null, "private_key": null``) records a key whose private part lives
elsewhere, e.g. in an HSM; :func:`load_public_key` reads it, :func:`load_key_file`
refuses it.  Files are written with mode 0600, atomically (temporary file, then link or
rename), and by default never over an existing file.

On load every stored public value is checked against the private key: a file whose
``public_key`` or ``key_id`` does not belong to its private key is ``key_file_invalid``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, TypeGuard

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.signing
import nacl.utils
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ledger import sigs
from ledger.errors import Rejected
from ledger.hashing import key_id as compute_key_id

from .errors import (
    BAD_PASSPHRASE,
    KEY_FILE_INVALID,
    KEY_FILE_MISSING,
    PASSPHRASE_REQUIRED,
    UNSUPPORTED_ALG,
    SignerError,
)

if TYPE_CHECKING:
    from . import Signer

FORMAT: Final = "lambtrace-key/v1"
KDF: Final = "argon2id"
CIPHER: Final = "xsalsa20poly1305"

STORAGE_SOFTWARE: Final = "software"
STORAGE_HSM: Final = "hsm"
STORAGES: Final = (STORAGE_SOFTWARE, STORAGE_HSM)

PRIVATE_KEY_SIZE: Final = 32
"""Ed25519 seed or P-256 scalar, both 32 bytes."""

Strength = Literal["interactive", "moderate", "sensitive"]
KDF_STRENGTHS: Final[dict[str, tuple[int, int]]] = {
    "interactive": (argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE),
    "moderate": (argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE),
    "sensitive": (argon2id.OPSLIMIT_SENSITIVE, argon2id.MEMLIMIT_SENSITIVE),
}
"""Named Argon2id (opslimit, memlimit) pairs; libsodium's presets."""

MAX_OPSLIMIT: Final = 4 * argon2id.OPSLIMIT_SENSITIVE
MAX_MEMLIMIT: Final = argon2id.MEMLIMIT_SENSITIVE
"""A key file asking for more work than this is refused, so a hostile file cannot make
``load_key_file`` allocate unbounded memory or spin for minutes."""

MAX_KEY_FILE_BYTES: Final = 64 * 1024
FILE_MODE: Final = 0o600

_HEX_RE: Final = re.compile(r"(?:[0-9a-f]{2})*")
_SECRETBOX_OVERHEAD: Final = nacl.secret.SecretBox.MACBYTES

Passphrase = str | bytes
PassphraseSource = Passphrase | Callable[[], Passphrase | None] | None


# --- the signer ------------------------------------------------------------------------------


class SoftwareSigner:
    """A private key held in process memory; satisfies the :class:`signer.Signer` protocol.

    Build one with :meth:`generate`, :meth:`from_private_bytes` or :func:`load_key_file`.
    ``repr`` never shows the private key.
    """

    __slots__ = ("_alg", "_ec_key", "_ed_key", "_key_id", "_private", "_public_key")

    def __init__(self, alg: str, private_bytes: bytes) -> None:
        """Wrap a raw private key: Ed25519 32-byte seed, or P-256 32-byte big-endian scalar.

        Raises :class:`SignerError` ``unsupported_alg`` for an unknown ``alg`` and
        ``ValueError`` if ``private_bytes`` is not 32 bytes (or, for P-256, not a scalar in
        ``[1, n-1]``).
        """
        if alg not in sigs.ALGS:
            raise SignerError(f"unsupported key algorithm {alg!r}", code=UNSUPPORTED_ALG, alg=str(alg))
        raw = bytes(private_bytes)
        if len(raw) != PRIVATE_KEY_SIZE:
            raise ValueError(f"{alg} private key must be {PRIVATE_KEY_SIZE} bytes, got {len(raw)}")
        self._alg = alg
        self._private = raw
        self._ed_key: nacl.signing.SigningKey | None = None
        self._ec_key: ec.EllipticCurvePrivateKey | None = None
        if alg == sigs.ALG_ED25519:
            self._ed_key = nacl.signing.SigningKey(raw)
            self._public_key = bytes(self._ed_key.verify_key)
        else:
            scalar = int.from_bytes(raw, "big")
            if not 1 <= scalar < sigs.P256_ORDER:
                raise ValueError("ecdsa-p256 private scalar must lie in [1, n-1]")
            self._ec_key = ec.derive_private_key(scalar, ec.SECP256R1())
            self._public_key = self._ec_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
        self._key_id = compute_key_id(alg, self._public_key)

    # construction

    @classmethod
    def generate(cls, alg: str) -> SoftwareSigner:
        """A fresh key of ``alg`` from the operating system's CSPRNG.

        Raises :class:`SignerError` ``unsupported_alg`` for an unknown ``alg``.
        """
        if alg == sigs.ALG_ED25519:
            return cls(alg, bytes(nacl.signing.SigningKey.generate()))
        if alg == sigs.ALG_ECDSA_P256:
            scalar = ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value
            return cls(alg, scalar.to_bytes(PRIVATE_KEY_SIZE, "big"))
        raise SignerError(f"unsupported key algorithm {alg!r}", code=UNSUPPORTED_ALG, alg=str(alg))

    @classmethod
    def from_private_bytes(cls, alg: str, raw: bytes) -> SoftwareSigner:
        """The signer for a raw private key (see :meth:`__init__` for format and errors)."""
        return cls(alg, raw)

    @classmethod
    def from_seed(cls, alg: str, seed: bytes) -> SoftwareSigner:
        """Same as :meth:`from_private_bytes`; for Ed25519 the private key *is* the RFC 8032 seed."""
        return cls(alg, seed)

    # the Signer protocol

    @property
    def alg(self) -> str:
        return self._alg

    @property
    def public_key(self) -> bytes:
        """Ed25519: 32 bytes; ecdsa-p256: 33-byte SEC1 compressed point."""
        return self._public_key

    @property
    def key_id(self) -> str:
        """:func:`ledger.hashing.key_id` of ``(alg, public_key)``."""
        return self._key_id

    @property
    def storage(self) -> str:
        return STORAGE_SOFTWARE

    def sign(self, message: bytes | bytearray | memoryview) -> bytes:
        """The 64-byte signature over ``message`` (the exact bytes to sign, tag included).

        Ed25519: deterministic RFC 8032 signature.  ecdsa-p256: ECDSA over SHA-256 of
        ``message``, raw ``r || s``, always low-S.  Raises ``TypeError`` if ``message`` is
        not bytes-like.
        """
        if not isinstance(message, bytes | bytearray | memoryview):
            raise TypeError(f"message must be bytes, not {type(message).__name__}")
        msg = bytes(message)
        if self._ed_key is not None:
            return self._ed_key.sign(msg).signature
        if self._ec_key is None:  # pragma: no cover - __init__ sets one of the two
            raise RuntimeError("signer has no key")
        r, s = decode_dss_signature(self._ec_key.sign(msg, ec.ECDSA(hashes.SHA256())))
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return sigs.normalize_low_s(raw)

    # secrets

    def private_bytes(self) -> bytes:
        """The raw private key (secret!): Ed25519 seed or P-256 big-endian scalar."""
        return self._private

    def public(self) -> PublicKey:
        """The public half as a :class:`PublicKey` record."""
        return PublicKey(self._alg, self._public_key, STORAGE_SOFTWARE)

    def __repr__(self) -> str:
        return f"SoftwareSigner(alg={self._alg!r}, key_id={self._key_id!r})"


def generate(alg: str) -> SoftwareSigner:
    """A fresh software key of ``alg``; see :meth:`SoftwareSigner.generate`."""
    return SoftwareSigner.generate(alg)


# --- public keys -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    """A public key and where its private half is kept; no secret in it.

    ``locator`` optionally says where the private key lives (e.g. a ``pkcs11:`` URI
    without PIN); it is informational and never part of the key's identity.

    Construction validates: raises :class:`SignerError` ``unsupported_alg`` for an unknown
    ``alg``, ``ValueError`` for an unknown ``storage``, and
    :class:`~ledger.errors.Rejected` ``bad_key`` for a public key that is not a valid key
    of ``alg``.
    """

    alg: str
    public_key: bytes
    storage: str = STORAGE_SOFTWARE
    locator: str | None = None

    def __post_init__(self) -> None:
        if self.alg not in sigs.ALGS:
            raise SignerError(f"unsupported key algorithm {self.alg!r}", code=UNSUPPORTED_ALG)
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {self.storage!r}")
        sigs.check_public_key(self.alg, self.public_key)

    @property
    def key_id(self) -> str:
        return compute_key_id(self.alg, self.public_key)

    def to_record(self) -> dict[str, Any]:
        """``{"alg", "pub", "storage"}``: the form actor enrolment puts on the ledger."""
        return {"alg": self.alg, "pub": self.public_key, "storage": self.storage}


def public_key_record(signer: Signer | PublicKey) -> dict[str, Any]:
    """``{"alg": str, "pub": bytes, "storage": str}`` for any signer or public key.

    This is the key entry an ``actor.enroll`` / ``key.rotate`` body carries.
    """
    return {"alg": signer.alg, "pub": bytes(signer.public_key), "storage": signer.storage}


# --- saving ----------------------------------------------------------------------------------


def save_key_file(
    signer: SoftwareSigner,
    path: str | os.PathLike[str],
    *,
    passphrase: Passphrase | None,
    insecure_plain: bool = False,
    strength: Strength = "interactive",
    opslimit: int | None = None,
    memlimit: int | None = None,
    overwrite: bool = False,
) -> None:
    """Write ``signer``'s key to ``path`` as a ``lambtrace-key/v1`` JSON file, mode 0600.

    With a passphrase the private key is encrypted (Argon2id + XSalsa20-Poly1305);
    ``strength`` picks libsodium's interactive/moderate/sensitive limits, and
    ``opslimit``/``memlimit`` override them (tests use the MIN limits).  Without one the
    key is stored in clear only if ``insecure_plain=True``.  A passphrase given together
    with ``insecure_plain=True`` still encrypts.  A ``str`` passphrase is NFC-normalised
    and UTF-8 encoded.

    Raises :class:`SignerError` ``passphrase_required`` when there is no (or an empty)
    passphrase and ``insecure_plain`` is false; ``ValueError`` for limits outside what
    :func:`load_key_file` accepts or an unknown ``strength``; ``FileExistsError`` if
    ``path`` exists and ``overwrite`` is false; ``OSError`` if the file cannot be written.
    """
    if not isinstance(signer, SoftwareSigner):
        raise TypeError("save_key_file needs a SoftwareSigner (other signers hold no exportable key)")
    doc = _public_document(signer.alg, signer.public_key, STORAGE_SOFTWARE)
    if passphrase is None or len(passphrase) == 0:
        if not insecure_plain:
            raise SignerError(
                "refusing to write an unencrypted key file: give a passphrase, "
                "or pass insecure_plain=True (demos only)",
                code=PASSPHRASE_REQUIRED,
            )
        doc["encryption"] = None
        doc["private_key"] = signer.private_bytes().hex()
    else:
        ops, mem = _choose_limits(strength, opslimit, memlimit)
        doc["encryption"] = _encrypt(signer.private_bytes(), passphrase, ops, mem)
    _write_private_file(Path(path), _dump(doc), overwrite=overwrite)


def save_public_key_file(
    key: Signer | PublicKey,
    path: str | os.PathLike[str],
    *,
    locator: str | None = None,
    overwrite: bool = False,
) -> None:
    """Write a public-only key file (no private part) for ``key``, mode 0600.

    For keys whose private half is held elsewhere (an HSM): ``storage`` is taken from
    ``key``; ``locator`` (or ``key.locator``) may say where the private key lives and must
    not contain a PIN.  Raises ``FileExistsError`` if ``path`` exists and ``overwrite`` is
    false; ``OSError`` if the file cannot be written.
    """
    if locator is None and isinstance(key, PublicKey):
        locator = key.locator
    doc = _public_document(key.alg, bytes(key.public_key), key.storage)
    doc["encryption"] = None
    doc["private_key"] = None
    if locator is not None:
        doc["locator"] = locator
    _write_private_file(Path(path), _dump(doc), overwrite=overwrite)


def _public_document(alg: str, public_key: bytes, storage: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "alg": alg,
        "public_key": public_key.hex(),
        "key_id": compute_key_id(alg, public_key),
        "storage": storage,
    }


def _choose_limits(strength: str, opslimit: int | None, memlimit: int | None) -> tuple[int, int]:
    if strength not in KDF_STRENGTHS:
        raise ValueError(f"strength must be one of {sorted(KDF_STRENGTHS)}, not {strength!r}")
    ops, mem = KDF_STRENGTHS[strength]
    ops = ops if opslimit is None else opslimit
    mem = mem if memlimit is None else memlimit
    if not (_is_int(ops) and _is_int(mem) and _limits_ok(ops, mem)):
        raise ValueError(
            f"argon2id limits out of range: opslimit in [{argon2id.OPSLIMIT_MIN}, {MAX_OPSLIMIT}], "
            f"memlimit in [{argon2id.MEMLIMIT_MIN}, {MAX_MEMLIMIT}]"
        )
    return ops, mem


def _is_int(value: object) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool`` (JSON ``true`` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _limits_ok(opslimit: int, memlimit: int) -> bool:
    return (
        argon2id.OPSLIMIT_MIN <= opslimit <= MAX_OPSLIMIT
        and argon2id.MEMLIMIT_MIN <= memlimit <= MAX_MEMLIMIT
    )


def _passphrase_bytes(passphrase: Passphrase) -> bytes:
    if isinstance(passphrase, str):
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    if isinstance(passphrase, bytes | bytearray | memoryview):
        return bytes(passphrase)
    raise TypeError(f"passphrase must be str or bytes, not {type(passphrase).__name__}")


def _derive_box(passphrase: Passphrase, salt: bytes, opslimit: int, memlimit: int) -> nacl.secret.SecretBox:
    key = argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        _passphrase_bytes(passphrase),
        salt,
        opslimit=opslimit,
        memlimit=memlimit,
    )
    return nacl.secret.SecretBox(key)


def _encrypt(private: bytes, passphrase: Passphrase, opslimit: int, memlimit: int) -> dict[str, Any]:
    salt = nacl.utils.random(argon2id.SALTBYTES)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = _derive_box(passphrase, salt, opslimit, memlimit).encrypt(private, nonce)
    return {
        "kdf": KDF,
        "opslimit": opslimit,
        "memlimit": memlimit,
        "salt": salt.hex(),
        "cipher": CIPHER,
        "nonce": nonce.hex(),
        "ciphertext": sealed.ciphertext.hex(),
    }


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def _write_private_file(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Atomically create ``path`` (mode 0600) holding ``data``.

    The bytes go to a temporary file in the same directory (created 0600, fsynced), which
    is then hard-linked to ``path`` (fails if ``path`` exists: no check-then-write race)
    or, with ``overwrite``, renamed over it.  Readers see the old file or the whole new
    one, never a torn write.
    """
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as tmp:
            os.fchmod(tmp.fileno(), FILE_MODE)
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        if overwrite:
            os.replace(tmp_name, path)
        else:
            try:
                os.link(tmp_name, path)
            except FileExistsError:
                raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
            except OSError:
                # Filesystem without hard links: fall back to check-then-rename.
                if path.exists():
                    raise FileExistsError(f"{path} exists; pass overwrite=True to replace it") from None
                os.replace(tmp_name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (best effort: a platform or
    file system that cannot sync a directory is left as it is)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# --- loading ---------------------------------------------------------------------------------


def load_key_file(path: str | os.PathLike[str], *, passphrase: PassphraseSource = None) -> SoftwareSigner:
    """The :class:`SoftwareSigner` stored in the key file at ``path``.

    ``passphrase`` may be a ``str``/``bytes`` or a zero-argument callable returning one
    (or ``None``); the callable is only called when the file is encrypted.  An
    unencrypted file ignores the passphrase.

    Raises :class:`SignerError` with code ``key_file_missing`` (no such file),
    ``key_file_invalid`` (not a lambtrace-key/v1 file, damaged, public parts that do not
    match the private key, or a public-only file: the private key is not in it),
    ``unsupported_alg``, ``passphrase_required`` (encrypted, no passphrase) or
    ``bad_passphrase`` (the passphrase does not open it, or the sealed part was altered).
    """
    doc = _read_document(path)
    public = _public_from_document(doc, path)
    kind = _document_kind(doc, path)
    if kind == "public":
        raise SignerError(
            f"{path}: the private key is not in this file (public-only key file, "
            f"storage {public.storage!r}); open the key through its signer instead",
            code=KEY_FILE_INVALID,
            key_id=public.key_id,
        )
    if public.storage != STORAGE_SOFTWARE:
        _invalid(path, f"a file holding a private key must have storage 'software', not {public.storage!r}")
    if kind == "plain":
        private = _hex_field(doc, "private_key", path, PRIVATE_KEY_SIZE)
    else:
        secret = passphrase() if callable(passphrase) else passphrase
        if secret is None:
            raise SignerError(
                f"{path} is encrypted: give a passphrase (or set LAMBTRACE_KEY_PASSPHRASE / "
                "LAMBTRACE_KEY_PASSPHRASE_FILE)",
                code=PASSPHRASE_REQUIRED,
            )
        private = _decrypt(doc["encryption"], secret, path)
    try:
        signer = SoftwareSigner(public.alg, private)
    except ValueError as exc:
        _invalid(path, f"private key is not a valid {public.alg} key: {exc}")
    if signer.public_key != public.public_key:
        _invalid(path, "stored public_key does not belong to the private key")
    return signer


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """The :class:`PublicKey` recorded in any key file (public-only or with a private key).

    Needs no passphrase and never touches the private part.  Raises :class:`SignerError`
    ``key_file_missing``, ``key_file_invalid`` (damaged, bad public key, ``key_id`` that
    does not match) or ``unsupported_alg``.
    """
    doc = _read_document(path)
    public = _public_from_document(doc, path)
    _document_kind(doc, path)
    return public


def key_file_is_encrypted(path: str | os.PathLike[str]) -> bool:
    """Whether the key file at ``path`` holds an encrypted private key (same errors as loading)."""
    doc = _read_document(path)
    _public_from_document(doc, path)
    return _document_kind(doc, path) == "encrypted"


def _invalid(path: object, why: str) -> NoReturn:
    raise SignerError(f"{path}: invalid key file: {why}", code=KEY_FILE_INVALID)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate field {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed")


def _read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        raise SignerError(f"no key file at {os.fspath(path)}", code=KEY_FILE_MISSING) from None
    except OSError as exc:
        raise SignerError(f"cannot read key file {os.fspath(path)}: {exc}", code=KEY_FILE_INVALID) from None
    if len(data) > MAX_KEY_FILE_BYTES:
        _invalid(path, f"larger than {MAX_KEY_FILE_BYTES} bytes")
    try:
        doc = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        _invalid(path, f"not JSON: {exc}")
    if not isinstance(doc, dict):
        _invalid(path, "not a JSON object")
    if doc.get("format") != FORMAT:
        _invalid(path, f"format is {doc.get('format')!r}, expected {FORMAT!r}")
    return doc


def _hex_field(doc: dict[str, Any], field: str, path: object, size: int | None = None) -> bytes:
    value = doc.get(field)
    if not isinstance(value, str) or not _HEX_RE.fullmatch(value):
        _invalid(path, f"{field} must be lowercase hex")
    raw = bytes.fromhex(value)
    if size is not None and len(raw) != size:
        _invalid(path, f"{field} must be {size} bytes, got {len(raw)}")
    return raw


def _public_from_document(doc: dict[str, Any], path: object) -> PublicKey:
    alg = doc.get("alg")
    if not isinstance(alg, str):
        _invalid(path, "alg missing")
    if alg not in sigs.ALGS:
        raise SignerError(f"{path}: unsupported key algorithm {alg!r}", code=UNSUPPORTED_ALG, alg=alg)
    storage = doc.get("storage")
    if storage not in STORAGES:
        _invalid(path, f"storage must be one of {STORAGES}")
    locator = doc.get("locator")
    if locator is not None and not isinstance(locator, str):
        _invalid(path, "locator must be a string")
    public_key = _hex_field(doc, "public_key", path, sigs.PUBLIC_KEY_SIZES[alg])
    try:
        public = PublicKey(alg, public_key, storage, locator)
    except Rejected as exc:
        _invalid(path, exc.message)
    if doc.get("key_id") != public.key_id:
        _invalid(path, "key_id does not match the public key")
    return public


def _document_kind(doc: dict[str, Any], path: object) -> Literal["encrypted", "plain", "public"]:
    encryption = doc.get("encryption")
    private = doc.get("private_key")
    if isinstance(encryption, dict):
        if private is not None:
            _invalid(path, "both encryption and a clear private_key")
        return "encrypted"
    if encryption is not None:
        _invalid(path, "encryption must be an object or null")
    if private is None:
        return "public"
    return "plain"


def _decrypt(enc: dict[str, Any], passphrase: Passphrase, path: object) -> bytes:
    if enc.get("kdf") != KDF:
        _invalid(path, f"unsupported kdf {enc.get('kdf')!r}")
    if enc.get("cipher") != CIPHER:
        _invalid(path, f"unsupported cipher {enc.get('cipher')!r}")
    opslimit, memlimit = enc.get("opslimit"), enc.get("memlimit")
    if not (_is_int(opslimit) and _is_int(memlimit) and _limits_ok(opslimit, memlimit)):
        _invalid(path, "argon2id opslimit/memlimit missing or out of range")
    salt = _hex_field(enc, "salt", path, argon2id.SALTBYTES)
    nonce = _hex_field(enc, "nonce", path, nacl.secret.SecretBox.NONCE_SIZE)
    ciphertext = _hex_field(enc, "ciphertext", path, PRIVATE_KEY_SIZE + _SECRETBOX_OVERHEAD)
    box = _derive_box(passphrase, salt, opslimit, memlimit)
    try:
        return box.decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise SignerError(
            f"{path}: wrong passphrase (or the encrypted key was altered)", code=BAD_PASSPHRASE
        ) from None
