"""``POST /v1/events`` (submit signed events) and ``GET /v1/events/<id>``."""

from __future__ import annotations

from flask import Blueprint, Response

from .. import params, queries
from ..encoding import read_body, respond
from ..runtime import runtime
from ..submit import DEFAULT_WAIT_MS, submit

bp = Blueprint("events", __name__)


@bp.post("/v1/events")
def post_events() -> Response:
    rt = runtime()
    wait = params.query_flag("wait")
    timeout_ms = params.query_int("timeout_ms", default=DEFAULT_WAIT_MS) or 0
    body, body_format = read_body(rt.node.limits)
    answer = submit(rt.node, body, body_format, waiter=rt.waiter, wait=wait, timeout_ms=timeout_ms)
    return respond(answer)


@bp.get("/v1/events/<event_id>")
def get_event(event_id: str) -> Response:
    rt = runtime()
    return respond(queries.event(rt.node, params.event_id(event_id)))
