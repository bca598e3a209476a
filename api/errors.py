"""Domain errors to HTTP answers (STYLE §6).

Every error answer has one shape, ``{"error": {"code": ..., "message": ..., ...}}``,
negotiated like any other answer (JSON unless the client asks for msgpack).  Domain
errors (:class:`~ledger.errors.LedgerError` and its subclasses) map to a fitting
status by their ``code`` first and their class second; werkzeug's HTTP exceptions
(unknown route, wrong method, body too large) get a stable snake_case code; anything
else is a bug and becomes ``500 internal``, logged with its traceback.  Nothing but a
domain error or an HTTP exception ever becomes a 4xx.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from ledger.errors import LedgerError, StorageError, TransportError

log = logging.getLogger("lambtrace.api")


class ApiError(LedgerError):
    """A request the API refuses before reaching the domain (bad id, bad query, ...).

    ``status`` is the HTTP status of the answer (a 4xx).
    """

    code = "bad_request"

    def __init__(self, code: str, message: str, *, status: int = 400, **details: Any) -> None:
        super().__init__(message, code=code, **details)
        self.status = status


def not_found(message: str, **details: Any) -> LedgerError:
    """A ``not_found`` domain error (404); for modules that must not import Flask this
    is simply ``LedgerError(message, code="not_found")``."""
    return LedgerError(message, code="not_found", **details)


CODE_STATUS: dict[str, int] = {
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "too_large": 413,
    "unsupported_media_type": 415,
    "mempool_full": 429,
}
"""Status by error code; codes not named here fall back to the class (see :func:`status_of`)."""

HTTP_CODES: dict[int, str] = {
    400: "malformed",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "timeout",
    411: "length_required",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "headers_too_large",
}
"""Stable codes for werkzeug's HTTP exceptions."""


def status_of(exc: LedgerError) -> int:
    """The HTTP status for a domain error: an explicit :class:`ApiError` status, else by
    code, else 503 for storage and 502 for transport faults (not the client's doing),
    else 400."""
    if isinstance(exc, ApiError):
        return exc.status
    if exc.code in CODE_STATUS:
        return CODE_STATUS[exc.code]
    if isinstance(exc, StorageError):
        return 503
    if isinstance(exc, TransportError):
        return 502
    return 400


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The one error shape."""
    return {"error": {"code": code, "message": message, **details}}


LOG_EVERY_S = 60.0
"""A fault answered again and again (a full disk: every request, every health probe) is
logged once per code in this many seconds, with how many answers it stood for."""
_last_logged: dict[str, tuple[float, int]] = {}
_log_lock = threading.Lock()


def _first_in_a_while(code: str) -> bool:
    """Whether an answer with ``code`` should be logged now (the first in ``LOG_EVERY_S``)."""
    now = time.monotonic()
    with _log_lock:
        at, skipped = _last_logged.get(code, (-LOG_EVERY_S, 0))
        if now - at < LOG_EVERY_S:
            _last_logged[code] = (at, skipped + 1)
            return False
        _last_logged[code] = (now, 0)
    if skipped:
        log.error("%d more answers with %s in the last %.0f s", skipped, code, now - at)
    return True


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on ``app``: domain errors, HTTP exceptions, and the last resort."""
    from .encoding import respond  # encoding imports this module for its errors

    @app.errorhandler(LedgerError)
    def _ledger_error(exc: LedgerError) -> Response:
        status = status_of(exc)
        if status >= 500 and _first_in_a_while(exc.code):
            log.error("domain error answered with %d: %s (%s)", status, exc.message, exc.code)
        resp = respond({"error": exc.to_dict()}, status)
        if exc.code == "mempool_full":
            resp.headers["Retry-After"] = "1"
        elif status == 429 and isinstance(exc.details.get("retry_after_s"), int):
            resp.headers["Retry-After"] = str(exc.details["retry_after_s"])
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = HTTP_CODES.get(status, "internal" if status >= 500 else f"http_{status}")
        message = exc.description or exc.name
        resp = respond(error_body(code, str(message)), status)
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                resp.headers[name] = value
        return resp

    @app.errorhandler(Exception)
    def _internal(exc: Exception) -> Response:
        log.exception("internal error while serving a request")
        return respond(error_body("internal", "internal error; see the node's log"), 500)
