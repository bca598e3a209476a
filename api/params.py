"""Parsing path and query parameters: each parser returns a clean value or raises
:class:`~api.errors.ApiError` (400) with a stable code."""

from __future__ import annotations

import re

from flask import request

from ledger.schema import COUNTIES, ID_RE, TAG_RE

from .errors import ApiError

# ``\Z``, not ``$``: Python's ``$`` also matches before a trailing newline ("1\n" is no height)
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}\Z")
_UINT = re.compile(r"^[0-9]{1,19}\Z")
UINT_MAX = 10**19 - 1  # the largest integer _UINT reads: heights and integer query parameters
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def event_id(text: str) -> bytes:
    """A 32-byte event id from 64 hex characters; raises ``bad_id``."""
    if not _HEX64.match(text):
        raise ApiError("bad_id", "an event id is 64 hex characters")
    return bytes.fromhex(text)


def tag(text: str) -> str:
    """A 15-digit ear tag of the league (``3`` + county + serial, ASCII digits); raises ``bad_tag``."""
    if not TAG_RE.match(text) or text[1:7] not in COUNTIES:
        raise ApiError("bad_tag", "an ear tag is 15 digits: 3, a county code of the league, an 8-digit serial")
    return text


def ident(text: str, what: str = "id") -> str:
    """An actor/label/carcass id as :data:`ledger.schema.ID_RE` allows; raises ``bad_<what>``."""
    if not ID_RE.match(text):
        raise ApiError(
            f"bad_{what}", f"a {what} is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return text


def height(text: str, *, latest_too: bool = False) -> int:
    """A block height (a positive decimal integer); raises ``bad_height``.  ``latest_too``:
    the route also answers to ``latest`` (so the message says so)."""
    if not _UINT.match(text) or int(text) < 1:
        also = " or 'latest'" if latest_too else ""
        raise ApiError("bad_height", f"a height is a positive decimal integer{also}")
    return int(text)


def query_int(name: str, *, default: int | None = None, code: str = "bad_param") -> int | None:
    """The non-negative integer query parameter ``name`` (``default`` when absent);
    raises ``code`` for anything else."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _UINT.match(raw):
        raise ApiError(code, f"query parameter {name} must be a non-negative decimal integer")
    return int(raw)


def query_flag(name: str) -> bool:
    """A boolean query parameter (``1/true/yes/on`` or ``0/false/no/off``); raises ``bad_param``."""
    raw = request.args.get(name)
    if raw is None:
        return False
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ApiError("bad_param", f"query parameter {name} must be 1 or 0")
