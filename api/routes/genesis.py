"""``GET /v1/genesis``: the genesis document this node was started with.

Served for verifiers that hold only a fingerprint of the genesis hash (the QR link's
``#g=``; the consumer page): label proof bundles reference genesis by its hash
(docs/label-proof.md), and the verifier checks that this document hashes to it.  The
answer is trusted by nobody: it is only as good as that check.
"""

from __future__ import annotations

from flask import Blueprint, Response

from ..encoding import respond
from ..runtime import runtime

bp = Blueprint("genesis", __name__)

_CACHE = {"Cache-Control": "public, max-age=3600"}  # genesis never changes; its hash is checked anyway


@bp.get("/v1/genesis")
def get_genesis() -> Response:
    return respond(runtime().node.store.genesis.to_dict(), headers=_CACHE)
