"""What the fuzz harnesses under tests/fuzz found, and a bounded sample run of each.

Found by ``tests/fuzz/fuzz_transport.py`` (its mutator's first sample run): a proposal or
vote whose signature checks out (a faulty validator's, or one relayed from it) but whose
``round`` or ``valid_round`` is not an integer (bytes, text, ``true``), or which lacks a
field a replay reads (``value``), passed the replica's checks, was appended to the WAL,
and only then failed in the state machine (``TypeError``/``KeyError``, dropped as
``malformed``).  The WAL kept it: a restart at that height replayed it outside any
handler and the consensus thread died, at every restart, on every node that had logged
it.  A ``true`` round was taken for round 1 (``True == 1``), counting a signature over
other bytes.  The replica now checks the shape of these fields before the signature and
the WAL.  And :class:`node.consensus.FileWAL` read its records back under tighter limits
than the transport decodes frames under (see the WAL test below).

The sample runs replay each harness's seeds and a fixed-seed sample of its mutants
(pure Python, no atheris, a few seconds in all): CI exercises the harnesses and every
input they make must be handled as the harness requires.
"""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))

import _harness
import _net

from ledger import codec
from ledger.consensus.replica import MAX_ROUND, Replica

SEEDS = Path(__file__).parent / "fuzz" / "seeds"


# -- the replica: signed consensus messages of the wrong shape ------------------------------


def _vote(**fields: Any) -> dict[str, Any]:
    msg = {"t": "vote", "type": "prevote", "chain": _net.CHAIN, "height": 1, "round": 0, "value": None, "from": "v1",
           "sig": b""}
    msg.update(fields)
    return msg


def _proposal(**fields: Any) -> dict[str, Any]:
    value, payload = _net.block_one()
    msg = {"t": "proposal", "chain": _net.CHAIN, "height": 1, "round": 0, "value": value, "valid_round": -1,
           "block": payload, "from": _net.proposer_of(1, 0), "sig": b""}
    msg.update(fields)
    return msg


def _without(msg: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k != field}


SHAPES = {
    "vote round bytes": _vote(round=b""),
    "vote round text": _vote(round="0"),
    "vote round true": _vote(round=True),
    "vote round too large": _vote(round=MAX_ROUND),
    "vote without value": _without(_vote(), "value"),
    "proposal valid_round text": _proposal(valid_round="x"),
    "proposal valid_round bytes": _proposal(valid_round=b"\x00"),
    "proposal round text": _proposal(round="0"),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_a_signed_message_of_the_wrong_shape_is_dropped_before_the_wal(name: str) -> None:
    msg = _net.sign_message(SHAPES[name])  # the validator it names really signed it
    assert msg["sig"], "the message must carry a valid signature for the test to mean anything"
    r = _net.replicated()
    r.replica.start(_net.NOW)
    r.replica.on_message("v1", msg, _net.NOW + 10)
    assert r.replica.stats.dropped == {"malformed": 1}
    assert r.wal.records(1) == []
    r.restart().start(_net.NOW + 20)  # raised TypeError/KeyError while replaying the WAL


def test_well_shaped_signed_messages_still_decide_a_block() -> None:
    import fuzz_transport

    r = _net.replicated()
    r.replica.start(_net.NOW)
    for i, msg in enumerate(fuzz_transport.height_one()):
        r.replica.on_message(str(msg["from"]), msg, _net.NOW + 10 * (i + 1))
    assert r.replica.stats.dropped == {} and r.node.store.height == 1
    r.restart().start(_net.NOW + 1000)


# -- the WAL: what the replica logged must read back ------------------------------------------


def _junk_block_proposal(depth: int) -> dict[str, Any]:
    """The genuine signed proposal of height 1, relayed with its block replaced by a list
    nested ``depth`` deep: the signature covers the block's hash, not the block."""
    junk: Any = b"x"
    for _ in range(depth):
        junk = [junk]
    value, payload = _net.block_one()
    return _net.sign_message({"t": "proposal", "chain": _net.CHAIN, "height": 1, "round": 0, "value": value,
                              "valid_round": -1, "block": {"header": payload["header"], "events": junk},
                              "from": _net.proposer_of(1, 0), "sig": b""})


def test_a_relayed_deeply_nested_block_is_dropped_unlogged_and_the_file_wal_reads_deep_records(
        tmp_path: Path) -> None:
    # Seen while writing fuzz_transport.py's WAL check (its WAL reads records back as
    # FileWAL does), then confirmed with this input: frames are decoded with
    # FRAME_DEPTH_ALLOWANCE more nesting than the default limits, the replica logged a
    # proposal before it executed its block, and FileWAL read records back under the
    # default limits: at the first record nested deeper than that it stopped, so a restart
    # lost that record and every later one of the height (own votes, timeouts).  Now a
    # proposal whose block is not the one its signature is for is dropped before the WAL,
    # and FileWAL reads back anything the transport takes.
    from ledger.codec import decode
    from ledger.limits import DEFAULT_LIMITS
    from node.consensus import FileWAL, NodeApp
    from node.transport import FRAME_DEPTH_ALLOWANCE

    limits = dataclasses.replace(DEFAULT_LIMITS, max_depth=DEFAULT_LIMITS.max_depth + FRAME_DEPTH_ALLOWANCE)
    msg = _junk_block_proposal(9)
    assert decode(codec.encode(msg), limits) == msg  # a frame the transport takes
    node = _net.new_node()
    wal = FileWAL(tmp_path / "wal")
    replica = Replica(name=_net.ME, genesis=_net.genesis(), app=NodeApp(node), wal=wal, signer=_net.signer(_net.ME))
    replica.start(_net.NOW)
    replica.on_message("obs", msg, _net.NOW + 10)  # any authenticated peer may relay it
    assert replica.stats.dropped == {"bad_block": 1}
    vote = _net.sign_message({"t": "vote", "type": "prevote", "chain": _net.CHAIN, "height": 1, "round": 0,
                              "value": None, "from": "v2", "sig": b""})
    replica.on_message("v2", vote, _net.NOW + 20)
    assert [r["t"] for r in wal.records(1)] == ["vote"]
    deep: Any = b"x"
    for _ in range(DEFAULT_LIMITS.max_depth + FRAME_DEPTH_ALLOWANCE - 1):
        deep = [deep]
    wal.append(1, {"t": "note", "deep": deep})
    wal.append(1, {"t": "timeout", "step": "propose", "height": 1, "round": 0})
    wal.close()
    again = FileWAL(tmp_path / "wal")
    assert [r["t"] for r in again.records(1)] == ["vote", "note", "timeout"]
    again.close()


def _height_one_proposal() -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """``(value, genuine, swapped)``: height 1's signed proposal, and the same signed
    proposal relayed with other events under the genuine header (the signature covers the
    header's hash, not the events)."""
    value, payload = _net.block_one()
    genuine = _net.sign_message({"t": "proposal", "chain": _net.CHAIN, "height": 1, "round": 0, "value": value,
                                 "valid_round": -1, "block": payload, "from": _net.proposer_of(1, 0), "sig": b""})
    swapped = {**genuine, "block": {"header": payload["header"], "events": payload["events"][:-1]}}
    return value, genuine, swapped


def test_a_relayed_copy_with_other_events_cannot_hide_the_genuine_proposal(tmp_path: Path) -> None:
    """A peer relaying the proposal first with other events got it taken as invalid, and
    the genuine copy, which the proposer re-sends every gossip tick, was then ignored as
    already seen: any authenticated peer could cost the proposer its round.  A copy whose
    events do not make its header's log root is not the proposer's block: it is dropped
    before anything is parsed or verified, never stepped nor logged, its relay is blamed
    (and muted at this height after a few), and the genuine copy is taken, also after a
    restart from the WAL."""
    from ledger.consensus.replica import MAX_BAD_SIGNATURES_PER_PEER
    from node.consensus import FileWAL, NodeApp

    value, genuine, swapped = _height_one_proposal()
    node = _net.new_node()
    wal = FileWAL(tmp_path / "wal")
    replica = Replica(name=_net.ME, genesis=_net.genesis(), app=NodeApp(node), wal=wal, signer=_net.signer(_net.ME))
    replica.start(_net.NOW)
    for i in range(MAX_BAD_SIGNATURES_PER_PEER + 2):
        replica.on_message("obs", swapped, _net.NOW + 10 + i)
    assert replica.machine.rounds[0].proposal is None
    assert replica.stats.dropped == {"bad_block": MAX_BAD_SIGNATURES_PER_PEER, "peer_muted": 2}
    assert node.metrics.reexecuted == 0  # their events were hashed, not parsed
    replica.on_message(genuine["from"], genuine, _net.NOW + 100)
    taken = replica.machine.rounds[0].proposal
    assert taken is not None and taken.value == value and taken.valid
    assert replica.machine.equivocations_seen == 0
    replica.on_message("v2", swapped, _net.NOW + 110)  # the genuine copy is seen now: nothing changes
    assert replica.machine.rounds[0].proposal is taken
    assert [r["block"] for r in wal.records(1) if r["t"] == "proposal"] == [genuine["block"]]
    wal.close()
    again = FileWAL(tmp_path / "wal")
    restarted = Replica(name=_net.ME, genesis=_net.genesis(), app=NodeApp(_net.new_node()), wal=again,
                        signer=_net.signer(_net.ME))
    restarted.start(_net.NOW + 200)
    replayed = restarted.machine.rounds[0].proposal
    assert replayed is not None and replayed.value == value and replayed.valid
    again.close()


def test_an_early_copy_with_other_events_cannot_hide_the_next_heights_proposal() -> None:
    """A proposal for the next height that arrives while this one is being committed is
    kept until it starts.  It was kept first come, one per round: a peer relaying it first
    with other events had the proposer's own copy dropped, and the node prevoted nil until
    the proposer re-sent it.  Each peer's copy is kept now, and the changed one is dropped
    when the height starts."""
    from ledger.blocks.certificate import sign_commit
    from ledger.consensus.replica import MemoryWAL, Send
    from node.consensus import NodeApp

    value1, block1 = _net.block_one()
    cert1 = sign_commit(_net.CHAIN, 1, 0, value1, [(n, _net.signer(n)) for n in ("v1", "v2", "v3")])
    proposer = _net.proposer_of(2, 0)
    assert proposer != _net.ME
    maker = NodeApp(_net.new_node(proposer))
    maker.commit(1, block1, cert1)
    assert all(r["status"] == "accepted" for r in maker.node.submit_leaves(list(_net.season_leaves())))
    value2, block2 = maker.propose(2, _net.NOW)
    genuine = _net.sign_message({"t": "proposal", "chain": _net.CHAIN, "height": 2, "round": 0, "value": value2,
                                 "valid_round": -1, "block": block2, "from": proposer, "sig": b""})
    swapped = {**genuine, "block": {"header": block2["header"], "events": block2["events"][:-1]}}
    replica = Replica(name=_net.ME, genesis=_net.genesis(), app=NodeApp(_net.new_node()), wal=MemoryWAL(),
                      signer=_net.signer(_net.ME))
    replica.start(_net.NOW)
    replica.on_message("obs", swapped, _net.NOW + 10)  # still at height 1
    replica.on_message(proposer, genuine, _net.NOW + 20)
    out = replica.on_message("v1", {"t": "commit", "chain": _net.CHAIN, "height": 1, "block": block1,
                                    "cert": cert1.to_dict()}, _net.NOW + 30)
    taken = replica.machine.rounds[0].proposal
    assert replica.machine.height == 2 and taken is not None and taken.value == value2 and taken.valid
    prevotes = [o.msg["value"] for o in out if isinstance(o, Send) and o.msg.get("t") == "vote"
                and o.msg["type"] == "prevote" and o.msg["height"] == 2]
    assert prevotes == [value2]
    assert replica.stats.dropped.get("bad_block") == 1 and replica.machine.equivocations_seen == 0


def test_a_synced_block_with_other_events_costs_hashing_and_blames_its_sender() -> None:
    """Block sync: a genuine certificate with other events under the certified header
    cost a full execution each time, and nobody was blamed.  Now it costs hashing the
    events; the sender is blamed, then not heard at this height; the genuine block from
    another peer is applied."""
    from ledger.blocks.certificate import sign_commit
    from ledger.consensus.replica import MAX_BAD_SIGNATURES_PER_PEER, MemoryWAL
    from node.consensus import NodeApp

    value1, block1 = _net.block_one()
    cert1 = sign_commit(_net.CHAIN, 1, 0, value1, [(n, _net.signer(n)) for n in ("v1", "v2", "v3")]).to_dict()
    changed = {"header": block1["header"], "events": block1["events"][:-1]}
    node = _net.new_node()
    replica = Replica(name=_net.ME, genesis=_net.genesis(), app=NodeApp(node), wal=MemoryWAL(),
                      signer=_net.signer(_net.ME))
    replica.start(_net.NOW)
    for i in range(MAX_BAD_SIGNATURES_PER_PEER + 2):
        replica.on_message("obs", {"t": "commit", "chain": _net.CHAIN, "height": 1, "block": changed,
                                   "cert": cert1}, _net.NOW + 10 + i)
    assert replica.stats.dropped == {"bad_sync_block": MAX_BAD_SIGNATURES_PER_PEER, "peer_muted": 2}
    assert node.metrics.reexecuted == 0 and node.store.height == 0
    replica.on_message("v2", {"t": "commit", "chain": _net.CHAIN, "height": 1, "block": block1, "cert": cert1},
                       _net.NOW + 100)
    assert node.store.height == 1 and replica.stats.synced == 1


def test_too_many_invalid_copies_of_a_proposal_are_not_executed() -> None:
    """An honest proposer's block may be invalid here for a while (its clock ahead of
    ours) and it re-sends it every gossip tick: each copy is stepped and costs an
    execution, a few from each peer at a height, then no more from that peer; another
    peer's copy is still taken."""
    from ledger.consensus.replica import MAX_INVALID_COPIES, MemoryWAL
    from node.consensus import MAX_CLOCK_DRIFT_MS, NodeApp

    _value, genuine, _swapped = _height_one_proposal()
    node = _net.new_node()
    ours = node.clock
    node.clock = lambda: ours() - MAX_CLOCK_DRIFT_MS - 1_000  # behind the proposer's
    app = NodeApp(node)
    executed = 0
    validate = app.validate

    def counting(*args: Any) -> tuple[bytes | None, bool]:
        nonlocal executed
        executed += 1
        return validate(*args)

    app.validate = counting  # type: ignore[method-assign,assignment]
    wal = MemoryWAL()
    replica = Replica(name=_net.ME, genesis=_net.genesis(), app=app, wal=wal, signer=_net.signer(_net.ME))
    replica.start(_net.NOW)
    for i in range(MAX_INVALID_COPIES * 3):
        replica.on_message(genuine["from"], genuine, _net.NOW + 10 + i)
    assert executed == MAX_INVALID_COPIES
    assert len([r for r in wal.records(1) if r["t"] == "proposal"]) == MAX_INVALID_COPIES
    first = replica.machine.rounds[0].proposal
    assert first is not None and not first.valid
    node.clock = ours  # caught up: a copy relayed by another peer is taken
    replica.on_message("v2", genuine, _net.NOW + 100)
    assert executed == MAX_INVALID_COPIES + 1
    taken = replica.machine.rounds[0].proposal
    assert taken is not None and taken.valid


def test_fields_a_relaying_peer_added_are_neither_logged_nor_gossiped(tmp_path: Path) -> None:
    from ledger.consensus.replica import Send
    from node.consensus import FileWAL, NodeApp

    vote = _net.sign_message({"t": "vote", "type": "prevote", "chain": _net.CHAIN, "height": 1, "round": 0,
                              "value": None, "from": "v2", "sig": b""})
    padded = {**vote, "junk": b"x" * 100_000}
    wal = FileWAL(tmp_path / "wal")
    replica = Replica(name=_net.ME, genesis=_net.genesis(), app=NodeApp(_net.new_node()), wal=wal,
                      signer=_net.signer(_net.ME))
    replica.start(_net.NOW)
    replica.on_message("obs", padded, _net.NOW + 10)
    assert wal.records(1) == [vote]
    gossiped = [o.msg for o in replica.tick(_net.NOW + 100) if isinstance(o, Send) and o.msg.get("from") == "v2"]
    assert gossiped == [vote]
    wal.close()


# -- bounded sample runs of every harness ------------------------------------------------------

SAMPLES = {
    "fuzz_codec": 20_000,
    "fuzz_events": 10_000,
    "fuzz_verify_label": 3_000,
    "fuzz_verify_forged": 1_000,
    "fuzz_transport": 1_500,
    "fuzz_blocks": 1_000,
}
"""Mutants per harness: about a second each on a laptop core."""


@pytest.mark.parametrize("name", sorted(SAMPLES))

def test_harness_sample_run(name: str) -> None:
    module = __import__(name)
    seeds = list(module.seeds())
    saved = SEEDS / name.removeprefix("fuzz_")
    if saved.is_dir():
        seeds += [p.read_bytes() for p in sorted(saved.iterdir()) if p.is_file()]
    n = _harness.replay(module.test_one_input, seeds, module.MUTATOR, rounds=SAMPLES[name], seed=20240)
    assert n == len(seeds) + SAMPLES[name]


@pytest.mark.parametrize("name,rounds", [("fuzz_verify_label", 600), ("fuzz_verify_forged", 300)])
def test_both_verifiers_agree_on_a_sample_of_mutants(name: str, rounds: int, tmp_path: Path) -> None:
    """The harness's seeds and a fixed sample of its mutants, as a corpus, through
    ``diff_js.py``: verify_label and the page's verify.js give each the same code."""
    import shutil

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    import diff_js

    module = __import__(name)
    rng = random.Random(20261205)
    pool = list(module.seeds())
    corpus = list(pool)
    for _ in range(rounds):
        data = module.MUTATOR.mutate(rng.choice(pool), 1 << 20, rng.randrange(2**32), native=False)
        corpus.append(data)
        if rng.random() < 0.3:
            pool.append(data)
    for i, data in enumerate(corpus):
        (tmp_path / f"{i:05d}").write_bytes(data)
    assert diff_js.main([name.removeprefix("fuzz_verify_"), str(tmp_path), "--show", "40"]) == 0
