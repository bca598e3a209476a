"""A four-validator network for the transport, consensus and block-sync harnesses.

``league`` is the node under test (a validator with its own store, mempool and
:class:`~ledger.consensus.replica.Replica`); the harness holds the keys of ``v1``,
``v2`` and ``v3`` (and of the observer ``obs``), so it can speak for them: sign
handshakes, votes, proposals and commit certificates, as a faulty validator could.
Every key is deterministic, so a saved corpus stays valid in another process.
Import this module inside :func:`_harness.instrumented` (it imports the project).
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _worlds import key

from ledger import codec
from ledger import events as E
from ledger.blocks.certificate import CommitCertificate, sign_commit, vote_bytes
from ledger.blocks.header import Header
from ledger.consensus.replica import MemoryGuard, Replica, proposal_bytes
from ledger.errors import LedgerError, Rejected
from ledger.genesis import Genesis, Params, Validator
from ledger.limits import DEFAULT_LIMITS, Limits
from node.consensus import FileWAL, NodeApp
from node.kv import MemoryKV
from node.node import Node
from node.store import ChainStore
from signer.software import SoftwareSigner

CHAIN = "fuzz-net"
T0 = 1_790_000_000_000
ME = "league"
NAMES = (ME, "v1", "v2", "v3")
OFFICE = "xl-trace-office"
NOW = 5_000
"""The replica's (monotonic) clock at the first message."""


def signer(name: str) -> SoftwareSigner:
    return key(f"net/{name}")


@functools.cache
def genesis() -> Genesis:
    office = signer(OFFICE)
    return Genesis(
        chain=CHAIN,
        time=T0 - 60_000,
        validators=tuple(Validator(n, "152500", "ed25519", signer(n).public_key) for n in NAMES),
        trace_office={"id": OFFICE, "banner": "152500", "name": "office",
                      "keys": [{"alg": "ed25519", "pub": office.public_key, "storage": "software"}]},
        params=Params(state_root="recalls/v1"),
    )


def known_keys() -> dict[str, tuple[str, bytes]]:
    return {n: ("ed25519", signer(n).public_key) for n in (*NAMES, "obs")}


def new_node(name: str = ME) -> Node:
    g = genesis()
    return Node(ChainStore(MemoryKV(), g), g, name=name, signer=signer(name), limits=DEFAULT_LIMITS,
                clock=lambda: T0 + 1000, verify_threads=0)


@functools.cache
def file_wal_limits() -> Limits:
    """The limits :class:`node.consensus.FileWAL` reads its records back under."""
    with tempfile.TemporaryDirectory() as d:
        return getattr(FileWAL(Path(d)), "limits", DEFAULT_LIMITS)


class CodecWAL:
    """A WAL in memory that keeps records as :class:`node.consensus.FileWAL` does (canonical
    msgpack, read back with :func:`ledger.codec.decode` under its limits), so a record the
    file WAL could not read back shows here too (``unreadable``)."""

    def __init__(self) -> None:
        self.data: dict[int, list[bytes]] = {}
        self.unreadable: list[tuple[int, str]] = []
        self.limits = file_wal_limits()

    def append(self, height: int, record: dict[str, Any]) -> None:
        self.data.setdefault(height, []).append(codec.encode(record))

    def records(self, height: int) -> list[dict[str, Any]]:
        out = []
        for raw in self.data.get(height, []):
            try:
                out.append(codec.decode(raw, self.limits))
            except LedgerError as exc:
                self.unreadable.append((height, exc.code))
                break  # as FileWAL.records does
        return out

    def forget_below(self, height: int) -> None:
        for h in [h for h in self.data if h < height]:
            del self.data[h]


WATCH_UNTIL_MS = T0 + 3_600_000
"""``watch_until_ms`` of a replica started without its sign guard on an empty chain."""


@dataclass
class Replicated:
    node: Node
    app: NodeApp
    wal: CodecWAL
    guard: MemoryGuard
    replica: Replica
    watch: bool = False

    def restart(self) -> Replica:
        """The replica a restart makes from the same store, WAL and guard."""
        return Replica(name=ME, genesis=genesis(), app=NodeApp(self.node), wal=self.wal, signer=signer(ME),
                       guard=self.guard, watch_until_ms=WATCH_UNTIL_MS if self.watch else None)


def replicated(*, watch: bool = False) -> Replicated:
    """A fresh node under test (empty chain) with its replica; ``watch``: one that started
    without its sign guard and watches for signs of an earlier run (ADR 0014)."""
    node = new_node()
    app, wal, guard = NodeApp(node), CodecWAL(), MemoryGuard()
    replica = Replica(name=ME, genesis=genesis(), app=app, wal=wal, signer=signer(ME), guard=guard,
                      watch_until_ms=WATCH_UNTIL_MS if watch else None)
    return Replicated(node, app, wal, guard, replica, watch)


@functools.cache
def enrol_leaves() -> tuple[bytes, ...]:
    """Genuine events for height 1: the trace office enrols two actors."""
    office = signer(OFFICE)
    out = []
    for i, aid in enumerate(("coop-1", "plant-1")):
        k = actor_signer(aid)
        env = E.envelope(CHAIN, "actor.enroll", OFFICE, T0 + i, {
            "id": aid, "role": "cooperative" if i == 0 else "plant", "banner": "152523",
            "keys": [{"alg": "ed25519", "pub": k.public_key, "storage": "software"}]})
        out.append(codec.encode(E.sign(env, office)))
    return tuple(out)


def actor_signer(aid: str) -> SoftwareSigner:
    return signer(OFFICE) if aid == OFFICE else key(f"net/actor/{aid}")


@functools.cache
def season_leaves() -> tuple[bytes, ...]:
    """Genuine events that all fit in block 1 after :func:`enrol_leaves`: a herder agent,
    ear tags, tagging, custody, slaughter, a label and a recall."""
    out = []
    t = T0 + 10

    def ev(kind: str, actor: str, body: dict[str, Any]) -> None:
        nonlocal t
        t += 1
        out.append(codec.encode(E.sign(E.envelope(CHAIN, kind, actor, t, body), actor_signer(actor))))

    agent = actor_signer("agent-1")
    ev("actor.enroll", OFFICE, {"id": "agent-1", "role": "herder_agent", "banner": "152523", "parent": "coop-1",
                                "keys": [{"alg": "ed25519", "pub": agent.public_key, "storage": "software"}]})
    ev("tags.issue", OFFICE, {"to": "coop-1", "first": "315252300000001", "count": 10, "year": 2026})
    ev("lamb.tag", "agent-1", {"tag": "315252300000001", "herder": "h-1", "born": "2026-03-10", "breed": "b",
                               "sex": "male", "sumu": "s"})
    ev("custody.ship", "agent-1", {"shipment": "shp-1", "to": "plant-1", "lambs": ["315252300000001"]})
    ev("custody.receive", "plant-1", {"shipment": "shp-1"})
    ev("lamb.slaughter", "plant-1", {"tag": "315252300000001", "carcass": "c-1", "carcass_mass_g": 18_000,
                                     "quarantine_cert": "q", "price_fen_per_kg": 1, "market_price_fen_per_kg": 1,
                                     "date": "2026-10-01"})
    ev("label.issue", "plant-1", {"carcass": "c-1", "labels": [{"label": "l-1", "cut": "c", "net_mass_g": 100,
                                                                "packed": "2026-10-02", "check": bytes(32)}]})
    ev("recall", OFFICE, {"targets": [{"type": "label", "id": "l-1"}], "reason": "r"})
    return tuple(out)


@functools.cache
def block_one() -> tuple[bytes, dict[str, Any]]:
    """``(value, payload)`` of a genuine block at height 1 proposed by its round-0 proposer."""
    from ledger.consensus.machine import ValidatorSet

    vset = ValidatorSet(tuple((v.name, v.power) for v in genesis().validators))
    proposer = vset.proposer(1, 0)
    node = new_node(proposer)
    results = node.submit_leaves(list(enrol_leaves()))
    assert all(r["status"] == "accepted" for r in results), results
    value, payload = NodeApp(node).propose(1, NOW)
    return value, payload


def proposer_of(height: int, round_: int) -> str:
    from ledger.consensus.machine import ValidatorSet

    return ValidatorSet(tuple((v.name, v.power) for v in genesis().validators)).proposer(height, round_)


def sign_message(msg: dict[str, Any]) -> dict[str, Any]:
    """``msg`` (a proposal or vote) signed by the key of its ``from``, over the bytes the
    replica checks; unchanged when it names no key the harness holds or does not encode."""
    name = msg.get("from")
    if type(name) is not str or name not in NAMES:
        return msg
    try:
        if msg.get("t") == "proposal":
            data = proposal_bytes(CHAIN, msg["height"], msg["round"], msg["value"], msg["valid_round"])
        else:
            data = vote_bytes(msg["type"], CHAIN, msg["height"], msg["round"], msg.get("value"))
    except (KeyError, TypeError, ValueError, RuntimeError, LedgerError):
        return msg
    return {**msg, "sig": signer(name).sign(data)}


def certify(msg: dict[str, Any], names: tuple[str, ...] = ("v1", "v2", "v3")) -> dict[str, Any]:
    """A ``commit`` message with its certificate signed again by ``names`` over the block
    its payload's header names (unchanged when the header does not parse)."""
    block, cert = msg.get("block"), msg.get("cert")
    try:
        value = Header.from_dict(block["header"]).hash  # type: ignore[index]
        c = CommitCertificate.from_dict(cert)
    except (Rejected, KeyError, TypeError):
        return msg
    signed = sign_commit(CHAIN, c.height, c.round, value, [(n, signer(n)) for n in names])
    return {**msg, "cert": signed.to_dict()}
