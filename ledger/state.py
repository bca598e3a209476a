"""World state: what the log means, as a key-value map (DESIGN §4).

State keys are strings with a one-letter prefix; values are canonical-encodable maps:

=========== ===========================================================
``a/<id>``  actor: role, banner, parent, keys, enrolled/revoked instants
``k/<kid>`` key: alg, pub, storage, actor, device, validity
``d/<id>``  handheld terminal: owner, key, registered/retired instants
``r/<tag>`` ear-tag range starting at ``<tag>``: count, holder, year
``q/<banner>/<year>`` ear tags issued to a banner that year
``t/<tag>`` lamb: tagging facts, holder, status, carcass, labels, recall
``q/dev/<banner>`` handheld terminals in service in a banner
``x/<chip>`` the ear tag an electronic chip is mapped to
``s/<id>``  shipment: from, to, lambs, received
``c/<id>``  carcass: lamb, plant, mass, labels, recall
``l/<id>``  label: carcass, lamb, plant, cut, mass, check commitment
``m/n/...`` a node of the recall map (chains with ``params.state_root``;
            :mod:`ledger.recallmap`); ``m/size`` its number of entries
=========== ===========================================================

:class:`StateView` layers pending writes over a read-only backend (the committed store
or another view), so the rules can try an event and either keep or drop its writes.
Nothing here does I/O: the backend does.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from typing import Any, Protocol

from . import codec
from .genesis import Genesis
from .hashing import key_id

FLOOR_PREFIXES = ("r/",)
_MISSING = object()


class StateBackend(Protocol):
    """Read access to committed state and the committed event index."""

    def state_get(self, key: str) -> Any | None: ...

    def state_floor(self, prefix: str, key: str) -> tuple[str, Any] | None:
        """The entry with the greatest key ``k`` such that ``k`` starts with ``prefix`` and ``k <= key``."""
        ...

    def has_event(self, event_id: bytes) -> bool: ...


class StateView:
    """Pending writes over a backend.  Reads see the writes; ``writes`` holds them.

    Values handed out are shared: callers copy a map before changing it and ``put``
    the copy.
    """

    def __init__(self, backend: StateBackend) -> None:
        self.backend = backend
        self.writes: dict[str, Any] = {}
        self.events: dict[bytes, None] = {}
        self._floor: dict[str, list[str]] = {p: [] for p in FLOOR_PREFIXES}

    # -- StateBackend, so views stack --------------------------------------------------
    def state_get(self, key: str) -> Any | None:
        v = self.writes.get(key, _MISSING)
        if v is not _MISSING:
            return v
        # down the stack of views in a loop rather than a call per view (the rules read
        # a dozen keys an event, through two or three views)
        b = self.backend
        while type(b) is StateView:
            v = b.writes.get(key, _MISSING)
            if v is not _MISSING:
                return v
            b = b.backend
        return b.state_get(key)

    def state_floor(self, prefix: str, key: str) -> tuple[str, Any] | None:
        best = self.backend.state_floor(prefix, key)
        keys = self._floor.get(prefix)
        if keys is None:
            raise RuntimeError(f"floor queries are only kept for {FLOOR_PREFIXES}")
        i = bisect.bisect_right(keys, key)
        if i:
            k = keys[i - 1]
            if best is None or k >= best[0]:
                return k, self.writes[k]
        return best

    def has_event(self, event_id: bytes) -> bool:
        return event_id in self.events or self.backend.has_event(event_id)

    # -- writing ----------------------------------------------------------------------
    get = state_get

    def put(self, key: str, value: Any) -> None:
        if key not in self.writes:
            for p, keys in self._floor.items():
                if key.startswith(p):
                    bisect.insort(keys, key)
        self.writes[key] = value

    def add_event(self, event_id: bytes) -> None:
        self.events[event_id] = None

    def child(self) -> StateView:
        return StateView(self)

    def merge_into(self, parent: StateView) -> None:
        """Move this view's writes into ``parent`` (which must be this view's backend)."""
        if self.backend is not parent:
            raise RuntimeError("merge_into: not this view's parent")
        for k, v in self.writes.items():
            parent.put(k, v)
        parent.events.update(self.events)


class MemoryState:
    """A plain in-memory backend (unit tests, the simulator, replay)."""

    def __init__(self, items: dict[str, Any] | None = None) -> None:
        self.items: dict[str, Any] = dict(items or {})
        self.event_ids: set[bytes] = set()

    def state_get(self, key: str) -> Any | None:
        return self.items.get(key)

    def state_floor(self, prefix: str, key: str) -> tuple[str, Any] | None:
        best: str | None = None
        for k in self.items:
            if k.startswith(prefix) and k <= key and (best is None or k > best):
                best = k
        return None if best is None else (best, self.items[best])

    def has_event(self, event_id: bytes) -> bool:
        return event_id in self.event_ids

    def apply(self, view: StateView) -> None:
        self.items.update(view.writes)
        self.event_ids.update(view.events)


def genesis_writes(genesis: Genesis) -> dict[str, Any]:
    """The state before the first block: the league trace office and its root keys."""
    to = genesis.trace_office
    kids = []
    writes: dict[str, Any] = {}
    for k in to["keys"]:
        kid = key_id(k["alg"], k["pub"])
        kids.append(kid)
        writes[f"k/{kid}"] = {
            "alg": k["alg"],
            "pub": k["pub"],
            "storage": k["storage"],
            "actor": to["id"],
            "device": None,
            "not_before": genesis.time,
            "not_after": None,
            "revoked_at": None,
        }
    writes[f"a/{to['id']}"] = {
        "id": to["id"],
        "role": "trace_office",
        "banner": to["banner"],
        "name": to.get("name", ""),
        "parent": None,
        "keys": kids,
        "enrolled_at": genesis.time,
        "revoked_at": None,
        "root": True,
    }
    return writes


STATE_HASH_TAG = b"lambtrace/state/v1"


def state_hash(items: Iterable[tuple[str, Any]]) -> bytes:
    """Hash of a whole state given its ``(key, value)`` pairs in ascending key order.

    ``sha256(tag || 0x00 || canonical([key, value]) || canonical([key, value]) ...)``.
    Every node that applied the same log computes the same hash.
    """
    h = hashlib.sha256(STATE_HASH_TAG + b"\x00")
    for k, v in items:
        h.update(codec.encode([k, v]))
    return h.digest()
