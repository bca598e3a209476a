"""``GET /v1/status``: who this node is and where its chain stands."""

from __future__ import annotations

from flask import Blueprint, Response

from .. import queries
from ..encoding import respond
from ..runtime import runtime

bp = Blueprint("status", __name__)


@bp.get("/v1/status")
def get_status() -> Response:
    rt = runtime()
    return respond(queries.status(rt.node, rt.peers, rt.role))
