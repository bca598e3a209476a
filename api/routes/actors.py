"""``GET /v1/actors/<id>`` (membership record) and ``GET /v1/stats`` (counters)."""

from __future__ import annotations

from flask import Blueprint, Response

from .. import params, queries
from ..encoding import respond
from ..runtime import runtime

bp = Blueprint("actors", __name__)


@bp.get("/v1/actors/<actor_id>")
def get_actor(actor_id: str) -> Response:
    return respond(queries.actor(runtime().node.store, params.ident(actor_id, "id")))


@bp.get("/v1/stats")
def get_stats() -> Response:
    return respond(queries.stats(runtime().node.store))
