"""Path and query parameters mean exactly what the OpenAPI document says, and its patterns
mean the same to a JSON Schema (ECMA-262) validator as to the server.

1. The document gave ``pattern``s with Python's ``\\Z`` end anchor (``ID_RE`` and
   ``TAG_RE`` as written for ``re``).  JSON Schema patterns are ECMA-262 regexes, where
   ``\\Z`` is no anchor: it matches a literal ``Z`` (or is a syntax error under the ``u``
   flag), so no real label, actor or tag satisfied the documented path parameters, the
   ``to`` query or ``TagLifecycle.tag`` of every ``GET /v1/tags/{tag}`` answer.
2. Heights, event ids and integer query parameters were matched with ``$``, which in
   Python also matches before a trailing newline: ``GET /v1/blocks/1%0A`` answered block 1
   instead of ``400 bad_height`` (and likewise for the other integer parameters).
3. ``TAG_RE``'s ``\\d`` took any script's digits: ``GET /v1/tags/31525230000000١`` (an
   Arabic-Indic one at the end) answered 200, a lifecycle whose ``tag`` breaks the
   documented pattern, instead of ``400 bad_tag`` (the schema's patterns are ASCII now,
   ``tests/test_schema.py``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from api import openapi
from helpers_api import AGENT, COOP, PLANT, TAG_A, ApiWorld, error_of
from ledger.schema import COUNTIES
from node.kv import MemoryKV

PYTHON_ONLY = re.compile(r"\\[AZz]|\(\?P[<=]|\(\?[aiLmsux]")
"""Regex syntax Python's ``re`` knows and ECMA-262 does not (or reads otherwise)."""


@pytest.fixture(scope="module")
def seasoned() -> Iterator[tuple[ApiWorld, dict[str, Any]]]:
    w = ApiWorld(MemoryKV())
    ids = w.season()
    yield w, ids
    w.node.stop()
    w.store.close()


def patterns(node: Any, where: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "pattern" and isinstance(v, str):
                yield where, v
            else:
                yield from patterns(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from patterns(v, f"{where}/{i}")


def param_pattern(doc: dict[str, Any], path: str, name: str) -> str:
    for p in doc["paths"][path]["get"]["parameters"]:
        if p["name"] == name:
            pattern: str = p["schema"]["pattern"]
            return pattern
    raise AssertionError(f"{path} has no parameter {name}")


# -- 1. OpenAPI patterns are ECMA-262 ---------------------------------------------------------


def test_no_pattern_in_the_document_is_python_only() -> None:
    found = list(patterns(openapi.document()))
    assert len(found) > 20
    bad = [(where, p) for where, p in found if PYTHON_ONLY.search(p)]
    assert not bad, f"patterns JSON Schema (ECMA-262) reads otherwise: {bad[:5]}"


def test_documented_id_and_tag_patterns_accept_real_ids_and_anchor_the_end(seasoned: tuple[ApiWorld, Any]) -> None:
    doc = openapi.document()
    cases = [
        ("/v1/labels/{label}", "label", "l-0001"),
        ("/v1/labels/{label}/proof", "label", "l-0002"),
        ("/l/{label}/verdict", "label", "l-0001"),
        ("/v1/actors/{actor_id}", "actor_id", PLANT),
        ("/v1/tags", "to", COOP),
        ("/v1/tags/{tag}", "tag", TAG_A),
    ]
    for path, name, real in cases:
        pattern = param_pattern(doc, path, name)
        # the patterns left are plain ECMA-262 and mean the same under Python's re
        assert re.search(pattern, real), (path, name, pattern, real)
        assert not re.search(pattern, real + "!"), (path, name, pattern)
        assert not re.search(pattern, real + "/x"), (path, name, pattern)
    actor = doc["components"]["schemas"]["Envelope.lamb.tag"]["properties"]["actor"]["pattern"]
    assert re.search(actor, AGENT)


ECMA_CHECK = """
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = cases.map(([p, v]) => {
  try { return new RegExp(p, "u").test(v); } catch (e) { return "error: " + e.message; }
});
process.stdout.write(JSON.stringify(out));
"""


def test_documented_patterns_accept_real_ids_under_ecma_262(seasoned: tuple[ApiWorld, Any]) -> None:
    """The same, with a real ECMA-262 engine (Node.js, as a JavaScript client would check)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run ECMA-262 regexes")
    doc = openapi.document()
    schemas = doc["components"]["schemas"]
    cases = [
        (param_pattern(doc, "/v1/labels/{label}", "label"), "l-0001", True),
        (param_pattern(doc, "/v1/actors/{actor_id}", "actor_id"), PLANT, True),
        (param_pattern(doc, "/v1/tags", "to"), COOP, True),
        (param_pattern(doc, "/v1/tags/{tag}", "tag"), TAG_A, True),
        (schemas["TagLifecycle"]["properties"]["tag"]["pattern"], TAG_A, True),
        (schemas["Envelope.lamb.tag"]["properties"]["actor"]["pattern"], AGENT, True),
        (param_pattern(doc, "/v1/tags/{tag}", "tag"), TAG_A + "Z", False),
        (param_pattern(doc, "/v1/tags/{tag}", "tag"), "300000000000000", False),  # no county of the league
        (check_body(doc, "code"), "7kq2-m9xd 4hrt", True),
        (check_body(doc, "code"), "7KQ2-M9XD-4HRU", False),
        (check_body(doc, "place"), "锡林浩特市", True),
        (check_body(doc, "place"), "x\u0085y", False),
    ]
    run = subprocess.run([node, "-e", ECMA_CHECK], input=json.dumps([[p, v] for p, v, _ in cases]),
                         capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(run.stdout)
    assert got == [want for _p, _v, want in cases], list(zip(cases, got))


def check_body(doc: dict[str, Any], name: str) -> str:
    body = doc["paths"]["/v1/labels/{label}/check"]["post"]["requestBody"]["content"]["application/json"]
    pattern: str = body["schema"]["properties"][name]["pattern"]
    return pattern


def test_documented_tag_pattern_is_the_servers_tag_rule(seasoned: tuple[ApiWorld, Any]) -> None:
    """The documented pattern names the league's counties, so a client that checks it knows
    which tags the node answers for, not only their shape."""
    w, _ids = seasoned
    pattern = param_pattern(openapi.document(), "/v1/tags/{tag}", "tag")
    for county in ("152500", "152502", "152531", "152599", "110101", "000000"):
        tag = f"3{county}00000001"
        known = w.http.get(f"/v1/tags/{tag}").status_code != 400
        assert bool(re.search(pattern, tag)) == known == (county in COUNTIES), (tag, pattern)


def test_tag_answer_conforms_to_its_documented_pattern(seasoned: tuple[ApiWorld, Any]) -> None:
    w, _ids = seasoned
    answer = w.get(f"/v1/tags/{TAG_A}")
    pattern = openapi.document()["components"]["schemas"]["TagLifecycle"]["properties"]["tag"]["pattern"]
    assert "\\Z" not in pattern
    assert re.search(pattern, answer["tag"]), (pattern, answer["tag"])


# -- 2. a trailing newline is no integer, no event id -----------------------------------------


def test_height_with_a_trailing_newline_is_bad_height(seasoned: tuple[ApiWorld, Any]) -> None:
    w, _ids = seasoned
    assert w.get("/v1/blocks/1")["height"] == 1
    for path in ("/v1/blocks/1%0A", "/v1/blocks/1%0A/leaves", "/v1/blocks/1%0D%0A"):
        error_of(w.http.get(path), 400, "bad_height")


def test_event_id_with_a_trailing_newline_is_bad_id(seasoned: tuple[ApiWorld, Any]) -> None:
    w, ids = seasoned
    eid = ids["ship"]
    assert w.get(f"/v1/events/{eid}")["id"] == eid
    error_of(w.http.get(f"/v1/events/{eid}%0A"), 400, "bad_id")


@pytest.mark.parametrize(("path", "code"), [
    ("/v1/log/inclusion?index=0%0A", "bad_range"),
    ("/v1/log/inclusion?index=0&size=1%0A", "bad_range"),
    ("/v1/log/consistency?first=1%0A&second=2", "bad_range"),
    ("/v1/tags?limit=1%0A", "bad_param"),
    ("/v1/alerts?limit=1%0A", "bad_param"),
    ("/v1/alerts?since=0%0A", "bad_param"),
])
def test_integer_query_with_a_trailing_newline_is_refused(seasoned: tuple[ApiWorld, Any], path: str,
                                                          code: str) -> None:
    w, _ids = seasoned
    error_of(w.http.get(path), 400, code)
    assert w.http.get(path.replace("%0A", "")).status_code == 200


def test_wait_timeout_with_a_trailing_newline_is_bad_param(seasoned: tuple[ApiWorld, Any]) -> None:
    w, _ids = seasoned
    ev = w.ev("custody.receive", PLANT, {"shipment": "shp-none"})
    error_of(w.post([ev], query="?wait=1&timeout_ms=1%0A"), 400, "bad_param")


# -- 3. an ear tag is ASCII digits --------------------------------------------------------------


@pytest.mark.parametrize("tag", [
    TAG_A[:-1] + "\u0661",               # ARABIC-INDIC DIGIT ONE for the last 1
    "3152523000000\u0661\u0660",         # ... "10"
    TAG_A[:-1] + "\uff11",               # FULLWIDTH DIGIT ONE
    "\u0663" + TAG_A[1:],                # ARABIC-INDIC DIGIT THREE for the leading 3
])
def test_tag_with_non_ascii_digits_is_bad_tag(seasoned: tuple[ApiWorld, Any], tag: str) -> None:
    w, _ids = seasoned
    assert w.get(f"/v1/tags/{TAG_A}")["tag"] == TAG_A
    error_of(w.http.get(f"/v1/tags/{quote(tag)}"), 400, "bad_tag")
