"""``GET /v1/alerts``: fraud and anomaly signals with their evidence (docs/alerts.md).

``?kind=`` one of :data:`api.alerts.KINDS`; ``?since=`` alert time (ms) from which on;
``?limit=`` at most this many (default 100, at most 10,000), newest first.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from .. import alerts, params
from ..checks import LabelChecks
from ..encoding import respond
from ..errors import ApiError
from ..runtime import runtime
from .checks import EXTENSION as CHECKS

bp = Blueprint("alerts", __name__)

MAX_LIMIT = 10_000


@bp.get("/v1/alerts")
def get_alerts() -> Response:
    kind = request.args.get("kind") or None
    if kind is not None and kind not in alerts.KINDS:
        raise ApiError("bad_param", f"kind is one of {', '.join(alerts.KINDS)}")
    since = params.query_int("since")
    limit = params.query_int("limit", default=100) or 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError("bad_param", f"limit is 1 to {MAX_LIMIT}")
    found = current_app.extensions.get(CHECKS)
    checks = found if isinstance(found, LabelChecks) else None
    return respond(alerts.alerts(runtime().node, checks, kind=kind, since=since, limit=limit))
