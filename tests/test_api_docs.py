"""docs/api.md documents every route of the app, and nothing the app does not serve.

The convention (stated in docs/api.md): each route and method has a Markdown heading
whose text is exactly ``METHOD /path`` in backticks, path parameters written ``{name}``
(Flask converters dropped), e.g. ``### `GET /v1/labels/{label}/proof` ``.  ``HEAD`` and
``OPTIONS``, which Flask adds on its own, are not listed.  Flask's ``static`` route is
documented like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from helpers_api import ApiWorld

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
HEADING = re.compile(r"^#{2,6}\s+`([A-Z]+) (/[^`\s]*)`\s*$", re.MULTILINE)
IMPLICIT = frozenset({"HEAD", "OPTIONS"})


@pytest.fixture(scope="module")
def app() -> Iterator[Flask]:
    world = ApiWorld()
    yield world.app
    world.node.stop()
    world.store.close()


def doc_path(rule: str) -> str:
    """A Flask rule as the doc writes it: ``<path:filename>`` -> ``{filename}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def served(app: Flask) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods or ():
            if method not in IMPLICIT:
                out.add((method, doc_path(rule.rule)))
    return out


def documented() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in HEADING.finditer(DOC.read_text(encoding="utf-8"))]


def test_doc_path_renders_converters() -> None:
    assert doc_path("/v1/labels/<label>/proof") == "/v1/labels/{label}/proof"
    assert doc_path("/static/<path:filename>") == "/static/{filename}"
    assert doc_path("/v1/blocks/<int(min=1):height>") == "/v1/blocks/{height}"


def test_every_route_is_documented(app: Flask) -> None:
    routes = served(app)
    assert len(routes) >= 30
    missing = sorted(routes - set(documented()), key=lambda mp: (mp[1], mp[0]))
    assert not missing, "routes without a `METHOD /path` heading in docs/api.md: " + ", ".join(
        f"{m} {p}" for m, p in missing)


def test_every_documented_route_exists_once(app: Flask) -> None:
    docs = documented()
    stale = sorted(set(docs) - served(app), key=lambda mp: (mp[1], mp[0]))
    assert not stale, "docs/api.md documents routes the app does not serve: " + ", ".join(
        f"{m} {p}" for m, p in stale)
    twice = sorted({mp for mp in docs if docs.count(mp) > 1})
    assert not twice, f"routes documented more than once: {twice}"
