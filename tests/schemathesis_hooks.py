"""Schemathesis hooks for tests/test_api_fuzz.py: read msgpack answers as their JSON twins.

The node answers ``Accept: application/msgpack`` with the same values as its JSON, bytes as
``bin`` where JSON has lowercase hex (``api/openapi.py``); decoded this way, a msgpack answer
is checked against the same documented schema.
"""

from __future__ import annotations

from typing import Any

import msgpack
import schemathesis


def _as_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value


@schemathesis.deserializer("application/msgpack")
def msgpack_answer(ctx: Any, response: Any) -> Any:
    return _as_json(msgpack.unpackb(response.content, raw=False))


def _packable(value: Any) -> Any:
    """``value`` with the integers msgpack has no room for (beyond 64 bits) as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {k: _packable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_packable(v) for v in value]
    return value


@schemathesis.serializer("application/msgpack")
def msgpack_request(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """Bodies documented as msgpack go out as msgpack (the generated values as they are).

    ``schemathesis.serializer`` wants the body itself (``bytes``, or ``None`` for none) and
    passes it on as the request's ``data``; only the per-transport registries take
    ``{"data": ...}`` maps."""
    packed: bytes = msgpack.packb(_packable(value), use_bin_type=True)
    return packed
