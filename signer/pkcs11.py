"""HSM-held signing keys behind PKCS#11 (DESIGN §3, §8; STYLE §10).

A plant's slaughter attestation is what a label ultimately rests on, so its key is made
on a hardware security module and never leaves it.  :class:`Pkcs11Signer` satisfies the
:class:`signer.Signer` protocol over such a key through python-pkcs11:

* ``ed25519``: the token signs the whole message with ``CKM_EDDSA`` (pure Ed25519).
* ``ecdsa-p256``: we hash the message with SHA-256 ourselves and the token signs the
  digest with raw ``CKM_ECDSA``; its ``r || s`` output is normalised to low-S
  (:func:`ledger.sigs.normalize_low_s`), the one encoding the ledger accepts.

Workflow.  A *spec* names the key, RFC 7512 style::

    pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=plant-01;object=slaughter-key;pin-env=LT_PIN

(attributes are ``module``/``module-path``, ``token``, ``serial``, ``object`` (key label),
``id`` (``CKA_ID``, percent-encoded bytes), ``type=private``, ``alg``, and one PIN source:
``pin-env=NAME``, ``pin-file=PATH`` or ``pin-source=file:PATH``; ``;`` or ``&`` separate
them, ``?`` may start a query part; values are percent-decoded).  A spec never carries a
PIN: ``pin-value`` is refused, and a PIN is read from the environment variable or file
only when the token needs a login, never stored on the signer, logged or put into an
error message.  Without a PIN source in the spec, ``LAMBTRACE_PKCS11_PIN`` and then the
file named by ``LAMBTRACE_PKCS11_PIN_FILE`` are used.  Without ``module``,
``LAMBTRACE_PKCS11_MODULE`` and then SoftHSM2's Debian path are used.

:meth:`Pkcs11Signer.open` loads the module, finds the token, logs in, finds the private
key and its public half, checks the key (sensitive, not extractable, P-256 or Ed25519)
and signs a self-test message that must verify under the exported public key.
:func:`generate_key` makes a key pair on the token (``CKA_TOKEN``, private key
``CKA_SENSITIVE`` and not ``CKA_EXTRACTABLE``); :meth:`Pkcs11Signer.public` exports the
public key the way enrolment records it (``{"alg", "pub", "storage": "hsm"}``) with a
*locator*: the spec without any PIN source, safe to write into a public key file.

Sessions and threads.  python-pkcs11 initialises a module with ``C_Initialize(NULL)``,
which tells the module it will not be called from several threads at once (SoftHSM2 then
runs without its own mutexes).  So every call into one module is made under that
module's lock: signers are thread-safe, and concurrent signing through one module is
serialised.  Login state belongs to the application, not to a session, so the process
keeps one logged-in session per token, shared by every signer on that token.  When a
call fails because that session is gone (closed, logged out, token removed or
re-inserted) it is reopened, the PIN read again, the key found again, and the call made
once more; a second failure is reported.  See ``docs/adr/0004-pkcs11-signers.md``.

Errors are :class:`HsmError` (a :class:`~signer.errors.SignerError`) with one of the codes
below; the malformed-spec code is ``unsupported_spec`` and an unsuitable key algorithm is
``unsupported_alg``, as for key files.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote, unquote, unquote_to_bytes

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ledger import sigs
from ledger.errors import Rejected
from ledger.hashing import key_id as compute_key_id

from .errors import UNSUPPORTED_ALG, UNSUPPORTED_SPEC, SignerError
from .software import STORAGE_HSM, PublicKey

if TYPE_CHECKING:
    from pkcs11 import Session, Token

PrivateKeyObject = Any
"""A python-pkcs11 private key object: its signing methods are mixed in at run time, so
its static type says too little to be useful."""

__all__ = [
    "CODES",
    "DEFAULT_MODULE",
    "ENV_MODULE",
    "ENV_PIN",
    "ENV_PIN_FILE",
    "HsmError",
    "KeyInfo",
    "PinSource",
    "Pkcs11Signer",
    "Pkcs11Spec",
    "TokenInfo",
    "close_all",
    "generate_key",
    "init_token",
    "list_keys",
    "list_tokens",
    "parse_spec",
]

# --- codes -------------------------------------------------------------------------------------

HSM_MODULE_MISSING: Final = "hsm_module_missing"
"""No PKCS#11 module at the path, it cannot be loaded, or python-pkcs11 is not installed."""
HSM_TOKEN_MISSING: Final = "hsm_token_missing"
"""No (initialised) token with that label/serial, or it was removed and did not come back."""
HSM_TOKEN_AMBIGUOUS: Final = "hsm_token_ambiguous"
"""Several tokens match; name one by ``serial``."""
HSM_TOKEN_EXISTS: Final = "hsm_token_exists"
"""``init_token`` would give a second token the same label."""
HSM_PIN_MISSING: Final = "hsm_pin_missing"
"""No PIN source, or the variable/file it names is unset, unreadable, empty or too large."""
HSM_PIN_INCORRECT: Final = "hsm_pin_incorrect"
"""The token refused the PIN."""
HSM_PIN_LOCKED: Final = "hsm_pin_locked"
"""The token reports the user PIN locked (too many wrong PINs); no login is attempted."""
HSM_PIN_INVALID: Final = "hsm_pin_invalid"
"""``init_token``: the token does not accept a PIN of that form or length."""
HSM_KEY_MISSING: Final = "hsm_key_missing"
"""No private key with that label/id on the token, or its public half is not there."""
HSM_KEY_AMBIGUOUS: Final = "hsm_key_ambiguous"
"""Several private keys match; name one by ``id``."""
HSM_KEY_EXISTS: Final = "hsm_key_exists"
"""``generate_key``: a private key with that label is already on the token."""
HSM_KEY_EXTRACTABLE: Final = "hsm_key_extractable"
"""The private key is not sensitive or is extractable: it is not held by the HSM alone."""
HSM_KEY_MISMATCH: Final = "hsm_key_mismatch"
"""The spec's ``alg`` differs from the key's, or the public object does not belong to the
private key (the self-test signature does not verify)."""
HSM_MECHANISM_UNSUPPORTED: Final = "hsm_mechanism_unsupported"
"""The token lacks ``CKM_EDDSA``/``CKM_ECDSA`` (or the key-pair generation mechanism)."""
HSM_ERROR: Final = "hsm_error"
"""Any other failure reported by the module or token."""

CODES: Final = (
    HSM_MODULE_MISSING,
    HSM_TOKEN_MISSING,
    HSM_TOKEN_AMBIGUOUS,
    HSM_TOKEN_EXISTS,
    HSM_PIN_MISSING,
    HSM_PIN_INCORRECT,
    HSM_PIN_LOCKED,
    HSM_PIN_INVALID,
    HSM_KEY_MISSING,
    HSM_KEY_AMBIGUOUS,
    HSM_KEY_EXISTS,
    HSM_KEY_EXTRACTABLE,
    HSM_KEY_MISMATCH,
    HSM_MECHANISM_UNSUPPORTED,
    HSM_ERROR,
)


class HsmError(SignerError):
    """A PKCS#11 module, token, PIN or key could not be used; ``code`` is one of :data:`CODES`.

    Messages name modules, tokens and keys, never a PIN.
    """

    code = HSM_ERROR


# --- configuration ----------------------------------------------------------------------------

DEFAULT_MODULE: Final = "/usr/lib/softhsm/libsofthsm2.so"
ENV_MODULE: Final = "LAMBTRACE_PKCS11_MODULE"
ENV_PIN: Final = "LAMBTRACE_PKCS11_PIN"
ENV_PIN_FILE: Final = "LAMBTRACE_PKCS11_PIN_FILE"
PREFIX: Final = "pkcs11:"

MAX_SPEC_CHARS: Final = 4096
MAX_PIN_FILE_BYTES: Final = 4096
MAX_TOKEN_LABEL_BYTES: Final = 32
SELF_TEST_MESSAGE: Final = b"lambtrace/pkcs11-self-test\x00"

_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_VALUE_SAFE: Final = "/:@!$'()*+,-._~"
"""Characters left as they are in spec values; everything else is percent-encoded."""

_P256_PARAMS: Final = bytes.fromhex("06082a8648ce3d030107")
"""DER of the named curve OID 1.2.840.10045.3.1.7 (prime256v1 / P-256)."""
_ED25519_PARAMS_OID: Final = bytes.fromhex("06032b6570")
"""DER of OID 1.3.101.112 (id-Ed25519)."""
_ED25519_PARAMS_NAME: Final = b"\x13\x0cedwards25519"
"""DER PrintableString ``edwards25519``: the PKCS#11 3.0 curve name some tokens expect."""

_UNSUPPORTED_ATTRS: Final = frozenset(
    {
        "library-manufacturer", "library-description", "library-version", "manufacturer", "model",
        "slot-id", "slot-description", "slot-manufacturer", "module-name",
    }
)  # fmt: skip
"""RFC 7512 attributes this build does not select by (refused rather than ignored)."""


@dataclass(frozen=True)
class PinSource:
    """Where a PIN is read from: an environment variable's name or a file's path (never the PIN).

    With neither, ``LAMBTRACE_PKCS11_PIN`` and then the file named by
    ``LAMBTRACE_PKCS11_PIN_FILE`` are consulted.
    """

    env: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        if self.env is not None and self.file is not None:
            raise HsmError("give one PIN source: an environment variable or a file, not both", code=HSM_PIN_MISSING)
        if self.env is not None and not _ENV_NAME_RE.fullmatch(self.env):
            raise HsmError("the PIN environment variable name is not a valid name", code=HSM_PIN_MISSING)
        if self.file is not None and not self.file:
            raise HsmError("the PIN file path is empty", code=HSM_PIN_MISSING)

    def describe(self) -> str:
        """Where the PIN comes from, in words (for messages; no PIN in it)."""
        if self.env is not None:
            return f"environment variable {self.env}"
        if self.file is not None:
            return f"file {self.file}"
        return f"{ENV_PIN} or the file named by {ENV_PIN_FILE}"

    def read(self, environ: Mapping[str, str] | None = None) -> str:
        """The PIN, read now.

        A file's content loses one trailing newline (``\\n`` or ``\\r\\n``) and must be
        UTF-8.  Raises :class:`HsmError` ``hsm_pin_missing`` if no source is configured or
        the variable is unset or empty, or the file cannot be read, is empty, not UTF-8 or
        larger than 4 KiB.
        """
        env = os.environ if environ is None else environ
        if self.env is not None:
            value = env.get(self.env)
            if not value:
                raise HsmError(f"no PIN: environment variable {self.env} is not set or empty", code=HSM_PIN_MISSING)
            return value
        path = self.file
        if path is None:
            value = env.get(ENV_PIN)
            if value:
                return value
            path = env.get(ENV_PIN_FILE) or None
            if path is None:
                raise HsmError(
                    f"no user PIN source: give --pin-file PATH or --pin-env NAME (pin-file= or pin-env= in a "
                    f"pkcs11: spec), or set {ENV_PIN} or {ENV_PIN_FILE}",
                    code=HSM_PIN_MISSING,
                )
        return _read_pin_file(path)


def _read_pin_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PIN_FILE_BYTES + 1)
    except OSError as exc:
        raise HsmError(f"cannot read the PIN file {path}: {exc.strerror or exc}", code=HSM_PIN_MISSING) from None
    if len(data) > MAX_PIN_FILE_BYTES:
        raise HsmError(f"the PIN file {path} is larger than {MAX_PIN_FILE_BYTES} bytes", code=HSM_PIN_MISSING)
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise HsmError(f"the PIN file {path} is empty", code=HSM_PIN_MISSING)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise HsmError(f"the PIN file {path} is not UTF-8 text", code=HSM_PIN_MISSING) from None


@dataclass(frozen=True)
class Pkcs11Spec:
    """A parsed ``pkcs11:`` spec: which module, token and key, and where the PIN comes from."""

    module: str
    token: str | None = None
    serial: str | None = None
    label: str | None = None
    object_id: bytes | None = None
    alg: str | None = None
    pin: PinSource = PinSource()

    def with_pin(self, *, env: str | None = None, file: str | None = None) -> Pkcs11Spec:
        """This spec with its PIN source replaced (if ``env`` or ``file`` is given)."""
        if env is None and file is None:
            return self
        return replace(self, pin=PinSource(env=env, file=file))

    def with_key(self, *, label: str | None = None, object_id: bytes | None = None,
                 alg: str | None = None) -> Pkcs11Spec:
        """This spec naming a key: given fields replace the ones it has."""
        return replace(
            self,
            label=self.label if label is None else label,
            object_id=self.object_id if object_id is None else object_id,
            alg=self.alg if alg is None else alg,
        )

    def locator(self) -> str:
        """The spec as a ``pkcs11:`` string without any PIN source (for public key files)."""
        return self._format(with_pin=False)

    def to_uri(self) -> str:
        """The spec as a ``pkcs11:`` string, PIN source (a name or a path) included."""
        return self._format(with_pin=True)

    def _format(self, *, with_pin: bool) -> str:
        parts = [f"module={_q(self.module)}"]
        if self.token is not None:
            parts.append(f"token={_q(self.token)}")
        if self.serial is not None:
            parts.append(f"serial={_q(self.serial)}")
        if self.label is not None:
            parts.append(f"object={_q(self.label)}")
        if self.object_id is not None:
            parts.append("id=" + "".join(f"%{b:02x}" for b in self.object_id))
        if self.alg is not None:
            parts.append(f"alg={self.alg}")
        if with_pin and self.pin.env is not None:
            parts.append(f"pin-env={self.pin.env}")
        if with_pin and self.pin.file is not None:
            parts.append(f"pin-file={_q(self.pin.file)}")
        return PREFIX + ";".join(parts)

    def describe_token(self) -> str:
        """The token as named by this spec, in words."""
        if self.token is not None and self.serial is not None:
            return f"token {self.token!r} (serial {self.serial})"
        if self.token is not None:
            return f"token {self.token!r}"
        return f"token with serial {self.serial}"

    def describe_key(self) -> str:
        """The key as named by this spec, in words."""
        named = []
        if self.label is not None:
            named.append(f"label {self.label!r}")
        if self.object_id is not None:
            named.append(f"id {self.object_id.hex()}")
        return "key with " + " and ".join(named) if named else "key"


def _q(value: str) -> str:
    return quote(value, safe=_VALUE_SAFE)


def _bad_spec(why: str) -> HsmError:
    # Never echo the spec: it may carry a PIN by mistake.
    return HsmError(f"bad pkcs11: spec: {why} (see docs/hsm.md; parsed by signer/pkcs11.py)", code=UNSUPPORTED_SPEC)


def parse_spec(spec: str, *, environ: Mapping[str, str] | None = None) -> Pkcs11Spec:
    """The :class:`Pkcs11Spec` that ``spec`` (a ``pkcs11:`` string) describes.

    Accepts RFC 7512 path attributes (``;``-separated) and query attributes (after ``?``,
    ``&``-separated) alike; values are percent-decoded and must be non-empty UTF-8
    without control characters.  ``module`` defaults to ``LAMBTRACE_PKCS11_MODULE`` from
    ``environ`` (default ``os.environ``), else SoftHSM2's Debian path.  A token (label or
    serial) is required; a key (``object``/``id``) is not (listing needs none).

    Raises :class:`HsmError` ``unsupported_spec`` for anything else: another scheme, a
    ``pin-value`` (PINs never go in specs), unknown, repeated or empty attributes, a
    ``type`` other than ``private``, two PIN sources, or no token; ``unsupported_alg``
    for an ``alg`` other than ``ed25519``/``ecdsa-p256``.  The message never repeats
    attribute values.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be str, not {type(spec).__name__}")
    text = spec.strip()
    if len(text) > MAX_SPEC_CHARS:
        raise _bad_spec(f"longer than {MAX_SPEC_CHARS} characters")
    if text[: len(PREFIX)].lower() != PREFIX:
        raise _bad_spec("it does not start with 'pkcs11:'")
    body = text[len(PREFIX) :]
    path, _, query = body.partition("?")
    items = path.split(";") + (query.split("&") if query else [])
    values: dict[str, str] = {}
    raw_id: bytes | None = None
    for item in items:
        if not item:
            continue
        name, eq, raw = item.partition("=")
        name = name.strip()
        if name == "pin-value":
            raise _bad_spec(
                "a spec must not carry a PIN (pin-value); name where the PIN is with pin-env=NAME or pin-file=PATH"
            )
        if not eq:
            raise _bad_spec("an attribute has no '=value' (a bare word is never echoed: it may be a PIN)")
        if name in _UNSUPPORTED_ATTRS:
            raise _bad_spec(f"attribute {name} is not supported; select the token by token= or serial=")
        if name not in _KNOWN_ATTRS:
            raise _bad_spec(f"unknown attribute {_safe_name(name)}")
        canonical = _KNOWN_ATTRS[name]
        if canonical in values or (canonical == "id" and raw_id is not None):
            raise _bad_spec(f"attribute {name} is given twice")
        if canonical == "id":
            raw_id = unquote_to_bytes(raw)
            if not raw_id:
                raise _bad_spec("attribute id is empty")
            continue
        try:
            value = unquote(raw, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise _bad_spec(f"attribute {name} is not UTF-8 after percent-decoding") from None
        if not value:
            raise _bad_spec(f"attribute {name} is empty")
        if _CONTROL_RE.search(value):
            raise _bad_spec(f"attribute {name} holds control characters")
        values[canonical] = value
    if "type" in values and values["type"] != "private":
        raise _bad_spec("only type=private keys sign")
    alg = values.get("alg")
    if alg is not None and alg not in sigs.ALGS:
        raise HsmError(f"unsupported key algorithm in pkcs11: spec; use one of {', '.join(sigs.ALGS)}",
                       code=UNSUPPORTED_ALG)
    pin_sources = [k for k in ("pin-env", "pin-file", "pin-source") if k in values]
    if len(pin_sources) > 1:
        raise _bad_spec("give one PIN source (pin-env, pin-file or pin-source), not several")
    pin_file = values.get("pin-file")
    if "pin-source" in values:
        pin_file = _pin_source_path(values["pin-source"])
    pin_env = values.get("pin-env")
    if pin_env is not None and not _ENV_NAME_RE.fullmatch(pin_env):
        raise _bad_spec("pin-env must name an environment variable ([A-Za-z_][A-Za-z0-9_]*)")
    if "token" not in values and "serial" not in values:
        raise _bad_spec("it names no token (token=LABEL or serial=SERIAL)")
    token = values.get("token")
    if token is not None and len(token.encode("utf-8")) > MAX_TOKEN_LABEL_BYTES:
        raise _bad_spec(f"a token label has at most {MAX_TOKEN_LABEL_BYTES} bytes")
    env = os.environ if environ is None else environ
    module = values.get("module") or env.get(ENV_MODULE) or DEFAULT_MODULE
    return Pkcs11Spec(
        module=module,
        token=token,
        serial=values.get("serial"),
        label=values.get("object"),
        object_id=raw_id,
        alg=alg,
        pin=PinSource(env=pin_env, file=pin_file),
    )


_KNOWN_ATTRS: Final[dict[str, str]] = {
    "module": "module",
    "module-path": "module",
    "token": "token",
    "serial": "serial",
    "object": "object",
    "id": "id",
    "type": "type",
    "alg": "alg",
    "pin-env": "pin-env",
    "pin-file": "pin-file",
    "pin-source": "pin-source",
}


def _safe_name(name: str) -> str:
    """An attribute name fit for a message: short and harmless, else a placeholder."""
    if re.fullmatch(r"[a-z][a-z0-9-]{0,31}", name):
        return name
    return "(unprintable name)"


def _pin_source_path(value: str) -> str:
    if value.startswith("file://"):
        return value[len("file://") :]
    if value.startswith("file:"):
        return value[len("file:") :]
    if "://" in value:
        raise _bad_spec("pin-source must be a file (file:PATH)")
    return value


def spec_of(spec: str | Pkcs11Spec) -> Pkcs11Spec:
    """``spec`` parsed if it is a string (see :func:`parse_spec`), else as it is."""
    return spec if isinstance(spec, Pkcs11Spec) else parse_spec(spec)


# --- modules, tokens and the logged-in session ---------------------------------------------


def _p11() -> Any:
    """python-pkcs11, imported on first use so that ``signer`` imports without it."""
    try:
        import pkcs11
    except ImportError:
        raise HsmError("python-pkcs11 is not installed (pip install python-pkcs11)", code=HSM_MODULE_MISSING) from None
    return pkcs11


def _exc() -> Any:
    """python-pkcs11's exception module."""
    return _p11().exceptions


class _Module:
    """One loaded and initialised PKCS#11 module and the lock that serialises calls into it."""

    def __init__(self, path: str, lib: Any) -> None:
        self.path = path
        self.lib = lib
        self.lock = threading.RLock()
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise HsmError(f"the PKCS#11 module {self.path} was closed; open the signer again", code=HSM_ERROR)


_MODULES: dict[str, _Module] = {}
_LINKS: dict[tuple[str, bytes, str], _TokenLink] = {}
_REGISTRY_LOCK = threading.Lock()


def _load_module(path: str) -> _Module:
    """The loaded module at ``path`` (loaded and initialised once per process).

    Raises :class:`HsmError` ``hsm_module_missing`` if there is no file, python-pkcs11 is
    missing or the file is not a loadable PKCS#11 library; ``hsm_error`` if the module
    loads but refuses to initialise (for SoftHSM2: a bad or missing ``SOFTHSM2_CONF``).
    """
    real = os.path.realpath(path)
    with _REGISTRY_LOCK:
        module = _MODULES.get(real)
        if module is not None:
            return module
        if not os.path.isfile(real):
            raise HsmError(f"no PKCS#11 module at {path} (install SoftHSM2 or give module=PATH)",
                           code=HSM_MODULE_MISSING, module=path)
        pkcs11 = _p11()
        try:
            lib = pkcs11.lib(real)
        except pkcs11.exceptions.PKCS11Error as exc:
            if type(exc) is pkcs11.exceptions.PKCS11Error:  # dlopen/dlsym failed
                raise HsmError(f"{path} is not a loadable PKCS#11 module: {exc}", code=HSM_MODULE_MISSING,
                               module=path) from None
            raise HsmError(
                f"the PKCS#11 module {path} failed to initialise ({_ckr(exc)}); "
                "for SoftHSM2 check SOFTHSM2_CONF and the token directory it names",
                code=HSM_ERROR,
                module=path,
            ) from None
        module = _Module(real, lib)
        _MODULES[real] = module
        return module


def close_all() -> None:
    """Close every session this process holds and unload every module it loaded.

    For an orderly shutdown, and for tests that need a module re-initialised (SoftHSM2
    reads ``SOFTHSM2_CONF`` and scans its token directory only at initialisation).
    Signers opened before keep failing with ``hsm_error`` afterwards; open them again.
    """
    with _REGISTRY_LOCK:
        links = list(_LINKS.values())
        modules = list(_MODULES.values())
        _LINKS.clear()
        _MODULES.clear()
    for link in links:
        with link.module.lock:
            link.drop()
    for module in modules:
        with module.lock:
            module.closed = True
            try:
                _p11().unload(module.path)
            except Exception:
                pass


def _find_token(module: _Module, spec: Pkcs11Spec) -> Token:
    """The one initialised token ``spec`` names (caller holds ``module.lock``)."""
    e = _exc()
    kwargs: dict[str, Any] = {}
    if spec.token is not None:
        kwargs["token_label"] = spec.token
    if spec.serial is not None:
        kwargs["token_serial"] = spec.serial.encode("utf-8")
    try:
        tokens = list(module.lib.get_tokens(**kwargs))
    except e.PKCS11Error as exc:
        raise _hsm_error(exc, f"listing the tokens of {module.path}") from None
    pkcs11 = _p11()
    tokens = [t for t in tokens if t.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED]
    if not tokens:
        hint = ""
        if "softhsm" in module.path.lower():
            hint = (f"; SoftHSM2 reads its tokens from the directory named in SOFTHSM2_CONF "
                    f"({os.environ.get('SOFTHSM2_CONF', 'not set')}), scanned when the module is loaded")
        raise HsmError(f"no {spec.describe_token()} in {module.path}{hint}", code=HSM_TOKEN_MISSING,
                       token=spec.token or spec.serial)
    if len(tokens) > 1:
        raise HsmError(f"several tokens match {spec.describe_token()}; name one by serial=", code=HSM_TOKEN_AMBIGUOUS)
    token: Token = tokens[0]
    return token


class _TokenLink:
    """The one logged-in session this process keeps on one token.

    PKCS#11 login state belongs to the application, not to a session: a second ``C_Login``
    fails and one session's logout logs every session out.  So all signers on a token share
    this session; it is opened (and the user logged in) on first use and again after
    :meth:`drop`.  ``epoch`` changes whenever the session does, so object handles found in
    an older session are looked up again.  Callers hold ``module.lock``.
    """

    def __init__(self, module: _Module, label: str, serial: bytes) -> None:
        self.module = module
        self.label = label
        self.serial = serial
        self.epoch = 0
        self._session: Session | None = None
        self._login_required = True

    def session(self, pin: PinSource, *, check_pin: bool = False) -> Session:
        """The logged-in session, opened now if there is none (PIN read from ``pin`` then).

        With ``check_pin`` the PIN source is read even if the process is logged in already,
        so a signer whose PIN source is unset or unreadable fails the same way whether or
        not another signer logged in first.  (Whether that PIN is *correct* cannot be
        asked of a token that is logged in: PKCS#11 login belongs to the application.)
        """
        self.module.check_open()
        if self._session is None:
            self._session = self._login(pin)
            self.epoch += 1
        elif check_pin and self._login_required:
            pin.read()
        return self._session

    def drop(self) -> None:
        """Forget the session (closing it if it still works), so the next use reopens it."""
        session, self._session = self._session, None
        self.epoch += 1
        if session is not None and not self.module.closed:
            try:
                session.close()
            except Exception:
                pass

    def token(self) -> Token:
        """The token, found again by serial and label (its slot may have changed)."""
        spec = Pkcs11Spec(module=self.module.path, token=self.label, serial=self.serial.decode("utf-8", "replace"))
        return _find_token(self.module, spec)

    def _login(self, pin: PinSource) -> Session:
        pkcs11 = _p11()
        e = pkcs11.exceptions
        token = self.token()
        flags = token.flags
        name = f"token {self.label!r}"
        if flags & pkcs11.TokenFlag.USER_PIN_LOCKED:
            raise HsmError(f"the user PIN of {name} is locked (too many wrong PINs); "
                           "the security officer must unlock or reset it", code=HSM_PIN_LOCKED, token=self.label)
        self._login_required = bool(flags & pkcs11.TokenFlag.LOGIN_REQUIRED)
        if not self._login_required:
            return self._open(token, None)
        secret = pin.read()
        try:
            return self._open(token, secret)
        except e.UserAlreadyLoggedIn:
            # Another session of this process logged in already: a new session shares it.
            return self._open(token, None)
        except e.PinIncorrect:
            warn = ""
            try:
                now = self.token().flags
                if now & pkcs11.TokenFlag.USER_PIN_FINAL_TRY:
                    warn = "; the token says one more wrong PIN locks it"
                elif now & pkcs11.TokenFlag.USER_PIN_COUNT_LOW:
                    warn = "; the token counts failed logins"
            except HsmError:
                pass
            raise HsmError(f"{name} refused the PIN from {pin.describe()}{warn}", code=HSM_PIN_INCORRECT,
                           token=self.label) from None
        except (e.PinInvalid, e.PinLenRange):
            raise HsmError(f"{name} refused the PIN from {pin.describe()} (invalid form or length)",
                           code=HSM_PIN_INCORRECT, token=self.label) from None
        except e.PinLocked:
            raise HsmError(f"the user PIN of {name} is locked", code=HSM_PIN_LOCKED, token=self.label) from None
        except e.PKCS11Error as exc:
            raise _hsm_error(exc, f"logging in to {name}") from None

    @staticmethod
    def _open(token: Token, pin: str | None) -> Session:
        e = _exc()
        try:
            return token.open(rw=True, user_pin=pin)
        except (e.TokenWriteProtected, e.SessionReadOnly):
            return token.open(rw=False, user_pin=pin)


def _open_link(spec: Pkcs11Spec) -> tuple[_Module, _TokenLink]:
    """The module and the token link for ``spec`` (no login yet)."""
    module = _load_module(spec.module)
    with module.lock:
        module.check_open()
        token = _find_token(module, spec)
        key = (module.path, bytes(token.serial), token.label)
        with _REGISTRY_LOCK:
            link = _LINKS.get(key)
            if link is None or link.module is not module:
                link = _TokenLink(module, token.label, bytes(token.serial))
                _LINKS[key] = link
        return module, link


T = TypeVar("T")


def _with_session(module: _Module, link: _TokenLink, pin: PinSource, what: str,
                  fn: Callable[[Session], T], *, check_pin: bool = False) -> T:
    """``fn(session)`` under the module lock; a lost session is reopened once and retried.

    ``check_pin`` is passed to :meth:`_TokenLink.session`.  Raises :class:`HsmError`
    (PKCS#11 failures mapped to codes; ``HsmError`` from ``fn`` passes through).
    """
    e = _exc()
    lost = _lost_session_errors()
    with module.lock:
        for attempt in (1, 2):
            try:
                return fn(link.session(pin, check_pin=check_pin and attempt == 1))
            except lost as exc:
                link.drop()
                if attempt == 2:
                    raise _hsm_error(exc, what) from None
            except e.PKCS11Error as exc:
                raise _hsm_error(exc, what) from None
    raise RuntimeError("unreachable")  # pragma: no cover


def _lost_session_errors() -> tuple[type[Exception], ...]:
    e = _exc()
    return (
        e.SessionHandleInvalid, e.SessionClosed, e.DeviceRemoved, e.TokenNotPresent, e.TokenNotRecognised,
        e.UserNotLoggedIn, e.ObjectHandleInvalid, e.KeyHandleInvalid,
    )  # fmt: skip


def _ckr(exc: BaseException) -> str:
    """A PKCS#11 failure in words: python-pkcs11's exception name (and text, if any)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _hsm_error(exc: BaseException, what: str) -> HsmError:
    """The :class:`HsmError` for a python-pkcs11 exception raised while doing ``what``."""
    e = _exc()
    code = HSM_ERROR
    if isinstance(exc, e.MechanismInvalid | e.MechanismParamInvalid | e.FunctionNotSupported):
        code = HSM_MECHANISM_UNSUPPORTED
    elif isinstance(exc, e.PinIncorrect | e.PinInvalid | e.PinLenRange):
        code = HSM_PIN_INCORRECT
    elif isinstance(exc, e.PinLocked):
        code = HSM_PIN_LOCKED
    elif isinstance(exc, e.NoSuchKey):
        code = HSM_KEY_MISSING
    elif isinstance(exc, e.MultipleObjectsReturned):
        code = HSM_KEY_AMBIGUOUS
    elif isinstance(exc, e.NoSuchToken | e.TokenNotPresent | e.TokenNotRecognised | e.DeviceRemoved
                    | e.SlotIDInvalid):
        code = HSM_TOKEN_MISSING
    return HsmError(f"{what}: {_ckr(exc)}", code=code)


# --- keys on the token ---------------------------------------------------------------------


def _alg_of(key: Any) -> str | None:
    """``ed25519``/``ecdsa-p256`` for a key object of that kind, else ``None``."""
    pkcs11 = _p11()
    try:
        key_type = key.key_type
        params = bytes(key[pkcs11.Attribute.EC_PARAMS])
    except (pkcs11.exceptions.PKCS11Error, KeyError, TypeError):
        return None
    if key_type == pkcs11.KeyType.EC and params == _P256_PARAMS:
        return sigs.ALG_ECDSA_P256
    if key_type == pkcs11.KeyType.EC_EDWARDS and params in (_ED25519_PARAMS_OID, _ED25519_PARAMS_NAME):
        return sigs.ALG_ED25519
    return None


def _find_private(session: Session, spec: Pkcs11Spec) -> PrivateKeyObject:
    """The one private key ``spec`` names.  Raises ``hsm_key_missing``/``hsm_key_ambiguous``."""
    pkcs11 = _p11()
    if spec.label is None and spec.object_id is None:
        raise _bad_spec("it names no key (object=LABEL or id=ID)")
    attrs: dict[Any, Any] = {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY}
    if spec.label is not None:
        attrs[pkcs11.Attribute.LABEL] = spec.label
    if spec.object_id is not None:
        attrs[pkcs11.Attribute.ID] = spec.object_id
    found = _objects(session, attrs)
    if not found:
        raise HsmError(f"no private {spec.describe_key()} on {spec.describe_token()}", code=HSM_KEY_MISSING,
                       token=spec.token, key=spec.label)
    if len(found) > 1:
        raise HsmError(f"several private keys match {spec.describe_key()} on {spec.describe_token()}; "
                       "name one by id=", code=HSM_KEY_AMBIGUOUS)
    key: PrivateKeyObject = found[0]
    return key


def _objects(session: Session, attrs: dict[Any, Any]) -> list[Any]:
    """Every object matching ``attrs``, the search finished before returning.

    A session runs one ``C_FindObjects`` search at a time; a search left open (a half-read
    generator) would make the next one fail with ``OperationActive``.
    """
    return list(session.get_objects(attrs))


def _der_octet_string(data: bytes) -> bytes | None:
    """The content of a DER OCTET STRING that is exactly ``data``, else ``None``."""
    if len(data) < 2 or data[0] != 0x04:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 2 or len(data) < 2 + n:
            return None
        length = int.from_bytes(data[2 : 2 + n], "big")
        offset = 2 + n
    if offset + length != len(data):
        return None
    return data[offset:]


def _encode_public(alg: str, point: bytes) -> bytes:
    """The ledger's public key encoding for a raw EC point / Ed25519 key from the token.

    Raises ``ValueError`` if ``point`` is not a valid key of ``alg``.
    """
    if alg == sigs.ALG_ED25519:
        if len(point) != sigs.PUBLIC_KEY_SIZES[sigs.ALG_ED25519]:
            raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(point)}")
        sigs.check_public_key(alg, point)
        return point
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def _point_from_ec_point(alg: str, value: bytes) -> bytes:
    """``CKA_EC_POINT`` is a DER OCTET STRING holding the point (PKCS#11); a few tokens
    give the raw point.  Return the raw point."""
    inner = _der_octet_string(value)
    if inner is not None and ((alg == sigs.ALG_ED25519 and len(inner) == 32)
                              or (alg == sigs.ALG_ECDSA_P256 and len(inner) in (33, 65))):
        return inner
    return value


def _public_of(session: Session, private: PrivateKeyObject, alg: str, spec: Pkcs11Spec) -> bytes:
    """The ledger encoding of ``private``'s public key: from the public key object with the
    same ``CKA_ID`` (else label), else from the private key's ``CKA_PUBLIC_KEY_INFO``."""
    pkcs11 = _p11()
    e = pkcs11.exceptions
    A = pkcs11.Attribute  # noqa: N806 - python-pkcs11's enum
    object_id = _attr(private, A.ID) or b""
    label = _attr(private, A.LABEL)
    attrs: dict[Any, Any] = {A.CLASS: pkcs11.ObjectClass.PUBLIC_KEY}
    if object_id:
        attrs[A.ID] = bytes(object_id)
    elif label:
        attrs[A.LABEL] = label
    candidates = [k for k in _objects(session, attrs) if _alg_of(k) == alg] if len(attrs) > 1 else []
    points: set[bytes] = set()
    for k in candidates:
        try:
            points.add(_encode_public(alg, _point_from_ec_point(alg, bytes(k[A.EC_POINT]))))
        except (ValueError, Rejected, e.PKCS11Error):
            continue
    if len(points) == 1:
        return points.pop()
    if len(points) > 1:
        raise HsmError(f"several public keys sit beside the private {spec.describe_key()}; name it by id=",
                       code=HSM_KEY_AMBIGUOUS)
    info = _attr(private, A.PUBLIC_KEY_INFO)
    if info:
        try:
            loaded = serialization.load_der_public_key(bytes(info))
            if isinstance(loaded, ed25519.Ed25519PublicKey) and alg == sigs.ALG_ED25519:
                return loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if isinstance(loaded, ec.EllipticCurvePublicKey) and alg == sigs.ALG_ECDSA_P256:
                return loaded.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
        except ValueError:
            pass
    raise HsmError(f"the public half of the private {spec.describe_key()} is not on {spec.describe_token()} "
                   "(no public key object with the same id or label)", code=HSM_KEY_MISSING)


def _attr(obj: Any, attribute: Any) -> Any:
    """An attribute's value, or ``None`` if the object does not have (or show) it."""
    e = _exc()
    try:
        return obj[attribute]
    except (e.AttributeTypeInvalid, e.AttributeSensitive, KeyError):
        return None


def _mechanisms(token: Token) -> set[Any]:
    e = _exc()
    try:
        return set(token.slot.get_mechanisms())
    except e.PKCS11Error as exc:
        raise _hsm_error(exc, f"listing the mechanisms of token {token.label!r}") from None


def _require_mechanism(token: Token, mechanism: Any, why: str) -> None:
    if mechanism not in _mechanisms(token):
        raise HsmError(f"token {token.label!r} lacks {mechanism.name} ({why})", code=HSM_MECHANISM_UNSUPPORTED,
                       token=token.label, mechanism=mechanism.name)


def _sign_mechanism(alg: str) -> Any:
    pkcs11 = _p11()
    return pkcs11.Mechanism.EDDSA if alg == sigs.ALG_ED25519 else pkcs11.Mechanism.ECDSA


# --- the signer ----------------------------------------------------------------------------


class Pkcs11Signer:
    """A private key held by a PKCS#11 token; satisfies the :class:`signer.Signer` protocol.

    Open one with :meth:`open` (or :func:`signer.load_signer` with a ``pkcs11:`` spec) or
    make a new key with :func:`generate_key`.  Thread-safe.  ``storage`` is ``"hsm"``.
    """

    __slots__ = ("_alg", "_key", "_key_id", "_label", "_link", "_module", "_object_id", "_public_key", "_spec")

    def __init__(self, *, module: _Module, link: _TokenLink, spec: Pkcs11Spec, alg: str, public_key: bytes,
                 label: str | None, object_id: bytes | None) -> None:
        """Internal: use :meth:`open` or :func:`generate_key`."""
        self._module = module
        self._link = link
        self._alg = alg
        self._public_key = public_key
        self._key_id = compute_key_id(alg, public_key)
        self._label = label
        self._object_id = object_id
        # The spec that finds exactly this key again after a session is lost.
        self._spec = replace(spec, token=link.label, label=label if label else spec.label,
                             object_id=object_id if object_id else spec.object_id, alg=alg)
        self._key: tuple[int, PrivateKeyObject] | None = None

    @classmethod
    def open(cls, spec: str | Pkcs11Spec, *, pin_env: str | None = None, pin_file: str | None = None) -> Pkcs11Signer:
        """The signer for the key ``spec`` names; ``pin_env``/``pin_file`` override its PIN source.

        Loads the module, logs in to the token (once per process and token), finds the
        private key and its public key, checks it (ed25519 or ecdsa-p256, matching the
        spec's ``alg`` if any; sensitive and not extractable; the token has the signing
        mechanism) and signs a self-test message that must verify.

        Raises :class:`HsmError`: ``unsupported_spec`` (bad spec or no key named),
        ``hsm_module_missing``, ``hsm_token_missing``, ``hsm_token_ambiguous``,
        ``hsm_pin_missing``, ``hsm_pin_incorrect``, ``hsm_pin_locked``,
        ``hsm_key_missing``, ``hsm_key_ambiguous``, ``unsupported_alg`` (not a P-256 or
        Ed25519 key), ``hsm_key_mismatch``, ``hsm_key_extractable``,
        ``hsm_mechanism_unsupported``, ``hsm_error``.
        """
        parsed = spec_of(spec).with_pin(env=pin_env, file=pin_file)
        if parsed.label is None and parsed.object_id is None:
            raise _bad_spec("it names no key (object=LABEL or id=ID)")
        module, link = _open_link(parsed)

        def build(session: Session) -> Pkcs11Signer:
            private = _find_private(session, parsed)
            alg = _alg_of(private)
            if alg is None:
                raise HsmError(f"the private {parsed.describe_key()} is neither a P-256 nor an Ed25519 key",
                               code=UNSUPPORTED_ALG)
            if parsed.alg is not None and parsed.alg != alg:
                raise HsmError(f"the spec says alg={parsed.alg} but the {parsed.describe_key()} is {alg}",
                               code=HSM_KEY_MISMATCH)
            _check_held(private, parsed)
            _require_mechanism(session.token, _sign_mechanism(alg), f"needed to sign with {alg}")
            public = _public_of(session, private, alg, parsed)
            label = _attr(private, _p11().Attribute.LABEL) or None
            object_id = bytes(_attr(private, _p11().Attribute.ID) or b"") or None
            signer = cls(module=module, link=link, spec=parsed, alg=alg, public_key=public, label=label,
                         object_id=object_id)
            signer._key = (link.epoch, private)
            return signer

        signer = _with_session(module, link, parsed.pin, f"opening {parsed.describe_key()}", build, check_pin=True)
        signer._self_test()
        return signer

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
        return STORAGE_HSM

    def sign(self, message: bytes | bytearray | memoryview) -> bytes:
        """The 64-byte signature over ``message`` (the exact bytes to sign, tag included).

        Ed25519: the token's ``CKM_EDDSA`` signature over ``message``.  ecdsa-p256: the
        token's raw ``CKM_ECDSA`` signature over SHA-256 of ``message``, as ``r || s``,
        always low-S.  A lost session is reopened and the signature asked for once more.

        Raises ``TypeError`` if ``message`` is not bytes-like; :class:`HsmError`
        (``hsm_pin_*``, ``hsm_token_missing``, ``hsm_key_missing``,
        ``hsm_mechanism_unsupported``, ``hsm_error``) if the token cannot sign.
        """
        if not isinstance(message, bytes | bytearray | memoryview):
            raise TypeError(f"message must be bytes, not {type(message).__name__}")
        msg = bytes(message)
        data = hashlib.sha256(msg).digest() if self._alg == sigs.ALG_ECDSA_P256 else msg
        mechanism = _sign_mechanism(self._alg)

        def sign(session: Session) -> bytes:
            raw: bytes = self._private_key(session).sign(data, mechanism=mechanism)
            return bytes(raw)

        raw = _with_session(self._module, self._link, self._spec.pin, f"signing with {self._spec.describe_key()}", sign)
        return self._finish(raw)

    # public key export

    @property
    def locator(self) -> str:
        """Where the private key lives: a ``pkcs11:`` spec without PIN source."""
        return self._spec.locator()

    @property
    def token_label(self) -> str:
        return self._link.label

    @property
    def label(self) -> str | None:
        """The key's ``CKA_LABEL`` (``None`` if it has none)."""
        return self._label

    @property
    def object_id(self) -> bytes | None:
        """The key's ``CKA_ID`` (``None`` if empty)."""
        return self._object_id

    def public(self) -> PublicKey:
        """The public half as a :class:`~signer.software.PublicKey` with storage ``hsm`` and
        the :attr:`locator`."""
        return PublicKey(self._alg, self._public_key, STORAGE_HSM, self.locator)

    def record(self) -> dict[str, Any]:
        """``{"alg", "pub", "storage": "hsm"}``: the key entry enrolment puts on the ledger."""
        return {"alg": self._alg, "pub": self._public_key, "storage": STORAGE_HSM}

    def __repr__(self) -> str:
        return f"Pkcs11Signer(alg={self._alg!r}, key_id={self._key_id!r}, token={self._link.label!r}, " \
               f"label={self._label!r})"

    # internals

    def _private_key(self, session: Session) -> PrivateKeyObject:
        """The private key object in the current session (found again after a reopen)."""
        cached = self._key
        if cached is not None and cached[0] == self._link.epoch:
            return cached[1]
        key = _find_private(session, self._spec)
        self._key = (self._link.epoch, key)
        return key

    def _finish(self, raw: bytes) -> bytes:
        if len(raw) != sigs.SIGNATURE_SIZE:
            raise HsmError(f"the token returned a {len(raw)}-byte {self._alg} signature, not 64", code=HSM_ERROR)
        if self._alg == sigs.ALG_ED25519:
            return raw
        try:
            return sigs.normalize_low_s(raw)
        except ValueError as exc:
            raise HsmError(f"the token returned a malformed ECDSA signature: {exc}", code=HSM_ERROR) from None

    def _self_test(self) -> None:
        signature = self.sign(SELF_TEST_MESSAGE)
        if not sigs.verify_signature(self._alg, self._public_key, SELF_TEST_MESSAGE, signature):
            raise HsmError(f"the public key beside {self._spec.describe_key()} does not verify its signatures "
                           "(public and private objects do not belong together)", code=HSM_KEY_MISMATCH)


def _check_held(private: Any, spec: Pkcs11Spec) -> None:
    """Refuse a private key the token would let out: storage ``hsm`` must be true."""
    A = _p11().Attribute  # noqa: N806 - python-pkcs11's enum
    sensitive = _attr(private, A.SENSITIVE)
    extractable = _attr(private, A.EXTRACTABLE)
    if sensitive is not True or extractable is not False:
        raise HsmError(f"the private {spec.describe_key()} is not held by the HSM alone (CKA_SENSITIVE={sensitive}, "
                       f"CKA_EXTRACTABLE={extractable}); generate a new key on the token", code=HSM_KEY_EXTRACTABLE)


# --- key generation ---------------------------------------------------------------------------


def generate_key(spec: str | Pkcs11Spec, alg: str, *, pin_env: str | None = None,
                 pin_file: str | None = None) -> Pkcs11Signer:
    """Generate an ``alg`` key pair on the token ``spec`` names, labelled ``object=``; its signer.

    Both objects are token objects (``CKA_TOKEN``) with the label and, as ``CKA_ID``, the
    16 bytes of the new key's ledger key id; the private key is ``CKA_PRIVATE``,
    ``CKA_SENSITIVE``, not ``CKA_EXTRACTABLE``, and may only sign.  Ed25519 parameters are
    given as the curve OID and, if the token refuses that, as the name ``edwards25519``.

    Raises :class:`HsmError`: ``unsupported_spec`` (no ``object=`` label),
    ``unsupported_alg``, ``hsm_key_exists`` (a private key with that label is there),
    ``hsm_mechanism_unsupported`` (no key-pair generation mechanism for ``alg``), and
    whatever :meth:`Pkcs11Signer.open` raises for module, token and PIN.
    """
    parsed = spec_of(spec).with_pin(env=pin_env, file=pin_file)
    if alg not in sigs.ALGS:
        raise HsmError(f"unsupported key algorithm {alg!r}; use one of {', '.join(sigs.ALGS)}", code=UNSUPPORTED_ALG)
    if parsed.label is None:
        raise _bad_spec("key generation needs a label (object=LABEL)")
    if parsed.alg is not None and parsed.alg != alg:
        raise HsmError(f"the spec says alg={parsed.alg}, asked to generate {alg}", code=HSM_KEY_MISMATCH)
    label = parsed.label
    module, link = _open_link(parsed)
    pkcs11 = _p11()
    A = pkcs11.Attribute  # noqa: N806 - python-pkcs11's enum

    def make(session: Session) -> bytes:
        existing = _objects(session, {A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY, A.LABEL: label})
        if existing:
            raise HsmError(f"a private key labelled {label!r} is already on {parsed.describe_token()}",
                           code=HSM_KEY_EXISTS, key=label)
        temp_id = secrets.token_bytes(16)
        if alg == sigs.ALG_ECDSA_P256:
            key_type, mechanism = pkcs11.KeyType.EC, pkcs11.Mechanism.EC_KEY_PAIR_GEN
            param_choices = [_P256_PARAMS]
        else:
            key_type, mechanism = pkcs11.KeyType.EC_EDWARDS, pkcs11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN
            param_choices = [_ED25519_PARAMS_OID, _ED25519_PARAMS_NAME]
        _require_mechanism(session.token, mechanism, f"needed to generate {alg} keys")
        _require_mechanism(session.token, _sign_mechanism(alg), f"needed to sign with {alg}")
        private_template = {
            A.TOKEN: True, A.PRIVATE: True, A.SENSITIVE: True, A.EXTRACTABLE: False,
            A.SIGN: True, A.DERIVE: False, A.DECRYPT: False, A.UNWRAP: False,
        }  # fmt: skip
        e = pkcs11.exceptions
        last: Exception | None = None
        for params in param_choices:
            try:
                public, private = session.generate_keypair(
                    key_type,
                    id=temp_id,
                    label=label,
                    store=True,
                    capabilities=pkcs11.MechanismFlag.SIGN | pkcs11.MechanismFlag.VERIFY,
                    mechanism=mechanism,
                    public_template={A.EC_PARAMS: params, A.TOKEN: True, A.VERIFY: True},
                    private_template=private_template,
                )
                break
            except (e.DomainParamsInvalid, e.AttributeValueInvalid, e.TemplateInconsistent) as exc:
                last = exc
        else:
            raise _hsm_error(last or RuntimeError("no parameters"), f"generating an {alg} key on {link.label!r}")
        try:
            point = _encode_public(alg, _point_from_ec_point(alg, bytes(public[A.EC_POINT])))
        except (ValueError, Rejected) as exc:
            raise HsmError(f"the token made an {alg} public key this ledger cannot use: {exc}",
                           code=HSM_ERROR) from None
        final_id = bytes.fromhex(compute_key_id(alg, point))
        try:
            public[A.ID] = final_id
            private[A.ID] = final_id
        except e.PKCS11Error:
            final_id = temp_id
        return final_id

    object_id = _with_session(module, link, parsed.pin, f"generating an {alg} key on {parsed.describe_token()}", make,
                              check_pin=True)
    return Pkcs11Signer.open(parsed.with_key(object_id=object_id, alg=alg))


# --- listing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenInfo:
    """A token as the module reports it (no login needed)."""

    label: str
    serial: str
    manufacturer: str
    model: str
    slot: int
    initialized: bool
    user_pin_initialized: bool
    pin_locked: bool
    pin_count_low: bool
    ed25519: bool
    ecdsa_p256: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class KeyInfo:
    """A private key on a token, with what enrolment needs to know of it."""

    label: str | None
    object_id: str | None
    alg: str | None
    public_key: str | None
    key_id: str | None
    sensitive: bool | None
    extractable: bool | None
    locator: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_tokens(module: str | None = None) -> list[TokenInfo]:
    """Every token with a slot in ``module`` (default ``LAMBTRACE_PKCS11_MODULE`` or
    SoftHSM2's), initialised or not.  Raises :class:`HsmError` ``hsm_module_missing`` /
    ``hsm_error``."""
    path = module or os.environ.get(ENV_MODULE) or DEFAULT_MODULE
    mod = _load_module(path)
    pkcs11 = _p11()
    F = pkcs11.TokenFlag  # noqa: N806 - python-pkcs11's enum
    out: list[TokenInfo] = []
    with mod.lock:
        mod.check_open()
        try:
            for slot in mod.lib.get_slots(token_present=True):
                token = slot.get_token()
                mechanisms = set(slot.get_mechanisms())
                flags = token.flags
                out.append(TokenInfo(
                    label=token.label,
                    serial=bytes(token.serial).decode("utf-8", "replace").strip(),
                    manufacturer=token.manufacturer_id,
                    model=token.model,
                    slot=int(slot.slot_id),
                    initialized=bool(flags & F.TOKEN_INITIALIZED),
                    user_pin_initialized=bool(flags & F.USER_PIN_INITIALIZED),
                    pin_locked=bool(flags & F.USER_PIN_LOCKED),
                    pin_count_low=bool(flags & F.USER_PIN_COUNT_LOW),
                    ed25519=pkcs11.Mechanism.EDDSA in mechanisms,
                    ecdsa_p256=pkcs11.Mechanism.ECDSA in mechanisms,
                ))
        except pkcs11.exceptions.PKCS11Error as exc:
            raise _hsm_error(exc, f"listing the tokens of {path}") from None
    return out


def list_keys(spec: str | Pkcs11Spec, *, pin_env: str | None = None, pin_file: str | None = None) -> list[KeyInfo]:
    """The private keys on the token ``spec`` names (logs in), each with its public key.

    Keys that are not P-256 or Ed25519 are listed with ``alg`` ``None``.  Raises what
    :meth:`Pkcs11Signer.open` raises for module, token and PIN.
    """
    parsed = spec_of(spec).with_pin(env=pin_env, file=pin_file)
    module, link = _open_link(parsed)
    pkcs11 = _p11()
    A = pkcs11.Attribute  # noqa: N806 - python-pkcs11's enum

    def collect(session: Session) -> list[KeyInfo]:
        keys: list[KeyInfo] = []
        for private in _objects(session, {A.CLASS: pkcs11.ObjectClass.PRIVATE_KEY}):
            label = _attr(private, A.LABEL) or None
            object_id = bytes(_attr(private, A.ID) or b"") or None
            alg = _alg_of(private)
            pub: bytes | None = None
            if alg is not None:
                try:
                    pub = _public_of(session, private, alg, parsed.with_key(label=label, object_id=object_id))
                except HsmError:
                    pub = None
            key_spec = Pkcs11Spec(module=parsed.module, token=link.label, label=label, object_id=object_id, alg=alg)
            keys.append(KeyInfo(
                label=label,
                object_id=object_id.hex() if object_id else None,
                alg=alg,
                public_key=pub.hex() if pub else None,
                key_id=compute_key_id(alg, pub) if alg and pub else None,
                sensitive=_attr(private, A.SENSITIVE),
                extractable=_attr(private, A.EXTRACTABLE),
                locator=key_spec.locator() if (label or object_id) else None,
            ))
        return keys

    return _with_session(module, link, parsed.pin, f"listing the keys on {parsed.describe_token()}", collect,
                         check_pin=True)


# --- token initialisation ---------------------------------------------------------------------


class _CkVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte)]


class _CkFunctionListHead(ctypes.Structure):
    """The first entries of ``CK_FUNCTION_LIST`` (PKCS#11 2.40 order), up to ``C_InitToken``."""

    _fields_ = [
        ("version", _CkVersion),
        ("C_Initialize", ctypes.c_void_p),
        ("C_Finalize", ctypes.c_void_p),
        ("C_GetInfo", ctypes.c_void_p),
        ("C_GetFunctionList", ctypes.c_void_p),
        ("C_GetSlotList", ctypes.c_void_p),
        ("C_GetSlotInfo", ctypes.c_void_p),
        ("C_GetTokenInfo", ctypes.c_void_p),
        ("C_GetMechanismList", ctypes.c_void_p),
        ("C_GetMechanismInfo", ctypes.c_void_p),
        ("C_InitToken", ctypes.c_void_p),
    ]


_CKR_TEXT: Final[dict[int, tuple[str, str]]] = {
    0xA0: (HSM_PIN_INCORRECT, "CKR_PIN_INCORRECT: the slot's token is initialised and the SO PIN is wrong"),
    0xA1: (HSM_PIN_INVALID, "CKR_PIN_INVALID: the token does not accept that SO PIN"),
    0xA2: (HSM_PIN_INVALID, "CKR_PIN_LEN_RANGE: SO PIN too short or too long (SoftHSM2: 4-255 bytes)"),
    0xA4: (HSM_PIN_LOCKED, "CKR_PIN_LOCKED"),
    0xB6: (HSM_ERROR, "CKR_SESSION_EXISTS: a session is open on that slot"),
    0xE0: (HSM_TOKEN_MISSING, "CKR_TOKEN_NOT_PRESENT"),
    0x03: (HSM_TOKEN_MISSING, "CKR_SLOT_ID_INVALID"),
    0x54: (HSM_MECHANISM_UNSUPPORTED, "CKR_FUNCTION_NOT_SUPPORTED: the module cannot initialise tokens"),
}


def _c_init_token(module: _Module, slot_id: int, so_pin: bytes, label: str) -> None:
    """``C_InitToken`` through the module's function list (python-pkcs11 does not wrap it).

    The module is already initialised by python-pkcs11; the caller holds its lock.
    """
    library = ctypes.CDLL(module.path)
    get_list = library.C_GetFunctionList
    get_list.argtypes = [ctypes.POINTER(ctypes.POINTER(_CkFunctionListHead))]
    get_list.restype = ctypes.c_ulong
    table = ctypes.POINTER(_CkFunctionListHead)()
    rv = get_list(ctypes.byref(table))
    if rv != 0 or not table or not table.contents.C_InitToken:
        raise HsmError(f"{module.path} gives no C_InitToken (CKR 0x{rv:x})", code=HSM_MECHANISM_UNSUPPORTED)
    prototype = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
    init_token_fn = prototype(table.contents.C_InitToken)
    padded = label.encode("utf-8").ljust(MAX_TOKEN_LABEL_BYTES, b" ")
    rv = init_token_fn(slot_id, so_pin, len(so_pin), padded)
    if rv != 0:
        code, text = _CKR_TEXT.get(int(rv), (HSM_ERROR, f"CKR 0x{int(rv):x}"))
        raise HsmError(f"C_InitToken failed for token {label!r}: {text}", code=code, token=label)


def init_token(label: str, *, pin: PinSource, so_pin: PinSource, module: str | None = None) -> TokenInfo:
    """Initialise a free slot's token as ``label`` with the user PIN and SO PIN read from
    ``pin`` and ``so_pin`` (for SoftHSM2 set-ups: SoftHSM2 always keeps one free slot).

    Uses ``C_InitToken`` (SO PIN, label) then logs in as SO and ``C_InitPIN`` (user PIN);
    no PIN goes through a command line or a log.  The new token is visible to this
    process at once.

    Raises :class:`HsmError`: ``unsupported_spec`` for an empty label or one over 32 bytes,
    ``hsm_token_exists`` if a token already has ``label``, ``hsm_token_missing`` if no
    slot is free, ``hsm_pin_missing``/``hsm_pin_invalid`` for PINs that cannot be read or
    that the token refuses, ``hsm_module_missing``, ``hsm_error``.
    """
    if not label or len(label.encode("utf-8")) > MAX_TOKEN_LABEL_BYTES or _CONTROL_RE.search(label):
        raise _bad_spec(f"a token label has 1 to {MAX_TOKEN_LABEL_BYTES} bytes and no control characters")
    path = module or os.environ.get(ENV_MODULE) or DEFAULT_MODULE
    mod = _load_module(path)
    user_pin = pin.read()
    so_secret = so_pin.read()
    pkcs11 = _p11()
    e = pkcs11.exceptions
    with mod.lock:
        mod.check_open()
        try:
            slots = list(mod.lib.get_slots(token_present=True))
            tokens = [(slot, slot.get_token()) for slot in slots]
        except e.PKCS11Error as exc:
            raise _hsm_error(exc, f"listing the slots of {path}") from None
        for _slot, token in tokens:
            if token.label == label and token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
                raise HsmError(f"a token labelled {label!r} exists already in {path}", code=HSM_TOKEN_EXISTS,
                               token=label)
        free = [slot for slot, token in tokens if not token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED]
        if not free:
            raise HsmError(f"no free slot in {path} to initialise a token in", code=HSM_TOKEN_MISSING)
        _c_init_token(mod, int(free[0].slot_id), so_secret.encode("utf-8"), label)
        spec = Pkcs11Spec(module=path, token=label)
        token = _find_token(mod, spec)
        try:
            with token.open(rw=True, so_pin=so_secret) as session:
                session.init_pin(user_pin)
        except (e.PinInvalid, e.PinLenRange):
            raise HsmError(f"token {label!r} does not accept the user PIN from {pin.describe()} "
                           "(SoftHSM2: 4-255 bytes)", code=HSM_PIN_INVALID, token=label) from None
        except e.PKCS11Error as exc:
            raise _hsm_error(exc, f"setting the user PIN of token {label!r}") from None
    for info in list_tokens(path):
        if info.label == label and info.initialized:
            return info
    raise HsmError(f"token {label!r} did not appear after initialisation", code=HSM_TOKEN_MISSING)  # pragma: no cover
