"""Building a block: execute candidate events, extend the log, make the header.

Pure: it reads committed state through a :class:`~ledger.state.StateBackend` and
returns everything the store must write; it changes nothing.  The single-validator
node and (later) the consensus proposer and block sync all use it, so a block is
valid exactly when re-building it from its events gives the same header.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import merkle, recallmap
from ..errors import Rejected
from ..events import SignedEvent
from ..genesis import Genesis
from ..rules import Applied, Context, Verifier, apply_event
from ..sigs import verify_signature
from ..state import StateBackend, StateView
from .header import Header


@dataclass
class BuiltBlock:
    header: Header
    events: list[SignedEvent]
    applied: list[Applied]
    rejected: list[tuple[SignedEvent, Rejected]]
    view: StateView
    new_nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    frontier: merkle.CompactRange | None = None


def build_block(
    backend: StateBackend,
    frontier: merkle.CompactRange,
    genesis: Genesis,
    *,
    height: int,
    prev: bytes,
    time_ms: int,
    proposer: str,
    candidates: Iterable[SignedEvent],
    max_events: int,
    max_bytes: int,
    verify: Verifier = verify_signature,
) -> BuiltBlock:
    """Execute ``candidates`` in order on top of ``backend``; keep the valid ones.

    Events the rules refuse are returned in ``rejected`` and left out.  At most
    ``max_events`` events and ``max_bytes`` leaf bytes go into the block.
    """
    view = StateView(backend)
    ctx = Context(genesis=genesis, block_time=time_ms, verify=verify)
    cr = merkle.CompactRange(frontier.size, list(frontier.hashes))
    events: list[SignedEvent] = []
    applied: list[Applied] = []
    rejected: list[tuple[SignedEvent, Rejected]] = []
    new_nodes: list[tuple[int, int, bytes]] = []
    size = 0
    for ev in candidates:
        if len(events) >= max_events or size + len(ev.leaf) > max_bytes:
            break
        try:
            applied.append(apply_event(view, ev, ctx))
        except Rejected as exc:
            rejected.append((ev, exc.untraced()))
            continue
        events.append(ev)
        size += len(ev.leaf)
        new_nodes.extend(cr.append(merkle.leaf_hash(ev.leaf)))
    header = _header(genesis, height, time_ms, prev, cr, proposer, recallmap.finish_block(view, genesis))
    return BuiltBlock(header, events, applied, rejected, view, new_nodes, cr)


def _header(genesis: Genesis, height: int, time_ms: int, prev: bytes, cr: merkle.CompactRange, proposer: str,
            state_root: bytes | None) -> Header:
    return Header(
        chain=genesis.chain,
        height=height,
        time=time_ms,
        prev=prev,
        log_size=cr.size,
        log_root=cr.root(),
        validators=genesis.validators_hash,
        proposer=proposer,
        state_root=state_root,
    )


def assemble_block(
    backend: StateBackend,
    frontier: merkle.CompactRange,
    genesis: Genesis,
    *,
    height: int,
    prev: bytes,
    time_ms: int,
    proposer: str,
    executed: Iterable[tuple[SignedEvent, dict[str, Any], Applied]],
) -> BuiltBlock:
    """A block from events already executed in this order on top of ``backend``.

    ``executed`` holds each event with its write set and index data as
    :func:`ledger.rules.try_event` produced them, each against ``backend`` plus the
    events before it.  The result equals :func:`build_block` on the same events (the
    rules are deterministic), without running the rules again.  The caller guarantees
    the precondition and that every event passes :func:`ledger.rules.time_ok` at
    ``time_ms``.
    """
    view = StateView(backend)
    cr = merkle.CompactRange(frontier.size, list(frontier.hashes))
    events: list[SignedEvent] = []
    applied: list[Applied] = []
    new_nodes: list[tuple[int, int, bytes]] = []
    for ev, writes, app in executed:
        for k, v in writes.items():
            view.put(k, v)
        view.add_event(ev.id)
        events.append(ev)
        applied.append(app)
        new_nodes.extend(cr.append(merkle.leaf_hash(ev.leaf)))
    header = _header(genesis, height, time_ms, prev, cr, proposer, recallmap.finish_block(view, genesis))
    return BuiltBlock(header, events, applied, [], view, new_nodes, cr)
