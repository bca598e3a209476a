"""Read models: what the API shows, computed from the committed store (and the mempool).

Each function takes the :class:`~node.store.ChainStore` (or the :class:`~node.node.Node`
where pending events matter) and already-validated arguments, and returns a plain value
with real ``bytes`` (the encoding layer turns them into hex or msgpack ``bin``).  No
Flask here, so the command line and tests can use the same views.

Raises :class:`~ledger.errors.LedgerError` with code ``not_found`` for what does not
exist and :class:`~ledger.errors.StorageError` (``corrupt_store``) when committed data
does not parse: stored leaves and state were accepted once, so a failure to read them
back is the node's fault, never the client's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ledger import codec, merkle
from ledger.errors import LedgerError, Rejected, StorageError
from ledger.events import SignedEvent, parse_leaf
from ledger.hashing import TAG_EVENT, H
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.schema import COUNTIES

if TYPE_CHECKING:  # pragma: no cover
    from node.node import Node
    from node.store import ChainStore

MAX_DEVICE_SCAN = 100_000
"""Device records looked at when listing an actor's terminals (``d/`` has no owner index)."""

MAX_TAG_EVENTS = 1000
"""Events listed for one ear tag (the store's tag index is read up to this many)."""


def _not_found(message: str) -> LedgerError:
    return LedgerError(message, code="not_found")


# -- reading committed leaves -------------------------------------------------------------


def stored_leaf(store: ChainStore, index: int) -> bytes:
    """The committed leaf at ``index``; raises ``StorageError`` if it is missing."""
    leaf = store.leaf(index)
    if leaf is None:
        raise StorageError(f"committed leaf {index} is missing", code="corrupt_store")
    return leaf


def parse_stored(leaf: bytes, limits: Limits = DEFAULT_LIMITS) -> SignedEvent:
    """Parse a committed leaf; raises ``StorageError`` (``corrupt_store``) if it does not parse."""
    try:
        return parse_leaf(leaf, limits)
    except Rejected as exc:
        raise StorageError(f"a committed leaf does not parse: {exc.message}", code="corrupt_store") from exc


def leaf_event_id(leaf: bytes) -> bytes:
    """The event id of a committed leaf (hash of its envelope), without a schema check:
    the node wrote the leaf itself, canonical, so its envelope re-packs to the same bytes."""
    try:
        value = codec.decode_trusted(leaf)
        return H(TAG_EVENT, codec.encode_canonical_value(value["event"]))
    except Exception as exc:  # msgpack raises several unrelated types for corrupt bytes
        raise StorageError("a committed leaf is not a signed event", code="corrupt_store") from exc


def event_summary(store: ChainStore, index: int, ev: SignedEvent) -> dict[str, Any]:
    """``{id, index, height, kind, actor, time, body}`` of a committed event."""
    loc = store.event_location(ev.id)
    return {
        "id": ev.id,
        "index": index,
        "height": loc[0] if loc else None,
        "kind": ev.kind,
        "actor": ev.actor,
        "time": ev.time,
        "body": ev.body,
    }


def tag_events(store: ChainStore, tag: str, limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[int, SignedEvent]]:
    """The committed events indexed under ``tag``, in log order."""
    for index in store.tag_event_indexes(tag, limit=MAX_TAG_EVENTS):
        yield index, parse_stored(stored_leaf(store, index), limits)


# -- status and events --------------------------------------------------------------------


def status(node: Node, peers: list[str], role: str) -> dict[str, Any]:
    """What ``GET /v1/status`` shows: chain, node, role, the tip and the mempool."""
    store = node.store
    header = store.last_header
    return {
        "chain": node.genesis.chain,
        "node": node.name,
        "role": role,
        "height": header.height if header else 0,
        "log_size": header.log_size if header else 0,
        "log_root": header.log_root if header else merkle.EMPTY_ROOT,
        "last_block_hash": header.hash if header else None,
        "last_block_time": header.time if header else None,
        "genesis_hash": node.genesis.hash,
        "mempool_size": node.mempool_size,
        "peers": list(peers),
        "time": int(time.time() * 1000),
    }


def event(node: Node, eid: bytes) -> dict[str, Any]:
    """A committed, pending or recently rejected event by id.

    Committed and pending events come with the signed event itself; a rejected one with
    its code and message only (its bytes are not kept).  Raises ``not_found``.
    """
    for _attempt in range(2):  # a pending event may be committed between two looks
        st = node.event_status(eid)
        if st is None:
            break
        if st["state"] == "committed":
            ev = parse_stored(stored_leaf(node.store, st["index"]), node.limits)
            return {
                "id": eid,
                "state": "committed",
                "height": st["height"],
                "index": st["index"],
                "kind": ev.kind,
                "actor": ev.actor,
                "time": ev.time,
                "event": ev.to_dict(),
            }
        if st["state"] == "pending":
            pending = node.pending_event(eid)
            if pending is None:
                continue
            return {
                "id": eid,
                "state": "pending",
                "height": None,
                "index": None,
                "kind": pending.kind,
                "actor": pending.actor,
                "time": pending.time,
                "event": pending.to_dict(),
            }
        return {"id": eid, "state": "rejected", "code": st.get("code"), "message": st.get("message")}
    raise _not_found(f"no event {eid.hex()} is committed, pending or recently rejected")


# -- ear tags and labels ------------------------------------------------------------------


def issued_range(store: ChainStore, tag: str) -> dict[str, Any] | None:
    """The ear-tag range record (``r/<first>``) that holds ``tag``, if any."""
    found = store.state_floor("r/", f"r/{tag}")
    if found is None or found[1]["last"] < tag:
        return None
    return dict(found[1])


def _banner(code: str | None) -> dict[str, Any]:
    return {"banner": code, "banner_name": COUNTIES.get(code or "")}


def _recall_entry(kind: str, ident: str, rec: Any) -> dict[str, Any]:
    return {"type": kind, "id": ident, "at": rec.get("at"), "reason": rec.get("reason"), "event": rec.get("event")}


def tag_lifecycle(store: ChainStore, tag: str, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """The lamb behind ear tag ``tag``: its record, carcass, labels, recalls and events.

    ``status`` is ``issued`` (in an issued range, not yet on a lamb), ``held``,
    ``in_transit``, ``slaughtered`` or ``labelled``.  Raises ``not_found`` for a tag that
    was never issued.
    """
    lamb = store.state_get(f"t/{tag}")
    rng = issued_range(store, tag)
    if lamb is None and rng is None:
        raise _not_found(f"ear tag {tag} was never issued")
    out: dict[str, Any] = {"tag": tag, **_banner(tag[1:7]), "range": rng, "owner": rng["to"] if rng else None}
    if lamb is None:
        out.update(status="issued", recalled=False, lamb=None, carcass=None, labels=[], recalls=[], events=[])
        return out
    carcass = store.state_get(f"c/{lamb['carcass']}") if lamb.get("carcass") else None
    labels = []
    for lid in (carcass or {}).get("labels", []):
        rec = store.state_get(f"l/{lid}")
        if rec is not None:
            labels.append(rec)
    recalls = []
    if lamb.get("recalled"):
        recalls.append(_recall_entry("lamb", tag, lamb["recalled"]))
    if carcass and carcass.get("recalled"):
        recalls.append(_recall_entry("carcass", carcass["carcass"], carcass["recalled"]))
    recalls.extend(_recall_entry("label", lab["label"], lab["recalled"]) for lab in labels if lab.get("recalled"))
    state = lamb["status"]
    if state == "slaughtered" and labels:
        state = "labelled"
    out.update(
        status=state,
        recalled=bool(recalls),
        holder=lamb.get("holder"),
        lamb=lamb,
        carcass=carcass,
        labels=labels,
        recalls=recalls,
        events=[event_summary(store, i, ev) for i, ev in tag_events(store, tag, limits)],
    )
    return out


def label_summary(store: ChainStore, label: str, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """What a consumer sees for a label: cut, lamb facts, plant, slaughter facts, recall.

    Shows the check-code commitment (never a preimage: the ledger has none).  The
    herder's pseudonym is left out.  Raises ``not_found``.
    """
    lab = store.state_get(f"l/{label}")
    if lab is None:
        raise _not_found(f"no label {label}")
    carcass = store.state_get(f"c/{lab['carcass']}") or {}
    lamb = store.state_get(f"t/{lab['tag']}") or {}
    plant = store.state_get(f"a/{lab['plant']}") or {}
    slaughter: dict[str, Any] | None = None
    issued: dict[str, Any] | None = None
    for index, ev in tag_events(store, lab["tag"], limits):
        if ev.kind == "lamb.slaughter" and ev.body.get("carcass") == lab["carcass"]:
            slaughter = {
                "date": ev.body["date"],
                "quarantine_cert": ev.body["quarantine_cert"],
                "carcass_mass_g": ev.body["carcass_mass_g"],
                "event": ev.id,
                "index": index,
            }
        elif ev.kind == "label.issue" and any(x["label"] == label for x in ev.body.get("labels", [])):
            issued = {"event": ev.id, "index": index, "time": ev.time}
    recalls = []
    for kind, ident, rec in (
        ("label", label, lab.get("recalled")),
        ("carcass", lab["carcass"], carcass.get("recalled")),
        ("lamb", lab["tag"], lamb.get("recalled")),
    ):
        if rec:
            recalls.append(_recall_entry(kind, ident, rec))
    return {
        "label": label,
        "cut": lab["cut"],
        "net_mass_g": lab["net_mass_g"],
        "packed": lab["packed"],
        "check_commitment": lab["check"],
        "carcass": lab["carcass"],
        "tag": lab["tag"],
        "lamb": {
            **_banner(lamb.get("banner")),
            "sumu": lamb.get("sumu"),
            "born": lamb.get("born"),
            "breed": lamb.get("breed"),
            "sex": lamb.get("sex"),
            "cooperative": lamb.get("cooperative"),
            "tagged_at": lamb.get("tagged_at"),
        },
        "plant": {"id": lab["plant"], "name": plant.get("name"), **_banner(plant.get("banner"))},
        "slaughter": slaughter,
        "issued": issued,
        "recalled": bool(recalls),
        "recalls": recalls,
    }


# -- blocks and the log -------------------------------------------------------------------


def block(store: ChainStore, height: int) -> dict[str, Any]:
    """Header (with its hash), commit certificate and event ids of block ``height``.

    Raises ``not_found`` beyond the tip.
    """
    out = block_head(store, height)
    begin, end = out["log_range"]
    out["events"] = [leaf_event_id(leaf) for _i, leaf in store.leaves(begin, end)]
    return out


def block_head(store: ChainStore, height: int) -> dict[str, Any]:
    """What every block answer starts with: height, header hash, header, commit
    certificate and ``log_range`` (the block's leaf indexes ``[begin, end)``).

    Raises ``not_found`` beyond the tip.
    """
    header = store.header(height)
    if header is None:
        raise _not_found(f"no block at height {height}; the tip is {store.height}")
    cert = store.certificate(height)
    prev = store.header(height - 1) if height > 1 else None
    return {
        "height": height,
        "hash": header.hash,
        "header": header.to_dict(),
        "certificate": cert.to_dict() if cert else None,
        "log_range": [(prev.log_size if prev else 0), header.log_size],
    }


def latest_height(store: ChainStore) -> int:
    """The tip's height; raises ``not_found`` before the first block."""
    header = store.last_header
    if header is None:
        raise _not_found("no block is committed yet")
    return header.height


def _log_size(store: ChainStore) -> int:
    header = store.last_header
    return header.log_size if header else 0


def consistency(store: ChainStore, first: int, second: int) -> dict[str, Any]:
    """RFC 9162 consistency proof between committed log sizes ``0 < first <= second``.

    Raises :class:`~api.errors.ApiError`-compatible ``bad_range`` (a ``LedgerError``)
    unless ``second`` is at most the committed log size.
    """
    size = _log_size(store)
    if not 0 < first <= second <= size:
        raise LedgerError(
            f"need 0 < first <= second <= {size} (the committed log size)",
            code="bad_range",
            log_size=size,
        )
    return {
        "first": first,
        "second": second,
        "first_root": merkle.root_from_store(first, store.get_node),
        "second_root": merkle.root_from_store(second, store.get_node),
        "proof": merkle.consistency_proof(first, second, store.get_node),
    }


def inclusion(store: ChainStore, index: int, size: int | None) -> dict[str, Any]:
    """RFC 9162 inclusion proof of leaf ``index`` in the committed tree of ``size`` leaves
    (default: the whole committed log), with the leaf and its event id.

    Raises ``bad_range`` unless ``0 <= index < size <= log_size``.
    """
    log_size = _log_size(store)
    n = log_size if size is None else size
    if not 0 <= index < n <= log_size:
        raise LedgerError(
            f"need 0 <= index < size <= {log_size} (the committed log size)", code="bad_range", log_size=log_size
        )
    leaf = stored_leaf(store, index)
    return {
        "index": index,
        "size": n,
        "root": merkle.root_from_store(n, store.get_node),
        "leaf": leaf,
        "leaf_hash": merkle.leaf_hash(leaf),
        "id": leaf_event_id(leaf),
        "proof": merkle.inclusion_proof(index, n, store.get_node),
    }


# -- actors and stats ---------------------------------------------------------------------


def actor(store: ChainStore, actor_id: str) -> dict[str, Any]:
    """An actor's membership record with its keys and terminals; raises ``not_found``.

    Terminals have no owner index: ``d/`` is scanned (at most ``MAX_DEVICE_SCAN``
    records, raw bytes pre-filtered by the owner id).
    """
    rec = store.state_get(f"a/{actor_id}")
    if rec is None:
        raise _not_found(f"no actor {actor_id}")
    keys = []
    for kid in rec.get("keys", []):
        k = store.state_get(f"k/{kid}")
        if k is not None:
            keys.append({"kid": kid, **k})
    devices = []
    needle = actor_id.encode()
    for n, (_k, raw) in enumerate(store.kv.scan(b"Sd/")):
        if n >= MAX_DEVICE_SCAN:
            break
        if needle not in raw:
            continue
        dev = codec.decode_trusted(raw)
        if dev.get("owner") != actor_id:
            continue
        key = store.state_get(f"k/{dev['key']}")
        devices.append({**dev, "key_record": key})
    return {**rec, **_banner(rec.get("banner")), "keys": keys, "key_ids": rec.get("keys", []), "devices": devices}


_SCOPES = {"banner": "banners", "coop": "cooperatives", "plant": "plants"}


def stats(store: ChainStore) -> dict[str, Any]:
    """Counters kept by the rules under ``z/<scope>/<id>``, grouped by scope, with totals.

    ``totals`` sums each counter over one scope only, so nothing counts twice: a counter
    the banners keep is summed over banners, else over plants, else over cooperatives.
    """
    groups: dict[str, dict[str, dict[str, int]]] = {name: {} for name in _SCOPES.values()}
    for k, raw in store.kv.scan(b"Sz/"):
        parts = k[1:].decode().split("/", 2)
        if len(parts) != 3 or parts[1] not in _SCOPES:
            continue
        groups[_SCOPES[parts[1]]][parts[2]] = codec.decode_trusted(raw)
    totals: dict[str, int] = {}
    for scope in ("banners", "plants", "cooperatives"):
        names = {c for rec in groups[scope].values() for c in rec}
        for c in names - set(totals):
            totals[c] = sum(int(rec.get(c, 0)) for rec in groups[scope].values())
    banners = {code: {**rec, "name": COUNTIES.get(code)} for code, rec in groups["banners"].items()}
    header = store.last_header
    return {
        "height": header.height if header else 0,
        "banners": banners,
        "cooperatives": groups["cooperatives"],
        "plants": groups["plants"],
        "totals": totals,
    }
