"""``GET /v1/blocks/<height>`` and ``GET /v1/blocks/latest``."""

from __future__ import annotations

from flask import Blueprint, Response

from .. import params, queries
from ..encoding import respond
from ..runtime import runtime

bp = Blueprint("blocks", __name__)


@bp.get("/v1/blocks/latest")
def get_latest_block() -> Response:
    store = runtime().node.store
    return respond(queries.block(store, queries.latest_height(store)))


@bp.get("/v1/blocks/<height>")
def get_block(height: str) -> Response:
    return respond(queries.block(runtime().node.store, params.height(height)))
