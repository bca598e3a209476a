"""``GET /v1/log/consistency`` and ``GET /v1/log/inclusion``: RFC 9162 proofs."""

from __future__ import annotations

from flask import Blueprint, Response

from .. import params, queries
from ..encoding import respond
from ..errors import ApiError
from ..runtime import runtime

bp = Blueprint("log", __name__)


@bp.get("/v1/log/consistency")
def get_consistency() -> Response:
    first = params.query_int("first", code="bad_range")
    second = params.query_int("second", code="bad_range")
    if first is None or second is None:
        raise ApiError("bad_range", "query parameters first and second are required")
    return respond(queries.consistency(runtime().node.store, first, second))


@bp.get("/v1/log/inclusion")
def get_inclusion() -> Response:
    index = params.query_int("index", code="bad_range")
    size = params.query_int("size", code="bad_range")
    if index is None:
        raise ApiError("bad_range", "query parameter index is required")
    return respond(queries.inclusion(runtime().node.store, index, size))
