"""Scan counts and check-code verification of a label (docs/adr/0008): node-local, not ledger events.

``GET  /v1/labels/<label>/scans``   counts and clone flags
``POST /v1/labels/<label>/scans``   count a scan, once an hour per client (body ``{"place"?}``, may be empty)
``GET  /v1/labels/<label>/check``   the first verification and flags, checking nothing
``POST /v1/labels/<label>/check``   check a scratch-off code (body ``{"code", "place"?}``)
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, request
from flask.blueprints import BlueprintSetupState

from .. import params
from ..checks import CheckConfig, LabelChecks, normalize_place
from ..encoding import read_body, respond
from ..errors import ApiError, not_found
from ..runtime import EXTENSION as RUNTIME
from ..runtime import runtime

bp = Blueprint("checks", __name__)

EXTENSION = "lambtrace.checks"


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    """One :class:`LabelChecks` per app, over its node's KV (``create_app`` has put the
    runtime in place before it registers blueprints)."""
    rt = state.app.extensions[RUNTIME]
    state.app.extensions[EXTENSION] = LabelChecks(rt.node.store.kv, CheckConfig.from_config(state.app.config))


def checks() -> LabelChecks:
    """The current app's :class:`LabelChecks`."""
    found = current_app.extensions.get(EXTENSION)
    if not isinstance(found, LabelChecks):
        raise RuntimeError("the checks blueprint was not registered by api.create_app")
    return found


def _label(text: str) -> tuple[str, dict[str, Any]]:
    lid = params.ident(text, "label")
    lab = runtime().node.store.state_get(f"l/{lid}")
    if lab is None:
        raise not_found(f"no label {lid}")
    return lid, lab


def _body(optional: bool) -> dict[str, Any]:
    if optional and not request.content_length and not request.data:
        return {}
    value, _fmt = read_body(runtime().node.limits)
    if not isinstance(value, dict):
        raise ApiError("malformed", "the body is an object")
    return value


def _now() -> int:
    return int(runtime().node.clock())


@bp.get("/v1/labels/<label>/scans")
def get_scans(label: str) -> Response:
    lid, _lab = _label(label)
    return respond(checks().stats(lid))


@bp.post("/v1/labels/<label>/scans")
def post_scan(label: str) -> Response:
    lid, _lab = _label(label)
    body = _body(optional=True)
    store = checks()
    return respond(store.record_scan(lid, _now(), normalize_place(body.get("place")),
                                     store.client_key(request.remote_addr), mono_ms=int(time.monotonic() * 1000)))


@bp.get("/v1/labels/<label>/check")
def get_check(label: str) -> Response:
    lid, _lab = _label(label)
    return respond(checks().stats(lid))


@bp.post("/v1/labels/<label>/check")
def post_check(label: str) -> Response:
    lid, lab = _label(label)
    body = _body(optional=False)
    code = body.get("code")
    if not isinstance(code, str):
        raise ApiError("bad_code", "code is the scratch-off check code (a string)", reason="format")
    place = normalize_place(body.get("place"))
    store = checks()
    return respond(store.check_code(lid, lab["check"], code, _now(), place, store.client_key(request.remote_addr),
                                    mono_ms=int(time.monotonic() * 1000)))
