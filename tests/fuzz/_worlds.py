"""Genuine objects for the harnesses' seeds and dictionaries.

:func:`seasoned` is the seasoned one-validator chain of tests/helpers_api.py (enrolments,
a terminal, tagging, custody, slaughter, a key rotation, labels), built once per process.
:func:`extra_events` are further genuinely signed events of every kind the season does
not commit (recall, revocations, retirement, ...), valid or not against its state.
Import this module inside :func:`_harness.instrumented` (it imports the project).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import msgpack

import helpers_api
from helpers_api import AGENT, BANNER_OFFICE, CHAIN, COOP, OFFICE, PLANT, TAG_A, TAG_B, ApiWorld
from ledger import codec
from ledger import events as E
from ledger.errors import DecodeError
from ledger.hashing import key_id
from node.kv import MemoryKV
from signer.software import SoftwareSigner

LABEL = "l-0001"


def key(tag: str, alg: str = "ed25519") -> SoftwareSigner:
    """A deterministic key: the same in every process, so a saved corpus stays valid."""
    return SoftwareSigner.from_private_bytes(alg, hashlib.sha256(b"lambtrace-fuzz/" + tag.encode()).digest())


@contextlib.contextmanager
def deterministic_keys(world: str) -> Iterator[None]:
    """Make tests/helpers_api.py's ``generate`` deterministic while ``world`` is built."""
    n = itertools.count()
    old = helpers_api.generate
    helpers_api.generate = lambda alg: key(f"{world}/{next(n)}", alg)
    try:
        yield
    finally:
        helpers_api.generate = old


def make_world(name: str, *, recall_map: bool = True) -> ApiWorld:
    """The seasoned chain of tests/helpers_api.py with deterministic keys."""
    with deterministic_keys(name):
        w = ApiWorld(MemoryKV(), recall_map=recall_map)
        w.season()
    return w


@functools.cache
def seasoned() -> ApiWorld:
    return make_world("seasoned")


def leaves(w: ApiWorld) -> list[bytes]:
    return [leaf for _i, leaf in w.store.leaves(0, w.store.log_size)]


@functools.cache
def extra_events() -> list[bytes]:
    w = seasoned()
    t = w.now
    out: list[dict[str, Any]] = []

    def ev(kind: str, actor: str, body: dict[str, Any], signer: Any = None) -> None:
        nonlocal t
        t += 1
        out.append(E.sign(E.envelope(CHAIN, kind, actor, t, body), signer or w.keys[actor]))

    ev("recall", OFFICE, {"targets": [{"type": "label", "id": LABEL}, {"type": "lamb", "id": TAG_A},
                                      {"type": "carcass", "id": "c-1"}], "reason": "fuzz"})
    ev("actor.revoke", OFFICE, {"id": COOP, "reason": "fuzz"})
    ev("device.retire", BANNER_OFFICE, {"device": "term-1", "reason": "lost"})
    ev("key.rotate", OFFICE, {"id": AGENT, "revoke": [key_id("ed25519", w.keys[AGENT].public_key)]})
    k = key("extra/0", "ecdsa-p256")
    ev("key.rotate", OFFICE, {"id": COOP, "add": [{"alg": k.alg, "pub": k.public_key, "storage": "hsm",
                                                   "not_after": t + 10**9}]})
    ev("tags.issue", OFFICE, {"to": BANNER_OFFICE, "first": "315252300001000", "count": 100, "year": 2026})
    ev("lamb.tag", COOP, {"tag": "315252300000003", "herder": "h-2", "born": "2026-02-28", "breed": "b",
                          "sex": "female", "sumu": "s", "chip": "156000000000009"})
    ev("custody.ship", AGENT, {"shipment": "shp-2", "to": COOP, "lambs": [TAG_B]})
    ev("custody.receive", COOP, {"shipment": "shp-2"})
    ev("lamb.slaughter", PLANT, {"tag": TAG_B, "carcass": "c-2", "carcass_mass_g": 200_000,
                                 "quarantine_cert": "q", "price_fen_per_kg": 0, "market_price_fen_per_kg": 10_000_000,
                                 "date": "2026-12-31"})
    ev("label.issue", PLANT, {"carcass": "c-1", "labels": [
        {"label": "l-0009", "cut": "x", "net_mass_g": 1, "packed": "2026-10-03", "check": bytes(32)}]},
       signer=w.keys[PLANT])
    d = key("extra/1")
    ev("device.register", OFFICE, {"device": "term-2", "owner": PLANT,
                                   "key": {"alg": d.alg, "pub": d.public_key, "storage": "hsm"}})
    ev("actor.enroll", OFFICE, {"id": "plant-2", "role": "plant", "banner": "152531", "name": "p",
                                "keys": [{"alg": k.alg, "pub": k.public_key, "storage": "hsm"}]})
    return [codec.encode(x) for x in out]


@functools.cache
def key_of_actor() -> dict[str, list[str]]:
    """Each enrolled actor's key ids in the seasoned world (for re-signing mutants)."""
    w = seasoned()
    out: dict[str, list[str]] = {}
    for leaf in leaves(w):
        ev = E.parse_leaf(leaf)
        b = ev.body
        if ev.kind == "actor.enroll":
            out.setdefault(b["id"], []).extend(key_id(k["alg"], k["pub"]) for k in b["keys"])
        elif ev.kind == "key.rotate":
            out.setdefault(b["id"], []).extend(key_id(k["alg"], k["pub"]) for k in b.get("add", []))
        elif ev.kind == "device.register":
            out.setdefault(b["owner"], []).append(key_id(b["key"]["alg"], b["key"]["pub"]))
    for k in w.genesis.trace_office["keys"]:
        out.setdefault(OFFICE, []).append(key_id(k["alg"], k["pub"]))
    return out


@functools.cache
def dictionary() -> list[Any]:
    """Values of the seasoned world worth splicing into mutants."""
    w = seasoned()
    words: list[Any] = [OFFICE, COOP, AGENT, PLANT, BANNER_OFFICE, "term-1", "term-2", "shp-1", "shp-2", "c-1", "c-2",
                        LABEL, "l-0002", TAG_A, TAG_B, "315252300000003", "315252300000010", "315252399999999",
                        "156000000000001", CHAIN, "league", "2026-02-29", "2026-10-01", "2025-02-29", "152523",
                        "152500", "152502", "152531", "hsm", "software", "ed25519", "ecdsa-p256", "male",
                        "lamb", "carcass", "label", *E.KINDS, *E.ROLES, w.genesis.time, w.now, w.now + 10**9]
    for kids in key_of_actor().values():
        words.extend(kids)
    for k in w.keys.values():
        words.append(k.public_key)
    return words


def leaf_of(ev: Any) -> bytes:
    """An event value as a leaf: canonical where it can be, else as msgpack packs it (a
    mutant may hold what the codec refuses, and the leaf must still reach the target)."""
    if type(ev) is bytes:
        return ev
    try:
        return codec.encode(ev)
    except DecodeError:
        packed: bytes = msgpack.packb(ev, use_bin_type=True)
        return packed
