"""Label proof bundles: everything needed to check a label offline (docs/label-proof.md).

A bundle (format ``lambtrace-label-proof/v3``; ``v2`` on chains whose genesis has no
recall map) holds the latest committed header with
its commit certificate (the checkpoint), the committed signed events on the label's
path with their leaf indexes, and one multiproof (:func:`ledger.merkle.multiproof`)
that recomputes the checkpoint's ``log_root`` from all their leaf hashes at once:

* every event the store indexes under the label's ear tag (``lamb.tag``, custody,
  ``lamb.slaughter``, ``label.issue``, ``recall``);
* the ``tags.issue`` event of the range the tag came from;
* for every event in the bundle (transitively): the ``actor.enroll`` of its signing
  actor and of the actors its body names (a range's recipient, a herder agent's
  cooperative, a shipment's addressee, a terminal's owner), and the event that brought
  each signing key onto the ledger (``actor.enroll``, ``key.rotate`` or
  ``device.register``).  Keys of the genesis trace office need no
  event: genesis holds them.

In ``v3`` it also holds the label's path in the recall map (:mod:`ledger.recallmap`),
which proves the bundle's recalls are all of them, read node by node from state.

The genesis document is referenced by its hash (``genesis_hash``), not carried: a
verifier holds genesis already, or a fingerprint of its hash and fetches the document
from ``GET /v1/genesis`` (the consumer page).  ``bundle(label, embed_genesis=True)``
(``?genesis=1``) adds it for archives that must stand alone (docs/adr/0009).

The store has no index from a key or a tag range to the event that created it, so this
module adds two small lookups, both memoised (committed leaves never change):

* **key → event.**  A key record ``k/<kid>`` keeps ``not_before``, the time of the event
  that enrolled it.  The rules accept an event only in a block whose time lies in
  ``[time - max_future_ms, time + max_lateness_ms]``, so the event is among the leaves of
  those blocks (found by binary search over header times); leaves are pre-filtered by
  the raw public key bytes before one is parsed.  If a key record ever carries the
  enrolling event's id (``event``), that is used instead.
* **range → tags.issue.**  First the tag index of the range's *first* tag (should the
  rules index ``tags.issue`` there), then a backwards scan from the tag's first event,
  pre-filtered by the bytes ``tags.issue`` and the first tag number.

Both scans are bounded (``ProofOptions.max_scan_leaves``); what is not found within the
bound is listed in the bundle's ``gaps`` instead of failing the request.

Pure apart from reading the store: no Flask, no clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger import merkle, recallmap
from ledger.errors import LedgerError, StorageError
from ledger.events import SignedEvent
from ledger.hashing import key_id
from ledger.limits import DEFAULT_LIMITS, Limits

from .queries import issued_range, parse_stored, stored_leaf

if TYPE_CHECKING:  # pragma: no cover
    from ledger.blocks.header import Header
    from node.store import ChainStore

FORMAT = "lambtrace-label-proof/v3"
"""On chains whose genesis defines the recall map: v2 plus the label's path in it."""
FORMAT_V2 = "lambtrace-label-proof/v2"
"""On chains without the recall map (genesis made before it)."""

GENESIS = -1
"""Marker index: the key or actor is anchored in genesis, no event is needed."""

_KEY_KINDS = ("actor.enroll", "key.rotate", "device.register")


@dataclass(frozen=True)
class ProofOptions:
    max_scan_leaves: int = 200_000
    """Leaves one lookup may read when searching for an enrolment or issuance event."""
    max_events: int = 1024
    """Events one bundle may hold."""
    chunk_leaves: int = 4096
    """Leaves read per step of a backwards scan."""
    node_cache: int = 65_536
    """Merkle nodes remembered between bundles (complete nodes never change; the upper
    levels are shared by every proof, so a warm prover reads few nodes from the store)."""


class LabelProver:
    """Builds label proof bundles over one :class:`~node.store.ChainStore`.

    Thread-safe: lookups are memoised in dicts whose entries never change once made.
    """

    def __init__(
        self, store: ChainStore, *, limits: Limits = DEFAULT_LIMITS, options: ProofOptions | None = None
    ) -> None:
        self.store = store
        self.limits = limits
        self.options = options or ProofOptions()
        g = store.genesis
        self._genesis_kids = {key_id(k["alg"], k["pub"]) for k in g.trace_office["keys"]}
        self._key_events: dict[str, int] = {}
        self._issue_events: dict[str, int] = {}
        self._revocations: dict[tuple[str, str], int] = {}
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._lock = threading.Lock()

    # -- the bundle --------------------------------------------------------------------
    def bundle(self, label: str, *, embed_genesis: bool = False) -> dict[str, Any]:
        """The proof bundle for ``label`` (values with real bytes); with
        ``embed_genesis`` it also carries the genesis document (``genesis``).

        Raises ``LedgerError`` ``not_found`` if no such label is committed, and
        ``StorageError`` if committed data is missing or does not parse.
        """
        lab = self.store.state_get(f"l/{label}")
        if lab is None:
            raise LedgerError(f"no label {label}", code="not_found")
        tag = lab["tag"]
        gaps: list[dict[str, Any]] = []
        path = self.store.tag_event_indexes(tag, limit=self.options.max_events)
        header = self._checkpoint_covering(max(path, default=-1))
        if header is None:
            raise LedgerError(f"no block is committed yet for label {label}", code="not_found")
        recalls = None
        if recallmap.enabled(self.store.genesis):
            header, recalls = self._recall_path_at(header, label)
        size = header.log_size
        # Blocks may have committed since the index was read: read it again now that the
        # checkpoint is fixed (a commit indexes its events before it moves the tip), so
        # every event of the tag below the checkpoint's log size is in the bundle, a
        # recall above all (the recall path proves them all there).
        path = self.store.tag_event_indexes(tag, limit=self.options.max_events)
        todo = [i for i in path if i < size and self._on_story(i, label, lab)]
        issue = self._issue_event(tag, min(todo, default=size))
        if issue is None:
            gaps.append(
                {
                    "kind": "tags.issue",
                    "subject": tag,
                    "reason": "the range's tags.issue event was not found within the scan bound",
                }
            )
        elif issue != GENESIS and issue < size:
            todo.append(issue)
        included: dict[int, bytes] = {}
        while todo:
            index = todo.pop()
            if index in included or index == GENESIS:
                continue
            if len(included) >= self.options.max_events:
                gaps.append({"kind": "events", "subject": label, "reason": "the bundle reached its event limit"})
                break
            leaf = stored_leaf(self.store, index)
            included[index] = leaf
            ev = parse_stored(leaf, self.limits)
            for what, subject, found in self._signer_events(ev):
                if found is None:
                    gaps.append({"kind": what, "subject": subject, "reason": "not found within the scan bound"})
                elif found != GENESIS and found < size and found not in included:
                    todo.append(found)
        cert = self.store.certificate(header.height)
        if cert is None:
            raise StorageError(f"block {header.height} has no certificate", code="corrupt_store")
        indexes = sorted(included)
        proof = merkle.multiproof(indexes, size, self._get_node) if indexes else []
        quorum = cert.quorum(self.store.genesis.validators).to_dict()
        out: dict[str, Any] = {"genesis_hash": self.store.genesis.hash, "label": label, "gaps": _dedupe(gaps)}
        if recalls is None:
            out.update(format=FORMAT_V2, checkpoint={"header": header.to_dict(), "certificate": quorum},
                       events=[{"leaf": included[i], "index": i} for i in indexes], proof=proof)
        else:
            # v3, compact (docs/label-proof.md): events as [index, leaf] pairs, the hashes
            # as one byte string, the certificate without the height and block hash its
            # header gives, and the label's path in the recall map
            out.update(format=FORMAT,
                       checkpoint={"header": header.to_dict(),
                                   "certificate": {"round": quorum["round"], "precommits": quorum["precommits"]}},
                       events=[[i, included[i]] for i in indexes], proof=b"".join(proof),
                       recalls=recalls.to_value())
        if embed_genesis:
            out["genesis"] = self.store.genesis.to_dict()
        return out

    def _recall_path_at(self, header: Header, label: str) -> tuple[Header, recallmap.Proof]:
        """``label``'s path in the recall map as of a committed header (that header, or a
        later one when state has already moved on): read node by node from state, and
        checked against the header's ``state_root`` (a commit between the reads shows as
        a path that leads elsewhere, and the read is done again)."""
        for _ in range(100):
            root = recallmap.root_in(self.store)
            if root == header.state_root:
                proof, value = recallmap.path_in(self.store, label)
                try:
                    recallmap.check_proof(proof, label, value, root)
                except LedgerError:
                    pass
                else:
                    return header, proof
            # state is a block ahead of the tip it was read with: take the newer tip
            time.sleep(0.005)
            newer = self.store.last_header
            header = newer if newer is not None and newer.height >= header.height else header
        raise StorageError(f"the recall map in state does not match block {header.height}'s state_root",
                           code="corrupt_store")

    def _get_node(self, level: int, index: int) -> bytes:
        """A stored complete Merkle node, remembered (bounded): once written it never changes."""
        key = (level, index)
        h = self._nodes.get(key)
        if h is None:
            h = self.store.get_node(level, index)
            if len(self._nodes) >= self.options.node_cache:
                self._nodes.clear()
            self._nodes[key] = h
        return h

    def _checkpoint_covering(self, index: int) -> Header | None:
        """The latest header, re-read briefly if state ran a block ahead of it."""
        header = self.store.last_header
        for _ in range(50):
            if header is None or header.log_size > index:
                return header
            time.sleep(0.01)  # a commit writes the tag index just before it moves the tip
            header = self.store.last_header
        return header

    def _on_story(self, index: int, label: str, lab: dict[str, Any]) -> bool:
        """Whether an event indexed under the label's ear tag belongs to this label's
        story: a ``label.issue`` of the carcass's *other* labels and a recall of other
        targets do not (a verifier refuses events a bundle does not need)."""
        ev = parse_stored(stored_leaf(self.store, index), self.limits)
        if ev.kind == "label.issue":
            return any(x["label"] == label for x in ev.body["labels"])
        if ev.kind == "recall":
            mine = {("lamb", lab["tag"]), ("carcass", lab["carcass"]), ("label", label)}
            return any((t["type"], t["id"]) in mine for t in ev.body["targets"])
        return True

    # -- who signed ----------------------------------------------------------------------
    def _signer_events(self, ev: SignedEvent) -> list[tuple[str, str, int | None]]:
        """``(what, subject, index | GENESIS | None)`` for the enrolment of ``ev``'s actor
        (and of the actors its body names: a range's recipient, a herder agent's
        cooperative, a shipment's addressee) and the enrolment of each key that signed it,
        and the revocation of any of those actors or keys (``actor.revoke``, ``key.rotate``
        with ``revoke``) committed since."""
        out: list[tuple[str, str, int | None]] = []
        for aid in dict.fromkeys([ev.actor, *_referenced_actors(ev)]):
            actor = self.store.state_get(f"a/{aid}")
            if actor is None:
                out.append(("actor.enroll", aid, None))
            elif actor.get("root"):
                out.append(("actor.enroll", aid, GENESIS))
            elif actor.get("keys"):
                out.append(("actor.enroll", aid, self.key_event(actor["keys"][0])))
            if actor is not None and actor.get("revoked_at") is not None:
                out.append(("actor.revoke", aid, self.revocation_event("actor.revoke", aid, actor["revoked_at"])))
        for kid, _sig in ev.sigs:
            out.append(("key", kid, self.key_event(kid)))
            k = self.store.state_get(f"k/{kid}")
            if k is not None and k.get("revoked_at") is not None:
                out.append(("key.rotate", kid, self.revocation_event("key.rotate", kid, k["revoked_at"])))
        return out

    def revocation_event(self, kind: str, subject: str, t: int) -> int | None:
        """The leaf index of the ``actor.revoke`` of actor ``subject`` (``kind`` =
        ``actor.revoke``) or of the ``key.rotate`` revoking key ``subject``, made at time
        ``t`` (the record's ``revoked_at``); ``None`` if not found within the scan bound.

        Records keep the revocation's time, not its event, so this searches the leaves of
        the blocks that could hold an event of time ``t`` (as for key enrolments).
        """
        memo = (kind, subject)
        cached = self._revocations.get(memo)
        if cached is not None:
            return cached

        def match(ev: SignedEvent) -> bool:
            if ev.time != t or ev.kind != kind:
                return False
            if kind == "actor.revoke":
                return bool(ev.body["id"] == subject)
            return subject in ev.body.get("revoke", [])

        params = self.store.genesis.params
        begin, end = self._leaf_window(t - params.max_future_ms, t + params.max_lateness_ms)
        end = min(end, begin + self.options.max_scan_leaves)
        found = self._scan_forward(begin, end, subject.encode(), match)
        if found is not None:
            with self._lock:
                self._revocations[memo] = found
        return found

    def key_event(self, kid: str) -> int | None:
        """The leaf index of the event that enrolled key ``kid``; ``GENESIS`` for the
        genesis trace office's keys; ``None`` if not found within the scan bound."""
        cached = self._key_events.get(kid)
        if cached is not None:
            return cached
        found = self._find_key_event(kid)
        if found is not None:
            with self._lock:
                self._key_events[kid] = found
        return found

    def _find_key_event(self, kid: str) -> int | None:
        k = self.store.state_get(f"k/{kid}")
        if k is None:
            return None
        actor = self.store.state_get(f"a/{k['actor']}")
        if kid in self._genesis_kids and actor is not None and actor.get("root"):
            return GENESIS
        if type(k.get("event")) is bytes:
            loc = self.store.event_location(k["event"])
            if loc is not None:
                return loc[1]
        pub: bytes = k["pub"]
        t: int = k["not_before"]

        def match(ev: SignedEvent) -> bool:
            b = ev.body
            if ev.time != t or ev.kind not in _KEY_KINDS:
                return False
            if ev.kind == "actor.enroll":
                return b["id"] == k["actor"] and any(x["pub"] == pub for x in b["keys"])
            if ev.kind == "key.rotate":
                return b["id"] == k["actor"] and any(x["pub"] == pub for x in b.get("add", []))
            return b["owner"] == k["actor"] and b["device"] == k["device"] and b["key"]["pub"] == pub

        params = self.store.genesis.params
        begin, end = self._leaf_window(t - params.max_future_ms, t + params.max_lateness_ms)
        end = min(end, begin + self.options.max_scan_leaves)
        return self._scan_forward(begin, end, pub, match)

    # -- where the tag came from ------------------------------------------------------------
    def _issue_event(self, tag: str, before: int) -> int | None:
        """The leaf index of the ``tags.issue`` event of ``tag``'s range, searched below
        leaf ``before``; ``None`` if not found within the scan bound."""
        rng = issued_range(self.store, tag)
        if rng is None:
            return None
        first: str = rng["first"]
        cached = self._issue_events.get(first)
        if cached is not None:
            return cached
        if type(rng.get("event")) is bytes:
            loc = self.store.event_location(rng["event"])
            if loc is not None:
                return loc[1]

        def match(ev: SignedEvent) -> bool:
            return ev.kind == "tags.issue" and ev.body["first"] == first and ev.body["to"] == rng["to"]

        found: int | None = None
        for index in self.store.tag_event_indexes(first, limit=64):
            if match(parse_stored(stored_leaf(self.store, index), self.limits)):
                found = index
                break
        if found is None:
            found = self._scan_backward(before, b"tags.issue", first.encode(), match)
        if found is not None:
            with self._lock:
                self._issue_events[first] = found
        return found

    # -- scanning ---------------------------------------------------------------------------
    def _leaf_window(self, t_lo: int, t_hi: int) -> tuple[int, int]:
        """Leaves ``[begin, end)`` of the blocks whose time lies in ``[t_lo, t_hi]``."""
        top = self.store.height
        h0 = self._first_height(top, lambda h: h.time >= t_lo)
        h1 = self._first_height(top, lambda h: h.time > t_hi) - 1
        if h0 > top or h1 < h0:
            return 0, 0
        prev = self.store.header(h0 - 1) if h0 > 1 else None
        last = self.store.header(h1)
        return (prev.log_size if prev else 0), (last.log_size if last else 0)

    def _first_height(self, top: int, pred: Callable[[Any], bool]) -> int:
        """The least height in ``[1, top]`` whose header satisfies a monotone ``pred``
        (``top + 1`` if none does)."""
        lo, hi = 1, top + 1
        while lo < hi:
            mid = (lo + hi) // 2
            h = self.store.header(mid)
            if h is None:
                raise StorageError(f"header {mid} is missing", code="corrupt_store")
            if pred(h):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _scan_forward(self, begin: int, end: int, needle: bytes, match: Callable[[SignedEvent], bool]) -> int | None:
        for index, leaf in self.store.leaves(begin, end):
            if needle in leaf and match(parse_stored(leaf, self.limits)):
                return index
        return None

    def _scan_backward(
        self, before: int, needle: bytes, needle2: bytes, match: Callable[[SignedEvent], bool]
    ) -> int | None:
        pos = before
        floor = max(0, before - self.options.max_scan_leaves)
        while pos > floor:
            start = max(floor, pos - self.options.chunk_leaves)
            for index, leaf in self.store.leaves(start, pos):
                if needle in leaf and needle2 in leaf and match(parse_stored(leaf, self.limits)):
                    return index
            pos = start
        return None


def _referenced_actors(ev: SignedEvent) -> list[str]:
    """Actors an event's rules look up besides its signer."""
    b = ev.body
    if ev.kind in ("tags.issue", "custody.ship"):
        return [b["to"]]
    if ev.kind == "actor.enroll" and b.get("parent"):
        return [b["parent"]]
    if ev.kind == "device.register":
        return [b["owner"]]
    if ev.kind in ("key.rotate", "actor.revoke"):
        return [b["id"]]
    return []


def _dedupe(gaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for g in gaps:
        k = (g["kind"], g["subject"])
        if k not in seen:
            seen.add(k)
            out.append(g)
    return out


def build_label_bundle(
    store: ChainStore, label: str, *, limits: Limits = DEFAULT_LIMITS, embed_genesis: bool = False
) -> dict[str, Any]:
    """One-off :meth:`LabelProver.bundle` (no memo shared between calls)."""
    return LabelProver(store, limits=limits).bundle(label, embed_genesis=embed_genesis)
