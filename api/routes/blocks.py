"""``GET /v1/blocks/<height>``, ``GET /v1/blocks/latest``, ``GET /v1/blocks/<height>/leaves``
and ``GET /v1/state/hash``: what an auditor replaying the chain reads (``lambtrace audit``)."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response

from ledger.errors import StorageError

from .. import params, queries
from ..encoding import respond
from ..runtime import runtime

if TYPE_CHECKING:  # pragma: no cover
    from node.store import ChainStore

bp = Blueprint("blocks", __name__)

_state_hash_lock = threading.Lock()
_state_hash_memo: weakref.WeakKeyDictionary[ChainStore, tuple[int, int, bytes]] = weakref.WeakKeyDictionary()
"""store -> (height, log size, state hash) of the last state hash computed."""


@bp.get("/v1/blocks/latest")
def get_latest_block() -> Response:
    store = runtime().node.store
    return respond(queries.block(store, queries.latest_height(store)))


@bp.get("/v1/blocks/<height>")
def get_block(height: str) -> Response:
    return respond(queries.block(runtime().node.store, params.height(height, latest_too=True)))


@bp.get("/v1/blocks/<height>/leaves")
def get_block_leaves(height: str) -> Response:
    return respond(block_leaves(runtime().node.store, params.height(height)))


@bp.get("/v1/state/hash")
def get_state_hash() -> Response:
    return respond(tip_state_hash(runtime().node.store))


def block_leaves(store: ChainStore, height: int) -> dict[str, Any]:
    """Header (with hash), certificate and the raw leaves (canonical signed events) of
    block ``height``: everything needed to replay it, in one answer.

    Raises ``not_found`` beyond the tip and ``StorageError`` if a leaf is missing.
    """
    out = queries.block_head(store, height)
    begin, end = out["log_range"]
    leaves = [leaf for _i, leaf in store.leaves(begin, end)]
    if len(leaves) != end - begin:
        raise StorageError(f"block {height} lacks some of its leaves", code="corrupt_store")
    out["leaves"] = leaves
    return out


def tip_state_hash(store: ChainStore) -> dict[str, Any]:
    """The hash of the whole committed state (:func:`ledger.state.state_hash`) at the
    tip, with the tip's height and log size, for auditors to compare their replay with.

    Computed under the store's commit lock (so height and state agree) and remembered
    per height: it reads every state entry, so repeated asks at one height cost nothing.
    """
    with _state_hash_lock:
        memo = _state_hash_memo.get(store)
        if memo is not None and memo[0] == store.height:
            height, size, digest = memo
        else:
            with store._lock:  # commits hold it; height and state then belong together
                height, size = store.height, store.log_size
                digest = store.state_hash()
            _state_hash_memo[store] = (height, size, digest)
    return {"height": height, "log_size": size, "state_hash": digest}
