"""Content negotiation: JSON by default, canonical msgpack on request (DESIGN §6).

Views build answers as plain values holding real ``bytes``.  :func:`respond` turns one
into JSON (bytes as lowercase hex, via :func:`ledger.schema.to_json`) or, when the
client's ``Accept`` prefers ``application/msgpack``, into canonical msgpack
(:func:`ledger.codec.encode` of the very same value, bytes as ``bin``).

:func:`read_body` parses an untrusted request body: JSON (the default, also when no
``Content-Type`` is given) or msgpack, which must be canonical.  Every refusal is a
:class:`~ledger.errors.DecodeError` with a stable code: ``malformed``,
``non_canonical``, ``too_deep``, ``too_large``; an unknown media type is
``unsupported_media_type`` (415).  Oversized bodies never reach the parser: Flask's
``MAX_CONTENT_LENGTH`` stops them with a 413 first.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from flask import Response, request

from ledger import codec, schema
from ledger.errors import DecodeError
from ledger.limits import Limits

from .errors import ApiError

JSON = "application/json"
MSGPACK = "application/msgpack"
MSGPACK_TYPES = (MSGPACK, "application/x-msgpack", "application/vnd.msgpack")
"""Media types read as msgpack; answers always say ``application/msgpack``."""

BodyFormat = Literal["json", "msgpack"]


def wants_msgpack() -> bool:
    """Whether the current request's ``Accept`` prefers msgpack over JSON.

    A missing ``Accept`` or ``*/*`` means JSON.
    """
    best = request.accept_mimetypes.best_match([JSON, *MSGPACK_TYPES], default=JSON)
    return best in MSGPACK_TYPES


def respond(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The negotiated answer for ``value`` (a plain value; bytes allowed, no floats).

    Raises ``RuntimeError`` if ``value`` has no canonical msgpack form (a bug in the
    view, never the client's doing).
    """
    if wants_msgpack():
        try:
            body = codec.encode(value)
        except DecodeError as exc:
            raise RuntimeError(f"answer has no canonical form: {exc.message}") from exc
        resp = Response(body, status=status, mimetype=MSGPACK)
    else:
        text = json.dumps(schema.to_json(value), ensure_ascii=False, separators=(",", ":"))
        resp = Response(text + "\n", status=status, mimetype=JSON)
    resp.vary.add("Accept")
    if headers:
        resp.headers.update(headers)
    return resp


def read_body(limits: Limits) -> tuple[Any, BodyFormat]:
    """Parse the current request's body; returns ``(value, "json" | "msgpack")``.

    JSON values keep bytes as hex strings (callers convert them with the schema);
    msgpack values carry real bytes.  Raises :class:`DecodeError` (``malformed``,
    ``non_canonical``, ``too_deep``, ``too_large``) or :class:`ApiError`
    ``unsupported_media_type`` (415).  Werkzeug raises ``RequestEntityTooLarge`` for a
    body over ``MAX_CONTENT_LENGTH``; the error handlers turn it into ``413 too_large``.
    """
    mimetype = request.mimetype
    if mimetype in MSGPACK_TYPES:
        data = request.get_data(cache=False)
        if not data:
            raise DecodeError("the request has no body", code="malformed")
        return codec.decode(data, limits, max_bytes=limits.max_request_bytes), "msgpack"
    if mimetype in ("", JSON) or mimetype.endswith("+json"):
        data = request.get_data(cache=False)
        return parse_json(data, limits), "json"
    raise ApiError(
        "unsupported_media_type",
        f"send {JSON} or {MSGPACK}, not {mimetype}",
        status=415,
    )


def parse_json(data: bytes, limits: Limits) -> Any:
    """Parse untrusted JSON bytes: UTF-8, no duplicate keys, no ``NaN``/``Infinity``,
    nesting at most ``limits.max_depth``.

    Raises :class:`DecodeError`: ``too_large`` (over ``limits.max_request_bytes``),
    ``malformed`` or ``too_deep``.
    """
    if len(data) > limits.max_request_bytes:
        raise DecodeError(f"{len(data)} bytes exceed the limit of {limits.max_request_bytes}", code="too_large")
    if not data.strip():
        raise DecodeError("the request has no body", code="malformed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("the body is not UTF-8", code="malformed") from exc
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant)
    except DecodeError:
        raise
    except RecursionError as exc:
        raise DecodeError("nesting too deep", code="too_deep") from exc
    except ValueError as exc:  # JSONDecodeError, and int literals past Python's digit limit
        raise DecodeError(f"not valid JSON: {exc}", code="malformed") from exc
    if not depth_within(value, limits.max_depth):
        raise DecodeError(f"nesting deeper than {limits.max_depth}", code="too_deep")
    return value


def depth_within(value: Any, limit: int) -> bool:
    """Whether no list/map in ``value`` nests deeper than ``limit`` (the root is depth 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            return False
        if type(v) is dict:
            stack.extend((x, d + 1) for x in v.values())
        elif type(v) is list:
            stack.extend((x, d + 1) for x in v)
    return True


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DecodeError(f"duplicate key {k!r}", code="malformed")
        out[k] = v
    return out


def _refuse_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not allowed", code="malformed")
