"""``GET /healthz``, ``GET /metrics`` and ``GET /openapi.json``."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app

from .. import metrics, openapi
from ..encoding import respond
from ..runtime import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def get_health() -> Response:
    node = runtime().node
    node.check_writable()  # a store that failed a write: 503 storage_unavailable
    return respond({"ok": True, "height": node.store.height})


@bp.get("/metrics")
def get_metrics() -> Response:
    rt = runtime()
    status = current_app.config.get("consensus_status")
    text = metrics.render(rt.node, rt.http, rt.role, status() if status is not None else None)
    return Response(text, mimetype=None, content_type=metrics.CONTENT_TYPE)


@bp.get("/openapi.json")
def get_openapi() -> Response:
    rt = runtime()
    if rt.openapi is None:
        rt.openapi = openapi.document()
    text = json.dumps(rt.openapi, ensure_ascii=False, indent=1)
    return Response(text + "\n", mimetype="application/json")
