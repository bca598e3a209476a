"""Canonical msgpack (DESIGN §3).

The one serializer whose bytes are hashed and signed.  Canonical means: maps keyed by
``str`` and sorted by the UTF-8 bytes of their keys (Python's code-point order is the
same order), integers in their smallest form, ``bin`` for bytes, ``str`` for text, no
floats, no extension types.  :func:`decode` takes untrusted bytes: it checks the size
first, then parses, then the depth, then re-encodes and refuses anything whose bytes
differ, so there is exactly one encoding of every value.
"""

from __future__ import annotations

from typing import Any

import msgpack

from .errors import DecodeError
from .limits import DEFAULT_LIMITS, Limits

Value = Any  # None | bool | int | str | bytes | list[Value] | dict[str, Value]

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


_SCALARS = frozenset({str, bytes, bool, type(None)})


def canonicalize(value: Value) -> Value:
    """A copy of ``value`` with every map's keys sorted; refuses what has no canonical form.

    Raises :class:`DecodeError` (code ``non_canonical``) for floats, non-str map keys,
    out-of-range integers or unsupported types, so untrusted JSON converted to values
    gets a clear error rather than a crash.
    """
    t = type(value)
    if t is dict:
        out = {}
        try:
            keys = sorted(value)
        except TypeError:
            raise DecodeError("map keys must be strings", code="non_canonical") from None
        for k in keys:
            if type(k) is not str:
                raise DecodeError("map keys must be strings", code="non_canonical")
            x = value[k]
            tx = type(x)
            # scalars inline: most of a record's values, and a call each is most of the cost
            out[k] = x if tx in _SCALARS or (tx is int and _INT_MIN <= x <= _INT_MAX) else canonicalize(x)
        return out
    if t is list or t is tuple:
        return [canonicalize(v) for v in value]
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise DecodeError("integer out of range", code="non_canonical")
        return value
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is bytearray or t is memoryview:
        return bytes(value)
    if t is float:
        raise DecodeError("floats are not allowed", code="non_canonical")
    raise DecodeError(f"cannot encode {t.__name__}", code="non_canonical")


def encode(value: Value) -> bytes:
    """Canonical bytes of ``value``."""
    return msgpack.packb(canonicalize(value), use_bin_type=True)


def _check_shape(value: Value, limit: int) -> None:
    """Depth, str keys in UTF-8 order, no floats: what re-packing alone cannot see."""
    t = type(value)
    if t is dict or t is list:
        _check_container(value, 1, limit)
    elif t is float:
        raise DecodeError("floats are not allowed", code="non_canonical")


def _check_container(v: dict[str, Value] | list[Value], d: int, limit: int) -> None:
    if d > limit:
        raise DecodeError(f"nesting deeper than {limit}", code="too_deep")
    if type(v) is dict:
        keys = list(v)
        # msgpack's strict_map_key lets only str and bytes keys through; sorting a mix
        # raises TypeError, and an all-bytes map is caught by its first key.
        try:
            in_order = keys == sorted(keys)
        except TypeError:
            raise DecodeError("map keys must be strings", code="malformed") from None
        if keys and type(keys[0]) is not str:
            raise DecodeError("map keys must be strings", code="malformed")
        if not in_order:
            raise DecodeError("map keys are not in canonical order", code="non_canonical")
        items: Any = v.values()
    else:
        items = v
    for x in items:
        t = type(x)
        if t is dict or t is list:
            _check_container(x, d + 1, limit)
        elif t is float:
            raise DecodeError("floats are not allowed", code="non_canonical")


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS, *, max_bytes: int | None = None) -> Value:
    """Parse untrusted canonical bytes; raise :class:`DecodeError` unless they are canonical.

    Codes: ``too_large`` (over ``max_bytes``, default ``limits.max_message_bytes``),
    ``too_deep`` (nesting over ``limits.max_depth``), ``malformed`` (not msgpack, trailing
    bytes, ext types), ``non_canonical`` (valid msgpack with another encoding).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes", code="malformed")
    data = bytes(data)
    cap = limits.max_message_bytes if max_bytes is None else max_bytes
    if len(data) > cap:
        raise DecodeError(f"{len(data)} bytes exceed the limit of {cap}", code="too_large")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
        )
    except DecodeError:
        raise
    except RecursionError as exc:  # pragma: no cover - msgpack's C stack limit varies
        raise DecodeError("nesting too deep", code="too_deep") from exc
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise DecodeError(f"not valid msgpack: {exc}", code="malformed") from exc
    _check_shape(value, limits.max_depth)
    # Maps are already in canonical order (checked above) and msgpack keeps their order,
    # so packing as they are gives the canonical bytes; any other difference (integer or
    # string widths, duplicate keys) makes the bytes differ.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError("bytes are not in canonical form", code="non_canonical")
    return value


def encode_canonical_value(value: Value) -> bytes:
    """Canonical bytes of a value that came out of :func:`decode` (already in canonical order)."""
    return msgpack.packb(value, use_bin_type=True)


def decode_trusted(data: bytes) -> Value:
    """Decode bytes this node wrote itself (its own store); no canonical re-check."""
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError("msgpack extension types are not allowed", code="malformed")
