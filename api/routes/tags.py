"""``GET /v1/tags/<tag>``: a lamb's lifecycle and its committed events."""

from __future__ import annotations

from flask import Blueprint, Response

from .. import params, queries
from ..encoding import respond
from ..runtime import runtime

bp = Blueprint("tags", __name__)


@bp.get("/v1/tags/<tag>")
def get_tag(tag: str) -> Response:
    rt = runtime()
    return respond(queries.tag_lifecycle(rt.node.store, params.tag(tag), rt.node.limits))
