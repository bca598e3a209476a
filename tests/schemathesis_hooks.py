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
