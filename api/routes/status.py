"""``GET /v1/status``: who this node is and where its chain stands."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from .. import queries
from ..encoding import respond
from ..runtime import runtime

bp = Blueprint("status", __name__)


@bp.get("/v1/status")
def get_status() -> Response:
    rt = runtime()
    out = queries.status(rt.node, rt.peers, rt.role)
    consensus_status = current_app.config.get("consensus_status")
    if consensus_status is not None:
        out.update(consensus_status())
        out["peers_connected"] = out.pop("connected", [])
    return respond(out)
