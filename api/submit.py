"""Submitting signed events: body value in, per-event results out.

The body is one signed event (a map) or a list of them.  JSON events carry bytes as
hex and are converted per event with :func:`ledger.events.from_json`; an event whose
hex does not convert is rejected on its own (``bad_field``) without failing the rest.
The node does the rest (:meth:`node.node.Node.submit`): every event gets ``{id, status:
accepted/duplicate/rejected, code?, message?}``.  With ``wait``, the answer comes when
every admitted event has left the mempool (committed or dropped) or the timeout passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger import events
from ledger.errors import DecodeError, Rejected

from . import alerts
from .runtime import CommitWaiter

if TYPE_CHECKING:  # pragma: no cover
    from node.node import Node

MAX_WAIT_MS = 60_000
DEFAULT_WAIT_MS = 10_000


def submit(
    node: Node,
    body: Any,
    body_format: str,
    *,
    waiter: CommitWaiter | None = None,
    wait: bool = False,
    timeout_ms: int = DEFAULT_WAIT_MS,
) -> dict[str, Any]:
    """Admit the events in ``body``; returns ``{results, accepted, duplicate, rejected}``
    (plus ``timed_out`` with ``wait``; each result then has ``state`` and, once
    committed, ``height`` and ``index``).

    Raises :class:`DecodeError` ``malformed`` for a body that is neither a map nor a
    non-empty list, :class:`Rejected` ``too_many_events`` for an over-long list and
    :class:`node.node.MempoolFull` when the batch does not fit.
    """
    if type(body) is dict:
        items = [body]
    elif type(body) is list and body:
        items = body
    else:
        raise DecodeError("the body is a signed event or a non-empty list of signed events", code="malformed")
    if len(items) > node.limits.max_events_per_request:
        raise Rejected("too_many_events", f"at most {node.limits.max_events_per_request} events a request")
    results: list[dict[str, Any] | None] = [None] * len(items)
    values: list[Any] = []
    slots: list[int] = []
    for i, item in enumerate(items):
        if body_format == "json":
            try:
                item = events.from_json(item)
            except Rejected as exc:
                results[i] = {"id": None, "status": "rejected", **exc.to_dict()}
                continue
        values.append(item)
        slots.append(i)
    admitted = node.submit(values, presorted=body_format == "msgpack") if values else []
    for i, r in zip(slots, admitted):
        results[i] = r
    if any(r["status"] == "rejected" for r in admitted):
        alerts.record_rejections(node, values, admitted)  # fraud-relevant attempts become alerts
    final: list[dict[str, Any]] = [r for r in results if r is not None]
    answer: dict[str, Any] = {"results": final}
    if wait and waiter is not None:
        ids = [bytes.fromhex(r["id"]) for r in final if r["status"] != "rejected" and r.get("state") != "committed"]
        states, timed_out = waiter.wait(node, ids, min(max(timeout_ms, 0), MAX_WAIT_MS) / 1000)
        for r in final:
            if r["status"] == "rejected":
                r["state"] = "rejected"
                continue
            st = states.get(bytes.fromhex(r["id"])) if r["id"] else None
            if st is None:
                continue
            r["state"] = st["state"]
            for k in ("height", "index", "code", "message"):
                if k in st:
                    r[k] = st[k]
        answer["timed_out"] = timed_out
    for status in ("accepted", "duplicate", "rejected"):
        answer[status] = sum(1 for r in final if r["status"] == status)
    return answer
