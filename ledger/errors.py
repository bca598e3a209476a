"""One error taxonomy for the whole project.

``LedgerError`` is the root of every domain error.  Untrusted input that does not
hold up raises one of these with a stable snake_case ``code``; the API maps them to
4xx answers.  Programmer misuse raises ``RuntimeError`` (or ``TypeError``) instead,
which the API never turns into a 4xx.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """Base of every domain error; carries a stable snake_case ``code``."""

    code: str = "ledger_error"

    def __init__(self, message: str = "", *, code: str | None = None, **details: Any) -> None:
        super().__init__(message or self.code)
        if code is not None:
            self.code = code
        self.message = message or self.code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        out.update(self.details)
        return out


class DecodeError(LedgerError):
    """Bytes that are not valid canonical msgpack within the configured limits."""

    code = "malformed"


class Rejected(LedgerError):
    """An event that the rules (or the event schema) refuse; ``code`` says why."""

    code = "rejected"

    def __init__(self, code: str, message: str = "", **details: Any) -> None:
        super().__init__(message or code, code=code, **details)

    def untraced(self) -> Rejected:
        """This refusal without its traceback or chained causes, to be kept in a list that
        the frame which caught it also holds.

        Kept with them, a traceback's frames refer back to that list and to every value
        of the request or block: a reference cycle only the cyclic collector frees, which
        a node runs rarely (``lambtrace.tuning``), so a peer relaying megabytes of junk
        leaves pinned all of it (measured: +760 MB RSS per 800 MB relayed).
        """
        self.__cause__ = self.__context__ = None
        return self.with_traceback(None)


class StorageError(LedgerError):
    """The store could not read or write what it was asked to."""

    code = "storage_error"


class TransportError(LedgerError):
    """A peer connection failed or sent something unacceptable."""

    code = "transport_error"


class VerificationError(LedgerError):
    """A proof, signature or certificate does not check out."""

    code = "verification_failed"


class ProofError(VerificationError):
    """A proof is malformed: wrong length, index out of range, bad sizes."""

    code = "bad_proof"


class RootMismatch(VerificationError):
    """A recomputed root differs from the one that was expected."""

    code = "root_mismatch"

    def __init__(self, expected: bytes, calculated: bytes, message: str = "") -> None:
        super().__init__(
            message or f"root mismatch: expected {expected.hex()}, calculated {calculated.hex()}",
            expected=expected.hex(),
            calculated=calculated.hex(),
        )
        self.expected = expected
        self.calculated = calculated


class BadSignature(VerificationError):
    """A signature does not verify under the key it names."""

    code = "bad_signature"


class InsufficientSignatures(VerificationError):
    """A commit certificate holds 2/3 or less of the voting power."""

    code = "insufficient_signatures"
