"""``GET /v1/tags/<tag>``: a lamb's lifecycle and its committed events;
``GET /v1/tags?to=<actor>``: the ear-tag ranges issued (to one actor)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from ledger import codec

from .. import params, queries
from ..encoding import respond
from ..errors import ApiError
from ..runtime import runtime

bp = Blueprint("tags", __name__)


@bp.get("/v1/tags/<tag>")
def get_tag(tag: str) -> Response:
    rt = runtime()
    return respond(queries.tag_lifecycle(rt.node.store, params.tag(tag), rt.node.limits))


MAX_RANGES = 10_000
"""Ranges one ``GET /v1/tags`` answers with at most."""


@bp.get("/v1/tags")
def list_ranges() -> Response:
    to = request.args.get("to")
    if to is not None:
        to = params.ident(to, "id")
    limit = params.query_int("limit", default=1000)
    if limit is None or not 1 <= limit <= MAX_RANGES:
        raise ApiError("bad_param", f"limit is 1 to {MAX_RANGES}")
    return respond(tag_ranges(runtime().node.store, to, limit))


def tag_ranges(store: Any, to: str | None, limit: int) -> dict[str, Any]:
    """Issued ear-tag ranges in tag order (``r/`` records), optionally only those issued
    to ``to``, with each range's banner quota use for its year."""
    out: list[dict[str, Any]] = []
    needle = to.encode() if to else b""
    truncated = False
    for _k, raw in store.kv.scan(b"Sr/"):
        if needle not in raw:
            continue
        rng = codec.decode_trusted(raw)
        if to is not None and rng.get("to") != to:
            continue
        if len(out) >= limit:
            truncated = True
            break
        used = store.state_get(f"q/{rng['banner']}/{rng['year']}")
        out.append({**rng, "banner_issued_that_year": used})
    return {"to": to, "ranges": out, "truncated": truncated}
