"""Fraud and anomaly signals (issue 6 item 3, docs/alerts.md), each with its evidence.

Three sources feed ``GET /v1/alerts``:

* **The ledger** — folded block by block from height 1 and cached by height, so each
  request only feeds the blocks committed since the last one (:class:`LedgerFold`).
  Deterministic: every node with the same chain finds the same ledger alerts.

  - ``premium_shortfall``: a slaughter paid below market + 1 yuan/kg
    (:data:`lambtrace.premium.PREMIUM_DUE_FEN_PER_KG`);
  - ``slaughter_without_receipt``: a plant slaughtered a lamb it had not received
    (more slaughters than receipts; the rules refuse it, so this stays quiet unless the
    rules were bypassed).

* **Rejected attempts** — refused events never reach the ledger, so the node that
  admission refused them at records them in its own key-value store under the prefix
  ``A`` (beside the chain's keys, never touching them), at most :data:`MAX_REJECTS`,
  oldest dropped first (:class:`RejectLog`).  Only fraud-relevant codes are kept; they are
  all raised after the signature checks, so the named actor really signed the attempt:

  - ``tag_outside_banner``: ``tag_wrong_owner`` — an ear tag applied outside the
    banner/cooperative it was issued to (resale);
  - ``tag_after_slaughter``: ``lamb_slaughtered``, or ``tag_already_applied`` on a
    slaughtered lamb — a tag presented again after slaughter;
  - ``tag_reapplied``: ``tag_already_applied`` on a live lamb;
  - ``double_shipment``: ``not_holder``/``lamb_in_transit`` on ``custody.ship`` — a lamb
    shipped by a second holder or twice;
  - ``double_receipt``: ``shipment_received``;
  - ``slaughter_without_receipt``: ``not_holder``/``lamb_in_transit`` on ``lamb.slaughter``.

* **Label checks** (:mod:`api.checks`, node-local) — ``label_suspect_clone``: a label
  scanned more than the threshold or verified in more than one place.

Key layout of the reject log::

    A s <seq:8>          a rejected attempt: canonical {id, kind, actor, code, message,
                         time, recorded_at, subject}
    A i <event id:32>    its sequence number (a re-sent attempt is recorded once)
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lambtrace.epcis import Committed
from lambtrace.premium import PREMIUM_DUE_FEN_PER_KG, PremiumAudit
from ledger import codec
from ledger.errors import Rejected
from ledger.events import parse_leaf

if TYPE_CHECKING:  # pragma: no cover
    from node.kv import KV
    from node.node import Node
    from node.store import ChainStore

    from .checks import LabelChecks

PREFIX = b"A"
MAX_REJECTS = 10_000
"""Rejected attempts a node keeps (the oldest go first)."""

FRAUD_CODES = frozenset({
    "tag_wrong_owner", "tag_already_applied", "lamb_slaughtered", "not_holder", "lamb_in_transit",
    "shipment_received",
})
"""Rejection codes that are recorded as attempts."""

KINDS: dict[str, str] = {
    "premium_shortfall": "slaughter price below market + 1 yuan/kg",
    "slaughter_without_receipt": "a plant slaughtering (or trying to slaughter) a lamb it has not received",
    "tag_outside_banner": "an ear tag applied outside the banner or cooperative it was issued to",
    "tag_after_slaughter": "an ear tag presented again after its lamb was slaughtered",
    "tag_reapplied": "an ear tag already on a lamb applied again",
    "double_shipment": "a lamb shipped by someone not holding it, or shipped twice",
    "double_receipt": "a shipment received twice",
    "label_suspect_clone": "a label scanned more than the threshold or verified in several places",
}
"""Alert kinds and what they mean."""

_SUBJECT_LAMBS_MAX = 20


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _alert(kind: str, time: int | None, message: str, subject: dict[str, Any], evidence: dict[str, Any],
           source: str, ident: str) -> dict[str, Any]:
    return {
        "id": f"{kind}/{ident}",
        "kind": kind,
        "source": source,
        "time": time,
        "message": message,
        "subject": subject,
        "evidence": evidence,
    }


# -- rejected attempts ----------------------------------------------------------------


def classify(code: str, event_kind: str, lamb_slaughtered: bool = False) -> str | None:
    """The alert kind of a rejection ``code`` of an ``event_kind`` event, or None."""
    if code == "tag_wrong_owner":
        return "tag_outside_banner"
    if code == "lamb_slaughtered":
        return "tag_after_slaughter"
    if code == "tag_already_applied":
        return "tag_after_slaughter" if lamb_slaughtered else "tag_reapplied"
    if code == "shipment_received":
        return "double_receipt"
    if code in ("not_holder", "lamb_in_transit"):
        if event_kind == "custody.ship":
            return "double_shipment"
        if event_kind == "lamb.slaughter":
            return "slaughter_without_receipt"
    return None


def _subject(kind: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(body.get("tag"), str):
        out["tags"] = [body["tag"]]
    if isinstance(body.get("lambs"), list):
        out["tags"] = [t for t in body["lambs"][:_SUBJECT_LAMBS_MAX] if isinstance(t, str)]
    if isinstance(body.get("shipment"), str):
        out["shipment"] = body["shipment"]
    return out


class RejectLog:
    """The node-local record of fraud-relevant rejected attempts (prefix ``A``)."""

    def __init__(self, kv: KV, max_records: int = MAX_REJECTS) -> None:
        self.kv = kv
        self.max_records = max_records
        self._lock = threading.Lock()
        last = kv.floor(PREFIX + b"s", PREFIX + b"s" + b"\xff" * 8)
        self._next = int.from_bytes(last[0][2:], "big") + 1 if last else 0
        first = next(iter(kv.scan(PREFIX + b"s")), None)
        self._first = int.from_bytes(first[0][2:], "big") if first else self._next

    def __len__(self) -> int:
        return self._next - self._first

    def record(self, node: Node, items: list[Any], results: list[dict[str, Any]]) -> int:
        """Record the fraud-relevant rejections among ``results`` (one per signed-event
        value in ``items``); returns how many were new.  Never raises for odd values."""
        puts: dict[bytes, bytes] = {}
        now = int(node.clock())
        with self._lock:
            for item, r in zip(items, results):
                if r.get("status") != "rejected" or r.get("code") not in FRAUD_CODES or not r.get("id"):
                    continue
                env = item.get("event") if isinstance(item, dict) else None
                if not isinstance(env, dict):
                    continue
                eid = bytes.fromhex(r["id"])
                if PREFIX + b"i" + eid in puts or self.kv.get(PREFIX + b"i" + eid) is not None:
                    continue
                body = env.get("body")
                kind = str(env.get("kind", ""))
                slaughtered = False
                if r["code"] == "tag_already_applied" and isinstance(body, dict) and isinstance(body.get("tag"), str):
                    lamb = node.store.state_get(f"t/{body['tag']}")
                    slaughtered = bool(lamb and lamb.get("status") == "slaughtered")
                alert_kind = classify(r["code"], kind, slaughtered)
                if alert_kind is None:
                    continue
                rec = {
                    "id": eid,
                    "alert": alert_kind,
                    "kind": kind,
                    "actor": str(env.get("actor", "")),
                    "code": r["code"],
                    "message": str(r.get("message", "")),
                    "time": env.get("time") if isinstance(env.get("time"), int) else None,
                    "recorded_at": now,
                    "subject": _subject(alert_kind, body),
                }
                seq = self._next
                self._next += 1
                puts[PREFIX + b"s" + _u64(seq)] = codec.encode(rec)
                puts[PREFIX + b"i" + eid] = _u64(seq)
            if not puts:
                return 0
            deletes: list[bytes] = []
            fresh = len(puts) // 2
            while self._next - self._first > self.max_records:
                key = PREFIX + b"s" + _u64(self._first)
                raw = puts.pop(key, None) or self.kv.get(key)
                if raw is not None:
                    ikey = PREFIX + b"i" + codec.decode_trusted(raw)["id"]
                    if puts.pop(ikey, None) is None:
                        deletes.extend((key, ikey))
                self._first += 1
            self.kv.write(puts, tuple(deletes), sync=False)
            return fresh

    def records(self) -> list[dict[str, Any]]:
        """Every kept attempt, oldest first."""
        return [codec.decode_trusted(v) for _k, v in self.kv.scan(PREFIX + b"s")]


_logs_lock = threading.Lock()
_logs: weakref.WeakKeyDictionary[ChainStore, RejectLog] = weakref.WeakKeyDictionary()


def reject_log(node: Node) -> RejectLog:
    """The :class:`RejectLog` over ``node``'s store (one per store)."""
    with _logs_lock:
        log = _logs.get(node.store)
        if log is None:
            log = _logs[node.store] = RejectLog(node.store.kv)
        return log


def record_rejections(node: Node, items: list[Any], results: list[dict[str, Any]]) -> int:
    """Hook for the submit path (:func:`api.submit.submit`)."""
    return reject_log(node).record(node, items, results)


# -- the ledger fold ------------------------------------------------------------------


@dataclass
class LedgerFold:
    """Committed events folded from height 1: ledger alerts and the premium audit."""

    height: int = 0
    log_size: int = 0
    premium: PremiumAudit = field(default_factory=PremiumAudit)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    _plants: set[str] = field(default_factory=set)
    _to_plant: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    """shipment id -> (plant, lambs) for shipments to plants not yet received"""
    _received: dict[str, set[str]] = field(default_factory=dict)
    """plant -> tags received and not yet slaughtered"""
    _slaughtered: dict[str, int] = field(default_factory=dict)
    _receipts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, c: Committed) -> None:
        self.premium.feed(c)
        ev = c.event
        b = ev.body
        if ev.kind == "actor.enroll" and b["role"] == "plant":
            self._plants.add(b["id"])
        elif ev.kind == "custody.ship" and b["to"] in self._plants:
            self._to_plant[b["shipment"]] = (b["to"], list(b["lambs"]))
        elif ev.kind == "custody.receive":
            found = self._to_plant.pop(b["shipment"], None)
            if found is not None and found[0] == ev.actor:
                self._received.setdefault(ev.actor, set()).update(found[1])
                self._receipts[ev.actor] = self._receipts.get(ev.actor, 0) + len(found[1])
        elif ev.kind == "lamb.slaughter":
            self._slaughter(c)

    def _slaughter(self, c: Committed) -> None:
        ev = c.event
        b = ev.body
        eid = ev.id.hex()
        plant = ev.actor
        self._slaughtered[plant] = self._slaughtered.get(plant, 0) + 1
        held = self._received.get(plant)
        if held is not None and b["tag"] in held:
            held.discard(b["tag"])
        else:
            self.alerts.append(_alert(
                "slaughter_without_receipt", c.block_time,
                f"{plant} slaughtered lamb {b['tag']} it never received ({self._slaughtered[plant]} slaughtered, "
                f"{self._receipts.get(plant, 0)} received)",
                {"plant": plant, "tags": [b["tag"]]},
                {"events": [eid], "height": c.height},
                "ledger", eid))
        price, market, mass = b["price_fen_per_kg"], b["market_price_fen_per_kg"], b["carcass_mass_g"]
        short = market + PREMIUM_DUE_FEN_PER_KG - price
        if short > 0:
            shortfall_fen = (short * mass + 500) // 1000
            self.alerts.append(_alert(
                "premium_shortfall", c.block_time,
                f"{plant} paid {price} fen/kg for lamb {b['tag']} against a market price of {market}: "
                f"{short} fen/kg below the 1 yuan/kg premium ({shortfall_fen} fen on {mass} g of carcass)",
                {"plant": plant, "tags": [b["tag"]], "carcass": b["carcass"]},
                {"events": [eid], "height": c.height, "price_fen_per_kg": price,
                 "market_price_fen_per_kg": market, "due_fen_per_kg": market + PREMIUM_DUE_FEN_PER_KG,
                 "carcass_mass_g": mass, "shortfall_fen_per_kg": short, "shortfall_fen": shortfall_fen},
                "ledger", eid))

    def update(self, store: ChainStore) -> None:
        """Feed the blocks committed since the last update (call with :attr:`lock` held)."""
        tip = store.height
        begin = self.log_size
        for h in range(self.height + 1, tip + 1):
            header = store.header(h)
            if header is None:  # pragma: no cover - committed heights always have headers
                break
            for i, leaf in store.leaves(begin, header.log_size):
                try:
                    ev = parse_leaf(leaf)
                except Rejected:  # pragma: no cover - committed leaves parse
                    continue
                self.feed(Committed(h, header.time, i, ev))
            begin = header.log_size
            self.height, self.log_size = h, begin


_folds_lock = threading.Lock()
_folds: weakref.WeakKeyDictionary[ChainStore, LedgerFold] = weakref.WeakKeyDictionary()


def ledger_fold(store: ChainStore) -> LedgerFold:
    """The fold of ``store``'s chain up to its current tip (cached; fed incrementally).

    The caller reads it with ``fold.lock`` held if it must not change meanwhile."""
    with _folds_lock:
        fold = _folds.get(store)
        if fold is None:
            fold = _folds[store] = LedgerFold()
    with fold.lock:
        fold.update(store)
    return fold


def premium(store: ChainStore) -> dict[str, Any]:
    """The premium audit (:meth:`lambtrace.premium.PremiumAudit.report`) at the tip."""
    fold = ledger_fold(store)
    with fold.lock:
        return {"chain": store.genesis.chain, **fold.premium.report()}


# -- evidence for rejected attempts ---------------------------------------------------


def _tag_events(store: ChainStore, tag: str, limit: int = 50) -> list[dict[str, Any]]:
    out = []
    for index in store.tag_event_indexes(tag, limit):
        leaf = store.leaf(index)
        if leaf is None:  # pragma: no cover
            continue
        try:
            ev = parse_leaf(leaf)
        except Rejected:  # pragma: no cover
            continue
        out.append({"id": ev.id.hex(), "kind": ev.kind, "actor": ev.actor, "index": index,
                    "body": {k: ev.body[k] for k in ("shipment", "to", "carcass") if k in ev.body}})
    return out


def _attempt_alert(store: ChainStore, rec: dict[str, Any]) -> dict[str, Any]:
    kind = rec["alert"]
    subject = dict(rec.get("subject") or {})
    subject["actor"] = rec["actor"]
    tags = subject.get("tags") or []
    committed: list[dict[str, Any]] = []
    for tag in tags[:3]:
        committed.extend(_tag_events(store, tag))
    if kind == "tag_outside_banner" and tags:
        found = store.state_floor("r/", f"r/{tags[0]}")
        if found is not None and found[1]["last"] >= tags[0]:
            rng = found[1]
            subject["issued_to"] = rng["to"]
            subject["issued_banner"] = rng["banner"]
            committed.append({"id": rng["event"].hex(), "kind": "tags.issue", "actor": None, "index": None,
                              "body": {"to": rng["to"], "first": rng["first"], "last": rng["last"]}})
    if kind == "double_receipt" and "shipment" in subject:
        s = store.state_get(f"s/{subject['shipment']}")
        if s is not None and s["lambs"]:
            subject["tags"] = list(s["lambs"][:_SUBJECT_LAMBS_MAX])
            committed = [e for e in _tag_events(store, s["lambs"][0])
                         if e["body"].get("shipment") == subject["shipment"]]
    eid = rec["id"].hex()
    what = {
        "tag_outside_banner": "applied an ear tag issued to another banner or cooperative",
        "tag_after_slaughter": "presented an ear tag whose lamb is already slaughtered",
        "tag_reapplied": "applied an ear tag already on a lamb",
        "double_shipment": "shipped a lamb it does not hold (or that is already in transit)",
        "double_receipt": "received a shipment already received",
        "slaughter_without_receipt": "tried to slaughter a lamb it has not received",
    }[kind]
    events = list({e["id"]: e for e in committed}.values())
    return _alert(
        kind, rec["recorded_at"], f"{rec['actor']} {what} (rejected: {rec['code']})", subject,
        {"rejected": {"id": eid, "actor": rec["actor"], "kind": rec["kind"], "code": rec["code"],
                      "message": rec["message"], "time": rec["time"], "recorded_at": rec["recorded_at"]},
         "events": [e["id"] for e in events], "committed": events},
        "rejected_attempt", eid)


# -- label checks ---------------------------------------------------------------------


def _label_alerts(store: ChainStore, checks: LabelChecks) -> list[dict[str, Any]]:
    from .checks import PREFIX as CHECK_PREFIX

    labels: list[str] = []
    last = None
    for k, _v in checks.kv.scan(CHECK_PREFIX):
        label = k[1:].split(b"\x00", 1)[0].decode()
        if label != last:
            labels.append(label)
            last = label
    out = []
    for label in labels:
        st = checks.stats(label)
        if not st["suspect_clone"]:
            continue
        lab = store.state_get(f"l/{label}")
        places = [codec.decode_trusted(v)["at"] for _k, v in checks.kv.scan(CHECK_PREFIX + label.encode() + b"\x00p")]
        when = max(places) if places else st["first_verified_at"]
        if when is None and lab is not None:
            when = lab["issued_at"]
        reasons = ", ".join(st["reasons"])
        out.append(_alert(
            "label_suspect_clone", when,
            f"label {label} may be cloned ({reasons}: {st['scans']} scans, threshold {st['scan_threshold']}; "
            f"verified in {st['places']} place(s))",
            {"label": label, "tags": [lab["tag"]] if lab else [], "plant": lab["plant"] if lab else None},
            {"scans": st, "events": []},
            "label_checks", label))
    return out


# -- the listing ----------------------------------------------------------------------


def alerts(node: Node, checks: LabelChecks | None = None, *, kind: str | None = None, since: int | None = None,
           limit: int = 100) -> dict[str, Any]:
    """Every alert, newest first: ``{height, total, counts, alerts}``; ``kind`` and
    ``since`` (alert time, ms) filter, ``limit`` caps the list (``total`` counts all)."""
    store = node.store
    fold = ledger_fold(store)
    with fold.lock:
        out = list(fold.alerts)
        height = fold.height
    out.extend(_attempt_alert(store, rec) for rec in reject_log(node).records())
    if checks is not None:
        out.extend(_label_alerts(store, checks))
    counts = dict.fromkeys(KINDS, 0)
    for a in out:
        counts[a["kind"]] += 1
    if kind is not None:
        out = [a for a in out if a["kind"] == kind]
    if since is not None:
        out = [a for a in out if a["time"] is not None and a["time"] >= since]
    out.sort(key=lambda a: (a["time"] or 0, a["id"]), reverse=True)
    return {"height": height, "total": len(out), "counts": counts, "alerts": out[:limit]}
