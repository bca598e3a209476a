"""Field formats refuse look-alikes (a trailing newline is not an id)."""

from __future__ import annotations

import pytest

from ledger.errors import Rejected
from ledger.events import KINDS
from ledger.schema import check


@pytest.mark.parametrize("tag", ["315252300000001\n", "31525230000000", "415252300000001", "315299900000001"])
def test_bad_ear_tags(tag: str) -> None:
    with pytest.raises(Rejected) as e:
        check(KINDS["custody.receive"].body | {}, {"shipment": "ok"})  # a valid body passes
        check(KINDS["lamb.slaughter"].body, {"tag": tag, "carcass": "c", "carcass_mass_g": 1, "quarantine_cert": "q",
                                             "price_fen_per_kg": 1, "market_price_fen_per_kg": 1,
                                             "date": "2026-10-01"})
    assert e.value.code == "bad_field"


@pytest.mark.parametrize("ident", ["l-0001\n", "-lead", "", "x" * 65, "sp ace", "中文"])
def test_bad_ids(ident: str) -> None:
    with pytest.raises(Rejected) as e:
        check(KINDS["custody.receive"].body, {"shipment": ident})
    assert e.value.code == "bad_field"


_TAG_BODY = {"tag": "315252300000001", "herder": "h-1", "born": "2026-03-15", "breed": "b", "sex": "male", "sumu": "s"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tag", "31525230000000\u0661"),  # ARABIC-INDIC DIGIT ONE: int() reads it, the browser's \d does not
        ("tag", "3152523\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff11"),  # fullwidth digits
        ("chip", "156" + "\u0661" * 12),
        ("born", "\u0662\u0660\u0662\u0666-03-15"),
    ],
)
def test_only_ascii_digits(field: str, value: str) -> None:
    with pytest.raises(Rejected) as e:
        check(KINDS["lamb.tag"].body, {**_TAG_BODY, field: value})
    assert (e.value.code, e.value.details.get("field")) == ("bad_field", f"body.{field}")


def test_tag_range_first_must_be_ascii() -> None:
    body = {"to": "coop", "first": "3152523000000\u0660\u0661", "count": 5, "year": 2026}
    with pytest.raises(Rejected) as e:
        check(KINDS["tags.issue"].body, body)
    assert e.value.code == "bad_field"
    check(KINDS["tags.issue"].body, {**body, "first": "315252300000001"})  # the ASCII form passes


# -- the compiled predicate never accepts what the walk refuses ---------------------------

from typing import Any  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ledger.limits import DEFAULT_LIMITS  # noqa: E402
from ledger.schema import Field, _explain, _fits  # noqa: E402

_JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.text(max_size=80),
    st.binary(max_size=40), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.none()),
    st.sampled_from(["2026-02-30", "2026-13-01", "315252300000001", "3152523000000011", "152523", "999999",
                     "156000000000001", "male", "female", "x" * 64, "x" * 65, "-bad", "", "苏尼特羊" * 20]),
)


def _valid(f: Field) -> st.SearchStrategy[Any]:
    t = f.type
    if t == "str":
        return st.text(min_size=f.min or 0, max_size=f.max or 40)
    if t == "id":
        return st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
    if t == "tag":
        return st.sampled_from(["315252300000001", "315252400001234"])
    if t == "chip":
        return st.just("156000000000001")
    if t == "date":
        return st.sampled_from(["2026-03-15", "2024-02-29"])
    if t == "county":
        return st.sampled_from(["152523", "152500"])
    if t == "enum":
        return st.sampled_from(f.choices)
    if t == "int":
        return st.integers(min_value=f.min if f.min is not None else -(2**40), max_value=f.max if f.max is not None
                           else 2**40)
    if t == "bool":
        return st.booleans()
    if t == "bytes":
        return st.binary(min_size=f.size or 0, max_size=f.size or 40)
    if t == "list":
        assert f.item is not None
        return st.lists(_field(f.item), min_size=f.min or 0, max_size=min(f.max or 3, 3))
    assert t == "map"
    return _body(f.fields)


def _field(f: Field) -> st.SearchStrategy[Any]:
    return st.one_of(_valid(f), _valid(f), _JUNK)  # mostly valid, sometimes not


def _body(spec: dict[str, Field]) -> st.SearchStrategy[dict[str, Any]]:
    required = {n: _field(f) for n, f in spec.items() if f.required}
    optional = {n: _field(f) for n, f in spec.items() if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_compiled_check_agrees_with_the_walk(kind: str, data: st.DataObject) -> None:
    spec = KINDS[kind].body
    body = data.draw(_body(spec))
    if data.draw(st.booleans()):
        mutate = data.draw(st.sampled_from(["drop", "extra", "replace"]))
        names = sorted(body)
        if mutate == "extra":
            body[data.draw(st.text(min_size=1, max_size=5))] = data.draw(_JUNK)
        elif names and mutate == "drop":
            body.pop(data.draw(st.sampled_from(names)))
        elif names:
            body[data.draw(st.sampled_from(names))] = data.draw(_JUNK)
    try:
        _explain(spec, body, "body", DEFAULT_LIMITS)
        walk_ok = True
    except Rejected:
        walk_ok = False
    if _fits(spec, body, DEFAULT_LIMITS):
        assert walk_ok, f"the compiled check accepts what the walk refuses: {body!r}"
    # and check() raises exactly when the walk does
    try:
        check(spec, body)
        assert walk_ok
    except Rejected:
        assert not walk_ok


def test_every_valid_event_survives_its_json_form() -> None:
    """Each field of each event of a season mutated (tests/test_verify_label.py): every
    mutation that still parses as a signed event comes back from its JSON form (bytes as
    hex, ``ledger.events.to_json``/``from_json``) as the very same value, so an event a
    node accepts as msgpack can be sent, shown and exported as JSON without loss."""
    from test_verify_label import field_mutations

    from helpers_api import ApiWorld
    from ledger import codec
    from ledger import events as E
    from node.kv import MemoryKV

    w = ApiWorld(MemoryKV())
    w.season()
    valid = 0
    for _i, leaf in w.store.leaves(0, w.store.log_size):
        for what, m in field_mutations(codec.decode(leaf)):
            try:
                E.parse_unverified(m)
            except Rejected:
                continue
            valid += 1
            assert E.from_json(E.to_json(m)) == m, what
    assert valid > 200, valid
