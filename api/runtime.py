"""What the app keeps beside the node: the commit waiter, HTTP counters, the prover.

One :class:`Runtime` per app lives in ``app.extensions["lambtrace"]``; views reach it
with :func:`runtime`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import current_app

from .proofs import LabelProver

if TYPE_CHECKING:  # pragma: no cover
    from ledger.blocks.header import Header
    from node.node import Node

EXTENSION = "lambtrace"


class CommitWaiter:
    """Lets request threads wait for events to be committed.

    The node calls :meth:`notify` after every committed block (it is registered in
    ``node.commit_listeners``); waiters also re-check every ``poll_s`` seconds, so a
    block committed by a path that does not call listeners is still seen.
    """

    def __init__(self, poll_s: float = 0.25) -> None:
        self.poll_s = poll_s
        self._cond = threading.Condition()
        self._generation = 0

    def notify(self, _header: Header | None = None) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, node: Node, ids: list[bytes], timeout_s: float) -> tuple[dict[bytes, dict[str, Any]], bool]:
        """Wait until no event of ``ids`` is pending any more, or ``timeout_s`` passes.

        Returns ``({id: event status}, timed_out)``; an id the node no longer knows maps
        to ``{"state": "unknown"}``.  Never raises for the client's input.
        """
        deadline = time.monotonic() + timeout_s
        out: dict[bytes, dict[str, Any]] = {}
        pending = list(dict.fromkeys(ids))
        while True:
            with self._cond:
                generation = self._generation
            still = []
            for eid in pending:
                st = node.event_status(eid)
                if st is not None and st["state"] == "pending":
                    still.append(eid)
                else:
                    out[eid] = st if st is not None else {"state": "unknown"}
            pending = still
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            with self._cond:
                if self._generation == generation:
                    self._cond.wait(timeout=min(remaining, self.poll_s))
        for eid in pending:
            out[eid] = {"state": "pending"}
        return out, bool(pending)


class HttpCounters:
    """Requests served, by route rule, method and status (for ``/metrics``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str, int], int] = {}

    def add(self, route: str, method: str, status: int) -> None:
        with self._lock:
            k = (route, method, status)
            self.counts[k] = self.counts.get(k, 0) + 1

    def snapshot(self) -> dict[tuple[str, str, int], int]:
        with self._lock:
            return dict(self.counts)


@dataclass
class Runtime:
    node: Node
    prover: LabelProver
    waiter: CommitWaiter = field(default_factory=CommitWaiter)
    http: HttpCounters = field(default_factory=HttpCounters)
    peers: list[str] = field(default_factory=list)
    role: str = "validator"
    openapi: dict[str, Any] | None = None


def runtime() -> Runtime:
    """The current app's :class:`Runtime`; ``RuntimeError`` outside a request/app context."""
    rt = current_app.extensions.get(EXTENSION)
    if not isinstance(rt, Runtime):
        raise RuntimeError("this Flask app was not made by api.create_app")
    return rt
