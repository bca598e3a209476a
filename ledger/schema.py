"""A small schema language for event bodies.

Each event kind declares its body as a map of :class:`Field`.  The same declaration
checks untrusted values (unknown, missing or ill-typed fields get a stable code),
converts JSON (hex strings) into values (bytes) and back, and documents the API.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import Rejected
from .limits import DEFAULT_LIMITS, Limits

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
# re.ASCII: without it ``\d`` is any script's decimal digit ("٠" to "٩", ...), which
# int() reads as a number and the browser verifier's ``\d`` (ECMAScript) does not accept.
TAG_RE = re.compile(r"^3\d{14}\Z", re.ASCII)
CHIP_RE = re.compile(r"^156\d{12}\Z", re.ASCII)
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}\Z", re.ASCII)
COUNTY_RE = re.compile(r"^15\d{4}\Z", re.ASCII)

# Xilingol League (152500) and its counties (DESIGN §1).
COUNTIES: dict[str, str] = {
    "152500": "锡林郭勒盟",
    "152501": "二连浩特市",
    "152502": "锡林浩特市",
    "152522": "阿巴嘎旗",
    "152523": "苏尼特左旗",
    "152524": "苏尼特右旗",
    "152525": "东乌珠穆沁旗",
    "152526": "西乌珠穆沁旗",
    "152527": "太仆寺旗",
    "152528": "镶黄旗",
    "152529": "正镶白旗",
    "152530": "正蓝旗",
    "152531": "多伦县",
}
# TAG_RE with the county code spelled out, as a JSON Schema (ECMA-262) pattern: exactly the
# tags the rules take (TAG_RE and a county of COUNTIES), for documents that cannot run code.
TAG_PATTERN = "^3(?:" + "|".join(sorted(COUNTIES)) + ")[0-9]{8}$"


@dataclass(frozen=True)
class Field:
    """One field of a body: its type, whether it must be present, and its bounds.

    ``type`` is one of: ``str``, ``int``, ``bool``, ``bytes``, ``id`` (actor/device/
    shipment/carcass/label id), ``tag`` (15-digit ear tag), ``chip`` (ISO 11784 id),
    ``date`` (``YYYY-MM-DD``), ``county`` (6-digit code of the league), ``enum``,
    ``list`` (of ``item``) or ``map`` (of ``fields``).
    """

    type: str
    required: bool = True
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()
    item: Field | None = None
    fields: dict[str, Field] = field(default_factory=dict)
    size: int | None = None  # exact byte length for ``bytes``
    doc: str = ""


def _bad(path: str, why: str) -> Rejected:
    return Rejected("bad_field", f"{path}: {why}", field=path)


def check(spec: dict[str, Field], value: Any, path: str = "body", limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise :class:`Rejected` unless ``value`` is a map that fits ``spec`` exactly.

    Codes: ``unknown_field``, ``missing_field``, ``bad_field``.
    """
    if _fits(spec, value, limits):
        return
    _explain(spec, value, path, limits)


# A compiled predicate per spec answers the common case (a valid body) several times
# faster than the walk below; anything it does not accept is walked again to name the
# first fault.  A predicate is never looser than the walk: it only accepts a value the
# walk accepts (tests/test_schema.py compares the two on every kind and many faults).
_Pred = Callable[[Any], bool]
_COMPILED: dict[tuple[int, int], tuple[dict[str, Field], _Pred]] = {}


def _fits(spec: dict[str, Field], value: Any, limits: Limits) -> bool:
    key = (id(spec), id(limits))
    hit = _COMPILED.get(key)
    if hit is None or hit[0] is not spec:
        hit = (spec, _compile_map(spec, limits))
        _COMPILED[key] = hit
    return hit[1](value)


def _compile_map(spec: dict[str, Field], limits: Limits) -> _Pred:
    fields = [(name, f.required, _compile(f, limits)) for name, f in spec.items()]
    known = frozenset(spec)

    def fits(v: Any) -> bool:
        if type(v) is not dict or not known.issuperset(v):
            return False
        for name, required, pred in fields:
            x = v.get(name, _ABSENT)
            if x is _ABSENT:
                if required:
                    return False
            elif not pred(x):
                return False
        return True

    return fits


def _compile(f: Field, limits: Limits) -> _Pred:
    t = f.type
    if t in ("str", "id", "tag", "chip", "date", "county", "enum"):
        most = f.max if (t == "str" and f.max) else limits.max_str_chars
        if t == "str":
            least = f.min if f.min is not None else 0
            return lambda v: type(v) is str and least <= len(v) <= most
        if t == "id":
            return lambda v: type(v) is str and len(v) <= most and ID_RE.match(v) is not None
        if t == "tag":
            return lambda v: (type(v) is str and len(v) <= most and TAG_RE.match(v) is not None
                              and v[1:7] in COUNTIES)
        if t == "chip":
            return lambda v: type(v) is str and len(v) <= most and CHIP_RE.match(v) is not None
        if t == "date":
            return lambda v: type(v) is str and len(v) <= most and DATE_RE.match(v) is not None and _is_date(v)
        if t == "county":
            return lambda v: type(v) is str and len(v) <= most and v in COUNTIES
        choices = frozenset(f.choices)
        return lambda v: type(v) is str and len(v) <= most and v in choices
    if t == "int":
        lo = f.min if f.min is not None else -(2**63)
        hi = f.max if f.max is not None else 2**64 - 1
        return lambda v: type(v) is int and lo <= v <= hi
    if t == "bool":
        return lambda v: type(v) is bool
    if t == "bytes":
        size, most = f.size, limits.max_str_chars
        if size is not None:
            return lambda v: type(v) is bytes and len(v) == size and size <= most
        return lambda v: type(v) is bytes and len(v) <= most
    if t == "list":
        assert f.item is not None  # schema declaration, not input
        item = _compile(f.item, limits)
        lo = f.min if f.min is not None else 0
        hi = min(f.max if f.max is not None else limits.max_list_items, limits.max_list_items)
        return lambda v: type(v) is list and lo <= len(v) <= hi and all(map(item, v))
    if t == "map":
        return _compile_map(f.fields, limits)
    return lambda v: False  # unknown declaration: the walk raises


def _is_date(v: str) -> bool:
    try:
        _dt.date.fromisoformat(v)
    except ValueError:
        return False
    return True


_ABSENT = object()


def _explain(spec: dict[str, Field], value: Any, path: str, limits: Limits) -> None:
    """The walk: raise for the first fault of ``value`` against ``spec``."""
    if type(value) is not dict:
        raise _bad(path, "must be a map")
    for k in value:
        if k not in spec:
            raise Rejected("unknown_field", f"{path}.{k} is not a field of this kind", field=f"{path}.{k}")
    for name, f in spec.items():
        if name not in value:
            if f.required:
                raise Rejected("missing_field", f"{path}.{name} is required", field=f"{path}.{name}")
            continue
        _check_value(f, value[name], f"{path}.{name}", limits)


def _check_value(f: Field, v: Any, path: str, limits: Limits) -> None:
    t = f.type
    if t in ("str", "id", "tag", "chip", "date", "county", "enum"):
        if type(v) is not str:
            raise _bad(path, "must be a string")
        if len(v) > (f.max if (t == "str" and f.max) else limits.max_str_chars):
            raise _bad(path, "too long")
        if t == "str":
            if f.min is not None and len(v) < f.min:
                raise _bad(path, "too short")
        elif t == "id":
            if not ID_RE.match(v):
                raise _bad(path, "ids are 1-64 chars of A-Z a-z 0-9 . _ - starting with a letter or digit")
        elif t == "tag":
            if not TAG_RE.match(v) or v[1:7] not in COUNTIES:
                raise _bad(path, "an ear tag is 15 digits: 3 + county code of the league + 8-digit serial")
        elif t == "chip":
            if not CHIP_RE.match(v):
                raise _bad(path, "a chip id is 156 followed by 12 digits (ISO 11784)")
        elif t == "date":
            if not DATE_RE.match(v):
                raise _bad(path, "dates are YYYY-MM-DD")
            try:
                _dt.date.fromisoformat(v)
            except ValueError as exc:
                raise _bad(path, "not a calendar date") from exc
        elif t == "county":
            if v not in COUNTIES:
                raise _bad(path, "not a county code of Xilingol League")
        elif t == "enum" and v not in f.choices:
            raise _bad(path, f"must be one of {', '.join(f.choices)}")
    elif t == "int":
        if type(v) is not int:
            raise _bad(path, "must be an integer")
        if f.min is not None and v < f.min:
            raise _bad(path, f"must be at least {f.min}")
        if f.max is not None and v > f.max:
            raise _bad(path, f"must be at most {f.max}")
    elif t == "bool":
        if type(v) is not bool:
            raise _bad(path, "must be true or false")
    elif t == "bytes":
        if type(v) is not bytes:
            raise _bad(path, "must be bytes (hex in JSON)")
        if f.size is not None and len(v) != f.size:
            raise _bad(path, f"must be {f.size} bytes")
        if len(v) > limits.max_str_chars:
            raise _bad(path, "too long")
    elif t == "list":
        if type(v) is not list:
            raise _bad(path, "must be a list")
        lo = f.min if f.min is not None else 0
        hi = min(f.max if f.max is not None else limits.max_list_items, limits.max_list_items)
        if not lo <= len(v) <= hi:
            raise _bad(path, f"must hold {lo} to {hi} items")
        assert f.item is not None  # schema declaration, not input
        for i, x in enumerate(v):
            _check_value(f.item, x, f"{path}[{i}]", limits)
    elif t == "map":
        _explain(f.fields, v, path, limits)
    else:  # pragma: no cover - schema declaration error
        raise RuntimeError(f"unknown field type {t}")


def from_json(f: Field | dict[str, Field], v: Any, path: str = "body") -> Any:
    """Convert a JSON value to a value per the schema: hex strings become bytes.

    Fields the schema does not know are passed through untouched so that :func:`check`
    reports them with their proper code.
    """
    if isinstance(f, dict):
        if type(v) is not dict:
            return v
        return {k: (from_json(f[k], x, f"{path}.{k}") if k in f else x) for k, x in v.items()}
    if f.type == "bytes":
        if type(v) is str:
            try:
                if v != v.lower():
                    raise ValueError("upper case")
                return bytes.fromhex(v)
            except ValueError as exc:
                raise _bad(path, "must be lowercase hex") from exc
        return v
    if f.type == "list" and f.item is not None and type(v) is list:
        return [from_json(f.item, x, f"{path}[{i}]") for i, x in enumerate(v)]
    if f.type == "map" and type(v) is dict:
        return from_json(f.fields, v, path)
    return v


def to_json(v: Any) -> Any:
    """A JSON-ready copy of a value: bytes become lowercase hex."""
    t = type(v)
    if t is bytes:
        return v.hex()
    if t is dict:
        return {k: to_json(x) for k, x in v.items()}
    if t is list or t is tuple:
        return [to_json(x) for x in v]
    return v


def describe(spec: dict[str, Field]) -> dict[str, Any]:
    """A JSON Schema for a body spec (used by ``/openapi.json``)."""
    props: dict[str, Any] = {}
    required = []
    for name, f in spec.items():
        props[name] = _describe_field(f)
        if f.required:
            required.append(name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def _describe_field(f: Field) -> dict[str, Any]:
    simple: dict[str, dict[str, Any]] = {
        "str": {"type": "string"},
        "id": {"type": "string", "pattern": _ecma(ID_RE)},
        "tag": {"type": "string", "pattern": TAG_PATTERN},
        "chip": {"type": "string", "pattern": _ecma(CHIP_RE)},
        "date": {"type": "string", "format": "date"},
        "county": {"type": "string", "enum": sorted(COUNTIES)},
        "int": {"type": "integer"},
        "bool": {"type": "boolean"},
        "bytes": {"type": "string", "pattern": "^([0-9a-f]{2})*$", "description": "bytes as lowercase hex"},
    }
    if f.type in simple:
        out: dict[str, Any] = dict(simple[f.type])
        if f.type == "int":
            if f.min is not None:
                out["minimum"] = f.min
            if f.max is not None:
                out["maximum"] = f.max
    elif f.type == "enum":
        out = {"type": "string", "enum": list(f.choices)}
    elif f.type == "list":
        assert f.item is not None
        out = {"type": "array", "items": _describe_field(f.item)}
    else:
        out = describe(f.fields)
    if f.doc:
        out["description"] = f.doc
    return out


def _ecma(rx: re.Pattern[str]) -> str:
    """The pattern for JSON Schema (ECMA-262 has ``$``, not ``\\Z``, for the end)."""
    return rx.pattern.replace("\\Z", "$")
