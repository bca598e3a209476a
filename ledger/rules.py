"""The rules: is this event valid in this state, and what does it change?

:func:`apply_event` decides from the state view, the genesis and the block time alone,
so every node reaches the same verdict for the same event.  Cheap checks come first
(chain, duplicate, time, actor, role, keys), signatures next, the kind's own rules
last.  A refusal raises :class:`~ledger.errors.Rejected` with a stable snake_case code
and leaves the view untouched; an acceptance writes into the view.

Rejection codes (besides the schema's ``malformed``, ``unknown_kind``,
``unknown_field``, ``missing_field``, ``bad_field``, ``bad_version``):
``wrong_chain``, ``duplicate``, ``time_in_future``, ``too_late``, ``unknown_actor``,
``actor_revoked``, ``wrong_role``, ``unknown_key``, ``key_not_actor``, ``key_revoked``,
``key_expired``, ``key_not_yet_valid``, ``bad_signature``,
``hsm_required``, ``actor_exists``, ``bad_parent``, ``bad_key``, ``key_exists``,
``device_exists``, ``device_quota_exceeded``, ``unknown_device``, ``device_retired``,
``wrong_banner``, ``bad_recipient``, ``tag_county_mismatch``,
``tag_range_overlap``, ``quota_exceeded``, ``tag_not_issued``, ``tag_wrong_owner``,
``tag_already_applied``, ``chip_taken``, ``shipment_exists``, ``unknown_lamb``,
``not_holder``, ``lamb_in_transit``, ``lamb_slaughtered``, ``lamb_recalled``,
``unknown_shipment``, ``not_addressee``, ``shipment_received``, ``carcass_taken``,
``unknown_carcass``, ``carcass_not_owned``, ``carcass_recalled``, ``label_taken``,
``mass_exceeds_carcass``, ``unknown_target``, ``nothing_to_do``, ``last_key``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import recallmap
from .errors import LedgerError, Rejected
from .events import KINDS, SignedEvent
from .genesis import Genesis
from .hashing import key_id
from .sigs import check_public_key, verify_signature
from .state import StateView

Verifier = Callable[[str, bytes, bytes, bytes], bool]

TAG_SERIAL_MAX = 99_999_999


@dataclass(frozen=True)
class Context:
    """What the rules may look at besides state: genesis and the block's time."""

    genesis: Genesis
    block_time: int
    verify: Verifier = verify_signature
    """Signature check; a node may pass a cached one (same verdicts, less work)."""


@dataclass(frozen=True)
class Applied:
    """What an accepted event touched, for the store's indexes."""

    tags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


def apply_event(view: StateView, ev: SignedEvent, ctx: Context) -> Applied:
    """Check ``ev`` against ``view`` and, if valid, write its effects into ``view``.

    Raises :class:`Rejected`; on a raise ``view`` is unchanged.
    """
    child, applied = try_event(view, ev, ctx)
    child.merge_into(view)
    return applied


def try_event(view: StateView, ev: SignedEvent, ctx: Context) -> tuple[StateView, Applied]:
    """Like :func:`apply_event` but leaves the effects in a child view of ``view``.

    The caller merges the child (``child.merge_into(view)``) or drops it; the child's
    ``writes`` are the event's write set.
    """
    child = view.child()
    applied = _apply(child, ev, ctx)
    child.add_event(ev.id)
    return child, applied


def time_ok(ev: SignedEvent, genesis: Genesis, block_time: int) -> bool:
    """Whether ``ev``'s time passes the rules' clock checks at ``block_time`` (the only
    part of a verdict that depends on the block rather than on state)."""
    p = genesis.params
    return genesis.time <= ev.time <= block_time + p.max_future_ms and ev.time + p.max_lateness_ms >= block_time


def _apply(v: StateView, ev: SignedEvent, ctx: Context) -> Applied:
    g = ctx.genesis
    if ev.chain != g.chain:
        raise Rejected("wrong_chain", f"event is for chain {ev.chain!r}, this is {g.chain!r}")
    if v.has_event(ev.id):
        raise Rejected("duplicate", "this event is already in the log", id=ev.id.hex())
    if ev.time > ctx.block_time + g.params.max_future_ms:
        raise Rejected("time_in_future", "event time is ahead of the chain's clock")
    if ev.time + g.params.max_lateness_ms < ctx.block_time:
        raise Rejected("too_late", "event is older than the accepted lateness")
    if ev.time < g.time:
        raise Rejected("too_late", "event time is before genesis")
    actor = v.get(f"a/{ev.actor}")
    if actor is None:
        raise Rejected("unknown_actor", f"no actor {ev.actor!r}")
    # Once a revocation is in state nothing more from that actor or key is accepted, not
    # even events dated before it: a stolen key must not sign backdated events.
    if actor["revoked_at"] is not None:
        raise Rejected("actor_revoked", f"actor {ev.actor!r} is revoked")
    kind = KINDS[ev.kind]
    if actor["role"] not in kind.roles:
        raise Rejected("wrong_role", f"a {actor['role']} may not sign {ev.kind}")
    keys = _check_keys(v, ev, ctx)
    msg = ev.signing_bytes()
    for (kid, sig), key in zip(ev.sigs, keys):
        if not ctx.verify(key["alg"], key["pub"], msg, sig):
            raise Rejected("bad_signature", f"signature by key {kid} does not verify")
    handler = _HANDLERS[ev.kind]
    return handler(v, ev, actor, ctx)


def _check_keys(v: StateView, ev: SignedEvent, ctx: Context) -> list[dict[str, Any]]:
    keys = []
    for kid, _sig in ev.sigs:
        key = v.get(f"k/{kid}")
        if key is None:
            raise Rejected("unknown_key", f"no key {kid}")
        if key["actor"] != ev.actor:
            raise Rejected("key_not_actor", f"key {kid} does not belong to {ev.actor!r}")
        if key["revoked_at"] is not None:
            raise Rejected("key_revoked", f"key {kid} is revoked")
        if key["not_after"] is not None and ev.time > key["not_after"]:
            raise Rejected("key_expired", f"key {kid} expired")
        if ev.time < key["not_before"]:
            raise Rejected("key_not_yet_valid", f"key {kid} was not yet enrolled at the event's time")
        if key["device"] is not None:
            # As with revoked actors: once a retirement is in state the terminal signs
            # nothing more, not even events dated before it (a lost terminal's key must
            # not sign backdated events).
            dev = v.get(f"d/{key['device']}")
            if dev is None or dev["retired_at"] is not None:
                raise Rejected("device_retired", f"terminal {key['device']} is retired")
        keys.append(key)
    if ev.kind == "lamb.slaughter" and ctx.genesis.params.slaughter_requires_hsm:
        if any(k["storage"] != "hsm" for k in keys):
            raise Rejected("hsm_required", "slaughter attestations must be signed with HSM-held keys")
    return keys


# -- membership -----------------------------------------------------------------------


def _new_key(v: StateView, k: dict[str, Any], actor: str, device: str | None, ev: SignedEvent) -> tuple[str, dict]:
    try:
        check_public_key(k["alg"], k["pub"])
    except LedgerError as exc:
        raise Rejected("bad_key", exc.message) from exc
    kid = key_id(k["alg"], k["pub"])
    if v.get(f"k/{kid}") is not None:
        raise Rejected("key_exists", f"key {kid} is already enrolled")
    return kid, {
        "alg": k["alg"],
        "pub": k["pub"],
        "storage": k["storage"],
        "actor": actor,
        "device": device,
        "not_before": ev.time,
        "not_after": k.get("not_after"),
        "revoked_at": None,
        "event": ev.id,
    }


def _enroll(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    b = ev.body
    if v.get(f"a/{b['id']}") is not None:
        raise Rejected("actor_exists", f"actor {b['id']!r} is already enrolled")
    parent = b.get("parent")
    if b["role"] == "herder_agent":
        p = v.get(f"a/{parent}") if parent else None
        if p is None or p["role"] != "cooperative" or p["revoked_at"] is not None:
            raise Rejected("bad_parent", "a herder agent belongs to an enrolled cooperative")
    elif parent is not None:
        raise Rejected("bad_parent", "only herder agents name a parent cooperative")
    kids: list[str] = []
    recs = []
    for k in b["keys"]:
        kid, rec = _new_key(v, k, b["id"], None, ev)
        if kid in kids:
            raise Rejected("key_exists", f"key {kid} is listed twice")
        kids.append(kid)
        recs.append(rec)
    for kid, rec in zip(kids, recs):
        v.put(f"k/{kid}", rec)
    v.put(
        f"a/{b['id']}",
        {
            "id": b["id"],
            "role": b["role"],
            "banner": b["banner"],
            "name": b.get("name", ""),
            "parent": parent,
            "keys": kids,
            "enrolled_at": ev.time,
            "revoked_at": None,
            "root": False,
        },
    )
    return Applied()


def _target_actor(v: StateView, aid: str) -> dict:
    a = v.get(f"a/{aid}")
    if a is None:
        raise Rejected("unknown_actor", f"no actor {aid!r}")
    if a["revoked_at"] is not None:
        raise Rejected("actor_revoked", f"actor {aid!r} is revoked")
    return dict(a)


def _revoke(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    a = _target_actor(v, ev.body["id"])
    if a.get("root"):
        raise Rejected("wrong_role", "the genesis trace office cannot be revoked")
    a["revoked_at"] = ev.time
    v.put(f"a/{a['id']}", a)
    return Applied()


def _rotate(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    b = ev.body
    a = _target_actor(v, b["id"])
    if not b.get("add") and not b.get("revoke"):
        raise Rejected("nothing_to_do", "key.rotate adds or revokes at least one key")
    kids = list(a["keys"])
    for kid in b.get("revoke", []):
        k = v.get(f"k/{kid}")
        if k is None or k["actor"] != a["id"] or k["device"] is not None:
            raise Rejected("unknown_key", f"{a['id']!r} has no key {kid}")
        if k["revoked_at"] is not None:
            raise Rejected("key_revoked", f"key {kid} is already revoked")
        k = dict(k)
        k["revoked_at"] = ev.time
        v.put(f"k/{kid}", k)
    for k in b.get("add", []):
        kid, rec = _new_key(v, k, a["id"], None, ev)
        v.put(f"k/{kid}", rec)
        kids.append(kid)
    if a.get("root") and not any(_live(v.get(f"k/{kid}"), ev.time) for kid in kids):
        # the genesis trace office signs every enrolment and rotation: with no live key
        # left, nobody could ever enrol, issue or rotate again
        raise Rejected("last_key", "the genesis trace office must keep at least one key that is neither revoked "
                                   "nor expired")
    a["keys"] = kids
    v.put(f"a/{a['id']}", a)
    return Applied()


def _live(k: dict | None, t: int) -> bool:
    return k is not None and k["revoked_at"] is None and (k["not_after"] is None or k["not_after"] >= t)


def _device(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    b = ev.body
    if v.get(f"d/{b['device']}") is not None:
        raise Rejected("device_exists", f"terminal {b['device']!r} is already filed")
    owner = _target_actor(v, b["owner"])
    if owner["role"] not in ("cooperative", "herder_agent", "plant", "banner_office"):
        raise Rejected("bad_recipient", "terminals are filed for cooperatives, herder agents, plants, banner offices")
    if actor["role"] == "banner_office" and owner["banner"] != actor["banner"]:
        raise Rejected("wrong_banner", "a banner office files terminals for its own banner")
    kid, rec = _new_key(v, b["key"], owner["id"], b["device"], ev)
    banner = owner["banner"]
    quota = ctx.genesis.params.terminal_quotas.get(banner)
    qkey = f"q/dev/{banner}"
    used = v.get(qkey) or 0
    if quota is not None and used + 1 > quota:
        raise Rejected(
            "device_quota_exceeded", f"banner {banner} may have {quota} terminals in service; {used} are"
        )
    v.put(qkey, used + 1)
    v.put(f"k/{kid}", rec)
    v.put(
        f"d/{b['device']}",
        {
            "device": b["device"],
            "owner": owner["id"],
            "key": kid,
            "model": b.get("model", ""),
            "registered_at": ev.time,
            "retired_at": None,
            "banner": banner,
        },
    )
    return Applied()


def _device_retire(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    """Retire a terminal: its key signs nothing more, and its banner's slot is freed."""
    b = ev.body
    dev = v.get(f"d/{b['device']}")
    if dev is None:
        raise Rejected("unknown_device", f"no terminal {b['device']!r}")
    if dev["retired_at"] is not None:
        raise Rejected("device_retired", f"terminal {b['device']!r} is already retired")
    owner = v.get(f"a/{dev['owner']}")
    banner = dev.get("banner") or (owner["banner"] if owner is not None else None)
    if actor["role"] == "banner_office" and banner != actor["banner"]:
        raise Rejected("wrong_banner", "a banner office retires terminals of its own banner")
    dev = dict(dev)
    dev["retired_at"] = ev.time
    dev["retired_reason"] = b["reason"]
    v.put(f"d/{b['device']}", dev)
    if banner is not None:
        qkey = f"q/dev/{banner}"
        v.put(qkey, max((v.get(qkey) or 0) - 1, 0))
    return Applied()


# -- ear tags -------------------------------------------------------------------------


def _tags_issue(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    b = ev.body
    to = _target_actor(v, b["to"])
    if to["role"] not in ("banner_office", "cooperative"):
        raise Rejected("bad_recipient", "ear tags are issued to banner offices and cooperatives")
    first = b["first"]
    county = first[1:7]
    if county != to["banner"]:
        raise Rejected("tag_county_mismatch", f"tags coded for {county} cannot go to banner {to['banner']}")
    serial = int(first[7:])
    last_serial = serial + b["count"] - 1
    if last_serial > TAG_SERIAL_MAX:
        raise Rejected("bad_field", "the range runs past the last serial", field="body.count")
    last = first[:7] + f"{last_serial:08d}"
    below = v.state_floor("r/", f"r/{last}")
    if below is not None:
        _k, rng = below
        if rng["last"] >= first:
            raise Rejected("tag_range_overlap", f"tags overlap the range from {rng['first']}")
    quota = ctx.genesis.params.tag_quotas.get(county)
    qkey = f"q/{county}/{b['year']}"
    used = v.get(qkey) or 0
    if quota is not None and used + b["count"] > quota:
        raise Rejected(
            "quota_exceeded", f"banner {county} may be issued {quota} tags in {b['year']}; {used} are issued"
        )
    v.put(
        f"r/{first}",
        {
            "first": first,
            "last": last,
            "count": b["count"],
            "to": to["id"],
            "banner": county,
            "year": b["year"],
            "event": ev.id,
        },
    )
    v.put(qkey, used + b["count"])
    _count(v, "banner", county, tags_issued=b["count"])
    return Applied()


def _lamb_tag(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    b = ev.body
    tag = b["tag"]
    if v.get(f"t/{tag}") is not None:
        raise Rejected("tag_already_applied", f"ear tag {tag} is already on a lamb")
    found = v.state_floor("r/", f"r/{tag}")
    if found is None or found[1]["last"] < tag:
        raise Rejected("tag_not_issued", f"ear tag {tag} was never issued")
    rng = found[1]
    owner = v.get(f"a/{rng['to']}")
    ok = False
    if owner is not None:
        if owner["role"] == "cooperative":
            ok = ev.actor == owner["id"] or actor.get("parent") == owner["id"]
        else:  # banner office: anyone tagging in that banner
            ok = actor["banner"] == owner["banner"]
    if not ok:
        raise Rejected(
            "tag_wrong_owner",
            f"ear tag {tag} was issued to {rng['to']!r}, not to this actor's banner or cooperative",
        )
    chip = b.get("chip")
    if chip is not None:
        if v.get(f"x/{chip}") is not None:
            raise Rejected("chip_taken", f"chip {chip} is already mapped to an ear tag")
        v.put(f"x/{chip}", tag)
    v.put(
        f"t/{tag}",
        {
            "tag": tag,
            "chip": chip,
            "herder": b["herder"],
            "born": b["born"],
            "breed": b["breed"],
            "sex": b["sex"],
            "sumu": b["sumu"],
            "banner": actor["banner"],
            "tagged_by": ev.actor,
            "tagged_at": ev.time,
            "cooperative": actor["parent"] if actor["role"] == "herder_agent" else ev.actor,
            "holder": ev.actor,
            "status": "held",
            "shipment": None,
            "carcass": None,
            "recalled": None,
        },
    )
    coop = actor["parent"] if actor["role"] == "herder_agent" else ev.actor
    _count(v, "banner", actor["banner"], tagged=1)
    _count(v, "coop", coop, tagged=1)
    return Applied(tags=(tag,))


# -- custody --------------------------------------------------------------------------


def _lamb_for_holder(v: StateView, tag: str, actor_id: str) -> dict:
    lamb = v.get(f"t/{tag}")
    if lamb is None:
        raise Rejected("unknown_lamb", f"no lamb carries ear tag {tag}")
    if lamb["status"] == "slaughtered":
        raise Rejected("lamb_slaughtered", f"lamb {tag} is already slaughtered")
    if lamb["recalled"] is not None:
        raise Rejected("lamb_recalled", f"lamb {tag} is recalled")
    if lamb["status"] == "in_transit":
        raise Rejected("lamb_in_transit", f"lamb {tag} is in transit")
    if lamb["holder"] != actor_id:
        raise Rejected("not_holder", f"lamb {tag} is held by another actor")
    return dict(lamb)


def _ship(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    b = ev.body
    if v.get(f"s/{b['shipment']}") is not None:
        raise Rejected("shipment_exists", f"shipment {b['shipment']!r} already exists")
    to = _target_actor(v, b["to"])
    if to["id"] == ev.actor or to["role"] not in ("herder_agent", "cooperative", "plant"):
        raise Rejected("bad_recipient", "lambs are shipped to another herder agent, cooperative or plant")
    if len(set(b["lambs"])) != len(b["lambs"]):
        raise Rejected("bad_field", "a lamb is listed twice", field="body.lambs")
    for tag in b["lambs"]:
        lamb = _lamb_for_holder(v, tag, ev.actor)
        lamb["status"] = "in_transit"
        lamb["shipment"] = b["shipment"]
        v.put(f"t/{tag}", lamb)
    v.put(
        f"s/{b['shipment']}",
        {
            "shipment": b["shipment"],
            "from": ev.actor,
            "to": to["id"],
            "lambs": list(b["lambs"]),
            "shipped_at": ev.time,
            "received_at": None,
        },
    )
    _count(v, "banner", actor["banner"], shipped=len(b["lambs"]))
    return Applied(tags=tuple(b["lambs"]))


def _receive(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    sid = ev.body["shipment"]
    s = v.get(f"s/{sid}")
    if s is None:
        raise Rejected("unknown_shipment", f"no shipment {sid!r}")
    if s["to"] != ev.actor:
        raise Rejected("not_addressee", f"shipment {sid!r} is addressed to another actor")
    if s["received_at"] is not None:
        raise Rejected("shipment_received", f"shipment {sid!r} was already received")
    for tag in s["lambs"]:
        lamb = dict(v.get(f"t/{tag}") or {})
        lamb["status"] = "held"
        lamb["holder"] = ev.actor
        lamb["shipment"] = None
        v.put(f"t/{tag}", lamb)
    s = dict(s)
    s["received_at"] = ev.time
    v.put(f"s/{sid}", s)
    if actor["role"] == "plant":
        _count(v, "plant", ev.actor, received=len(s["lambs"]))
    return Applied(tags=tuple(s["lambs"]))


# -- plants ---------------------------------------------------------------------------


def _slaughter(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    b = ev.body
    lamb = v.get(f"t/{b['tag']}")
    if lamb is not None and lamb["status"] == "slaughtered":
        raise Rejected("lamb_slaughtered", f"lamb {b['tag']} is already slaughtered")
    lamb = _lamb_for_holder(v, b["tag"], ev.actor)
    if v.get(f"c/{b['carcass']}") is not None:
        raise Rejected("carcass_taken", f"carcass id {b['carcass']!r} is taken")
    lamb["status"] = "slaughtered"
    lamb["carcass"] = b["carcass"]
    v.put(f"t/{b['tag']}", lamb)
    v.put(
        f"c/{b['carcass']}",
        {
            "carcass": b["carcass"],
            "tag": b["tag"],
            "plant": ev.actor,
            "carcass_mass_g": b["carcass_mass_g"],
            "labelled_mass_g": 0,
            "labels": [],
            "slaughtered_at": ev.time,
            "recalled": None,
        },
    )
    _count(v, "plant", ev.actor, slaughtered=1, carcass_mass_g=b["carcass_mass_g"])
    _count(v, "banner", lamb["banner"], slaughtered=1)
    _count(v, "coop", lamb.get("cooperative"), slaughtered=1)
    return Applied(tags=(b["tag"],))


def _label(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    b = ev.body
    c = v.get(f"c/{b['carcass']}")
    if c is None:
        raise Rejected("unknown_carcass", f"no carcass {b['carcass']!r}")
    if c["plant"] != ev.actor:
        raise Rejected("carcass_not_owned", f"carcass {b['carcass']!r} belongs to another plant")
    if c["recalled"] is not None:
        raise Rejected("carcass_recalled", f"carcass {b['carcass']!r} is recalled")
    if recallmap.enabled(ctx.genesis):
        # a label of a recalled lamb would have no place in the recall map's chain of the
        # recall that came before it (docs/label-proof.md, "The recall map")
        lamb = v.get(f"t/{c['tag']}")
        if lamb is not None and lamb["recalled"] is not None:
            raise Rejected("lamb_recalled", f"lamb {c['tag']} is recalled")
    c = dict(c)
    ids = [lab["label"] for lab in b["labels"]]
    if len(set(ids)) != len(ids):
        raise Rejected("label_taken", "a label id is listed twice")
    mass = c["labelled_mass_g"] + sum(lab["net_mass_g"] for lab in b["labels"])
    if mass > c["carcass_mass_g"]:
        raise Rejected("mass_exceeds_carcass", "labelled cuts weigh more than the carcass")
    for lab in b["labels"]:
        if v.get(f"l/{lab['label']}") is not None:
            raise Rejected("label_taken", f"label id {lab['label']!r} is taken")
    for lab in b["labels"]:
        v.put(
            f"l/{lab['label']}",
            {
                "label": lab["label"],
                "carcass": c["carcass"],
                "tag": c["tag"],
                "plant": ev.actor,
                "cut": lab["cut"],
                "net_mass_g": lab["net_mass_g"],
                "packed": lab["packed"],
                "check": lab["check"],
                "issued_at": ev.time,
                "recalled": None,
            },
        )
    c["labels"] = c["labels"] + ids
    c["labelled_mass_g"] = mass
    v.put(f"c/{c['carcass']}", c)
    _count(v, "plant", ev.actor, labelled=len(ids))
    return Applied(tags=(c["tag"],), labels=tuple(ids))


def _recall(v: StateView, ev: SignedEvent, actor: dict, ctx: Context) -> Applied:
    b = ev.body
    prefix = {"lamb": "t/", "carcass": "c/", "label": "l/"}
    tags = []
    labels = []
    touched: list[str] = []
    mapped = recallmap.enabled(ctx.genesis)
    for t in b["targets"]:
        key = prefix[t["type"]] + t["id"]
        rec = v.get(key)
        if rec is None:
            raise Rejected("unknown_target", f"no {t['type']} {t['id']!r}")
        rec = dict(rec)
        rec["recalled"] = {"at": ev.time, "reason": b["reason"], "event": ev.id}
        v.put(key, rec)
        tags.append(rec["tag"])
        if t["type"] == "label":
            labels.append(t["id"])
        if mapped:
            touched.extend(_labels_of(v, t["type"], t["id"], rec))
    if touched:
        recallmap.record_recall(v, touched, ev.leaf)
    return Applied(tags=tuple(dict.fromkeys(tags)), labels=tuple(labels))


def _labels_of(v: StateView, kind: str, ident: str, rec: dict) -> list[str]:
    """The labels a recall of ``kind`` ``ident`` (record ``rec``) touches."""
    if kind == "label":
        return [ident]
    if kind == "carcass":
        return list(rec["labels"])
    carcass = rec.get("carcass")
    c = v.get(f"c/{carcass}") if carcass else None
    return list(c["labels"]) if c is not None else []


def _count(v: StateView, scope: str, ident: str | None, **inc: int) -> None:
    """Add to the counters kept for ``/v1/stats`` under ``z/<scope>/<ident>``."""
    if not ident:
        return
    key = f"z/{scope}/{ident}"
    rec = dict(v.get(key) or {})
    for name, n in inc.items():
        rec[name] = rec.get(name, 0) + n
    v.put(key, rec)


_HANDLERS: dict[str, Callable[[StateView, SignedEvent, dict, Context], Applied]] = {
    "actor.enroll": _enroll,
    "actor.revoke": _revoke,
    "key.rotate": _rotate,
    "device.register": _device,
    "device.retire": _device_retire,
    "tags.issue": _tags_issue,
    "lamb.tag": _lamb_tag,
    "custody.ship": _ship,
    "custody.receive": _receive,
    "lamb.slaughter": _slaughter,
    "label.issue": _label,
    "recall": _recall,
}
