"""``GET /v1/labels/<label>`` (summary) and ``GET /v1/labels/<label>/proof`` (bundle).

The bundle references genesis by its hash; ``?genesis=1`` embeds the genesis document
too, for an archive that must stand alone (docs/label-proof.md).
"""

from __future__ import annotations

from flask import Blueprint, Response

from .. import params, queries
from ..encoding import respond
from ..runtime import runtime

bp = Blueprint("labels", __name__)


@bp.get("/v1/labels/<label>")
def get_label(label: str) -> Response:
    rt = runtime()
    return respond(queries.label_summary(rt.node.store, params.ident(label, "label"), rt.node.limits))


@bp.get("/v1/labels/<label>/proof")
def get_label_proof(label: str) -> Response:
    rt = runtime()
    embed = params.query_flag("genesis")
    return respond(rt.prover.bundle(params.ident(label, "label"), embed_genesis=embed))
