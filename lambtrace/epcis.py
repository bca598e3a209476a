"""Committed ledger events as an EPCIS 2.0 JSON-LD document (docs/export.md).

The exporter is a fold over the committed log, in log order: :class:`EpcisExporter`
sees every committed event (so it knows which lambs a shipment carries when the
shipment is received, and whose lamb a carcass was), and turns those at heights above
``since`` into EPCIS events.  It is pure: events, block times and "now" come in as
values; reading the chain and writing files is ``lambtrace.cmd_export``'s job.

Mapping (one EPCIS event per exported ledger event):

===================  ===================  =======  =============  ============
kind                 EPCIS type           action   bizStep        disposition
===================  ===================  =======  =============  ============
``tags.issue``       ObjectEvent          ADD      commissioning  encoded
``lamb.tag``         ObjectEvent          ADD      commissioning  active
``custody.ship``     ObjectEvent          OBSERVE  shipping       in_transit
``custody.receive``  ObjectEvent          OBSERVE  receiving      in_progress
``lamb.slaughter``   TransformationEvent  --       killing        in_progress
``label.issue``      TransformationEvent  --       packing        active
``recall``           ObjectEvent          OBSERVE  (none)         recalled
===================  ===================  =======  =============  ============

Membership kinds (``actor.enroll``, ``actor.revoke``, ``key.rotate``,
``device.register``) are master data, not supply-chain events: they are read for
context and not exported.

A ``tags.issue`` range (up to 100,000 tags) is one ObjectEvent with a
``quantityList`` of one class ``urn:lt:tagrange:<first>-<last>`` and the count, not
100,000 EPCs: the tag numbers are only filed then; each becomes an instance
(``urn:lt:tag:<tag>``) when ``lamb.tag`` commissions it on a lamb.

Identifiers are project URNs: ``urn:lt:tag:<15-digit ear tag>``,
``urn:lt:carcass:<id>``, ``urn:lt:label:<id>``, ``urn:lt:loc:<actor id>`` (readPoint
and bizLocation: the actor's premises), ``urn:lt:party:<actor id>``,
``urn:lt:shipment:<id>``.  ``eventID`` is ``urn:lt:event:<hex>``, the ledger event id
(``H(lambtrace/event/v1, envelope)``); it is deliberately not written as a CBV
``ni:///sha-256`` event hash, which is computed by another (CBV) algorithm.
LambTrace's own fields sit under the ``lt:`` prefix (:data:`LT_NAMESPACE`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import IO, Any
from urllib.parse import quote

from ledger.events import SignedEvent

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
LT_NAMESPACE = "https://lambtrace.example/epcis/"
CONTEXT: list[Any] = [EPCIS_CONTEXT, {"lt": LT_NAMESPACE}]
CHINA_TZ = timezone(timedelta(hours=8))
TZ_OFFSET = "+08:00"

MEMBERSHIP_KINDS = frozenset({"actor.enroll", "actor.revoke", "key.rotate", "device.register"})

CSV_COLUMNS = (
    "height", "leaf_index", "event_id", "event_time", "kind", "epcis_type", "action", "biz_step",
    "disposition", "actor", "tags", "carcass", "labels", "shipment", "to",
)


@dataclass(frozen=True, slots=True)
class Committed:
    """One committed event and where it sits: block height and time, leaf index."""

    height: int
    block_time: int
    """the block's time (ms, UTC): when the ledger recorded the event"""
    index: int
    event: SignedEvent


def iso_china(ms: int) -> str:
    """``ms`` since the epoch (UTC) as ISO 8601 in China time, e.g.
    ``2026-09-21T12:00:00.000+08:00`` (exact: no float arithmetic)."""
    t = datetime.fromtimestamp(ms // 1000, CHINA_TZ) + timedelta(milliseconds=ms % 1000)
    return t.isoformat(timespec="milliseconds")


def _urn(kind: str, ident: str) -> str:
    return f"urn:lt:{kind}:{quote(ident, safe='-._~')}"


def tag_uri(tag: str) -> str:
    return _urn("tag", tag)


def carcass_uri(carcass: str) -> str:
    return _urn("carcass", carcass)


def label_uri(label: str) -> str:
    return _urn("label", label)


def loc_uri(actor: str) -> str:
    return _urn("loc", actor)


def party_uri(actor: str) -> str:
    return _urn("party", actor)


def event_uri(event_id: bytes) -> str:
    return f"urn:lt:event:{event_id.hex()}"


@dataclass
class _Context:
    """What earlier events tell about later ones (shipments, carcasses)."""

    shipments: dict[str, dict[str, Any]] = field(default_factory=dict)
    carcass_tag: dict[str, str] = field(default_factory=dict)


class EpcisExporter:
    """Fold committed events (in log order) into EPCIS events.

    :meth:`feed` takes every committed event from height 1 and returns the EPCIS event
    for it, or None when the kind is not exported or the height is ``<= since``.
    """

    def __init__(self, *, since: int = 0) -> None:
        self.since = since
        self._ctx = _Context()
        self.exported = 0
        self.skipped = 0

    def feed(self, c: Committed) -> dict[str, Any] | None:
        ev = c.event
        b = ev.body
        # context first: every event, exported or not
        if ev.kind == "custody.ship":
            self._ctx.shipments[b["shipment"]] = {"from": ev.actor, "to": b["to"], "lambs": list(b["lambs"])}
        elif ev.kind == "lamb.slaughter":
            self._ctx.carcass_tag[b["carcass"]] = b["tag"]
        if c.height <= self.since or ev.kind in MEMBERSHIP_KINDS:
            self.skipped += 1
            return None
        out = self._convert(c)
        if out is None:
            self.skipped += 1
        else:
            self.exported += 1
        return out

    def _convert(self, c: Committed) -> dict[str, Any] | None:
        ev = c.event
        b = ev.body
        out: dict[str, Any] = {
            "type": "ObjectEvent",
            "eventID": event_uri(ev.id),
            "eventTime": iso_china(ev.time),
            "recordTime": iso_china(c.block_time),
            "eventTimeZoneOffset": TZ_OFFSET,
        }
        where = {"id": loc_uri(ev.actor)}
        if ev.kind == "tags.issue":
            last = f"{int(b['first']) + b['count'] - 1:015d}"
            out.update({
                "action": "ADD",
                "quantityList": [{"epcClass": _urn("tagrange", f"{b['first']}-{last}"), "quantity": b["count"]}],
                "bizStep": "commissioning",
                "disposition": "encoded",
                "readPoint": where,
                "destinationList": [{"type": "possessing_party", "destination": party_uri(b["to"])}],
                "lt:tagRange": {"first": b["first"], "last": last, "count": b["count"], "to": b["to"],
                                "year": b["year"]},
            })
        elif ev.kind == "lamb.tag":
            ilmd: dict[str, Any] = {
                "lt:herder": b["herder"], "lt:born": b["born"], "lt:breed": b["breed"], "lt:sex": b["sex"],
                "lt:sumu": b["sumu"],
            }
            if b.get("chip"):
                ilmd["lt:chip"] = b["chip"]
            out.update({
                "action": "ADD",
                "epcList": [tag_uri(b["tag"])],
                "bizStep": "commissioning",
                "disposition": "active",
                "readPoint": where,
                "bizLocation": where,
                "ilmd": ilmd,
            })
        elif ev.kind in ("custody.ship", "custody.receive"):
            ship = self._ctx.shipments.get(b["shipment"])
            if ship is None:  # a receive whose shipment never committed: cannot be on a valid chain
                return None
            shipping = ev.kind == "custody.ship"
            out.update({
                "action": "OBSERVE",
                "epcList": [tag_uri(t) for t in ship["lambs"]],
                "bizStep": "shipping" if shipping else "receiving",
                "disposition": "in_transit" if shipping else "in_progress",
                "readPoint": where,
                "bizTransactionList": [{"type": "desadv", "bizTransaction": _urn("shipment", b["shipment"])}],
                "sourceList": [{"type": "possessing_party", "source": party_uri(ship["from"])}],
                "destinationList": [{"type": "possessing_party", "destination": party_uri(ship["to"])}],
            })
            if not shipping:
                out["bizLocation"] = where
        elif ev.kind == "lamb.slaughter":
            out.update({
                "type": "TransformationEvent",
                "inputEPCList": [tag_uri(b["tag"])],
                "outputEPCList": [carcass_uri(b["carcass"])],
                "bizStep": "killing",
                "disposition": "in_progress",
                "readPoint": where,
                "bizLocation": where,
                "ilmd": {"lt:carcassMassG": b["carcass_mass_g"], "lt:quarantineCert": b["quarantine_cert"],
                         "lt:slaughterDate": b["date"]},
                "lt:priceFenPerKg": b["price_fen_per_kg"],
                "lt:marketPriceFenPerKg": b["market_price_fen_per_kg"],
            })
        elif ev.kind == "label.issue":
            out.update({
                "type": "TransformationEvent",
                "inputEPCList": [carcass_uri(b["carcass"])],
                "outputEPCList": [label_uri(lab["label"]) for lab in b["labels"]],
                "bizStep": "packing",
                "disposition": "active",
                "readPoint": where,
                "bizLocation": where,
                "ilmd": {"lt:packs": [{"label": lab["label"], "cut": lab["cut"], "netMassG": lab["net_mass_g"],
                                       "packed": lab["packed"]} for lab in b["labels"]]},
            })
            tag = self._ctx.carcass_tag.get(b["carcass"])
            if tag is not None:
                out["lt:tag"] = tag
        elif ev.kind == "recall":
            uri = {"lamb": tag_uri, "carcass": carcass_uri, "label": label_uri}
            out.update({
                "action": "OBSERVE",
                "epcList": list(dict.fromkeys(uri[t["type"]](t["id"]) for t in b["targets"])),
                "disposition": "recalled",
                "persistentDisposition": {"set": ["recalled"]},
                "readPoint": where,
                "lt:reason": b["reason"],
            })
        else:
            return None
        out.update({
            "lt:kind": ev.kind,
            "lt:eventId": ev.id.hex(),
            "lt:height": c.height,
            "lt:leafIndex": c.index,
            "lt:actor": ev.actor,
        })
        return out


def document_head(*, chain: str, now_ms: int, since: int, tip: int) -> dict[str, Any]:
    """The document without its events (``epcisBody.eventList`` is empty)."""
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": iso_china(now_ms),
        "lt:chain": chain,
        "lt:sinceHeight": since,
        "lt:tipHeight": tip,
        "epcisBody": {"eventList": []},
    }


def build_document(committed: Iterable[Committed], *, chain: str, now_ms: int, since: int = 0,
                   tip: int = 0) -> dict[str, Any]:
    """The whole EPCIS document for ``committed`` (every committed event from height 1,
    in log order; those at heights ``<= since`` only give context)."""
    ex = EpcisExporter(since=since)
    doc = document_head(chain=chain, now_ms=now_ms, since=since, tip=tip)
    doc["epcisBody"]["eventList"] = [e for c in committed if (e := ex.feed(c)) is not None]
    return doc


def write_json(fp: IO[str], head: dict[str, Any], events: Iterable[dict[str, Any]]) -> int:
    """Stream a document: ``head`` with ``events`` as its event list, one per line, so
    a season of a million lambs never sits in memory at once.  Returns the count."""
    if head["epcisBody"]["eventList"]:
        raise RuntimeError("document_head must have an empty event list")
    text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))
    marker = '"eventList":[]'
    i = text.rindex(marker) + len(marker) - 1
    fp.write(text[:i] + "\n")
    n = 0
    for e in events:
        fp.write(("," if n else "") + json.dumps(e, ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    fp.write(text[i:] + "\n")
    return n


def csv_row(e: dict[str, Any]) -> dict[str, Any]:
    """One CSV row for an EPCIS event made by :class:`EpcisExporter`."""

    def ids(uris: Iterable[str], kind: str) -> str:
        prefix = f"urn:lt:{kind}:"
        return " ".join(dict.fromkeys(u[len(prefix):] for u in uris if u.startswith(prefix)))

    every = [*e.get("epcList", []), *e.get("inputEPCList", []), *e.get("outputEPCList", [])]
    if e.get("lt:tag"):
        every.append(tag_uri(e["lt:tag"]))
    biz = [t["bizTransaction"] for t in e.get("bizTransactionList", [])]
    dest = [d["destination"] for d in e.get("destinationList", [])]
    return {
        "height": e["lt:height"],
        "leaf_index": e["lt:leafIndex"],
        "event_id": e["lt:eventId"],
        "event_time": e["eventTime"],
        "kind": e["lt:kind"],
        "epcis_type": e["type"],
        "action": e.get("action", ""),
        "biz_step": e.get("bizStep", ""),
        "disposition": e.get("disposition", ""),
        "actor": e["lt:actor"],
        "tags": ids(every, "tag"),
        "carcass": ids(every, "carcass"),
        "labels": ids(every, "label"),
        "shipment": ids(biz, "shipment"),
        "to": ids(dest, "party"),
    }


def write_csv(fp: IO[str], events: Iterable[dict[str, Any]]) -> int:
    """One row per EPCIS event (columns :data:`CSV_COLUMNS`); returns the row count."""
    w = csv.DictWriter(fp, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    n = 0
    for e in events:
        w.writerow(csv_row(e))
        n += 1
    return n


def csv_text(events: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    write_csv(buf, events)
    return buf.getvalue()


def exported(exporter: EpcisExporter, committed: Iterable[Committed]) -> Iterator[dict[str, Any]]:
    """The EPCIS events ``exporter`` makes of ``committed``, lazily."""
    for c in committed:
        e = exporter.feed(c)
        if e is not None:
            yield e
