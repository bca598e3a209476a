"""A validator's mempool after a peer's block that holds its events in another order.

Events reach each mempool in the order they were relayed, so a proposer's block often
holds the front of a validator's mempool reordered.  When the block leaves the state as
the mempool's own order would have (same events, same writes), the check state and the
write sets kept for the remaining events stay valid: only the events of that front the
block left out run again; otherwise the node rebuilds everything.  ``paranoid`` makes the node recheck anyway and fail
loudly on any difference."""

from __future__ import annotations

from typing import Any

from helpers import World
from ledger import codec
from ledger.blocks.builder import build_block
from ledger.blocks.certificate import sign_commit
from ledger.events import parse_leaf
from node.node import Node

TAGS = [f"3152523000000{i:02d}" for i in range(1, 9)]


def _setup() -> tuple[World, Node, list[bytes]]:
    w = World()
    node = w.new_node()
    node.paranoid = True
    node.submit([w.enroll("coop", "cooperative", "152523"), w.issue("coop", TAGS[0], 100)])
    assert node.produce_block() is not None
    leaves = [codec.encode(w.tag("coop", t)) for t in TAGS]
    results = node.submit_leaves(leaves, local=True)
    assert [r["status"] for r in results] == ["accepted"] * len(TAGS)
    return w, node, leaves


def _peer_block(w: World, node: Node, leaves: list[bytes]) -> Any:
    """What another validator proposes: these events, in this order."""
    store = node.store
    return build_block(store, store.frontier, w.genesis, height=store.height + 1, prev=store.last_hash,
                       time_ms=w.now + 1000, proposer="league", candidates=[parse_leaf(x) for x in leaves],
                       max_events=len(leaves), max_bytes=10**7, verify=lambda *a: True)


def _commit(w: World, node: Node, leaves: list[bytes]) -> None:
    proposed = _peer_block(w, node, leaves)
    built = node.execute_block(proposed.header, leaves)
    assert built is not None and built.header == proposed.header
    node.commit_built(built, sign_commit(w.genesis.chain, built.header.height, 0, built.header.hash,
                                         [("league", w.validator)]))


def test_reordered_front_keeps_the_rest_without_executing_it_again() -> None:
    w, node, leaves = _setup()
    before = node.metrics.reexecuted
    _commit(w, node, [leaves[1], leaves[0], leaves[3], leaves[2]])  # the first four, reordered
    # the block itself ran (4), the four events left did not run again (paranoid checked them)
    assert node.metrics.reexecuted - before == 4
    assert node.mempool_size == 4
    # and the next block, built from the kept write sets, is what executing gives
    header = node.produce_block()
    assert header is not None and header.log_size == node.store.log_size and node.mempool_size == 0
    assert node.store.state_get("z/coop/coop") == {"tagged": len(TAGS)}


def test_a_block_leaving_out_part_of_the_front_reruns_only_that_part() -> None:
    w, node, leaves = _setup()
    before = node.metrics.reexecuted
    _commit(w, node, [leaves[4], leaves[0]])  # the fifth and the first: the front is five long
    assert node.metrics.reexecuted - before == 2 + 3  # the block, then the three it left out
    assert node.mempool_size == 6
    header = node.produce_block()
    assert header is not None and node.mempool_size == 0
    assert node.store.state_get("z/coop/coop") == {"tagged": len(TAGS)}


def test_a_block_with_an_event_this_mempool_lacks_makes_the_node_recheck() -> None:
    w, node, leaves = _setup()
    stranger = codec.encode(w.tag("coop", "315252300000050"))  # relayed to others, not here yet
    before = node.metrics.reexecuted
    _commit(w, node, [stranger, leaves[0]])
    assert node.metrics.reexecuted - before == 2 + 7  # the block, then everything left
    header = node.produce_block()
    assert header is not None and node.mempool_size == 0
    assert node.store.state_get("z/coop/coop") == {"tagged": len(TAGS) + 1}


def test_the_front_in_its_own_order_needs_nothing_again() -> None:
    w, node, leaves = _setup()
    node.paranoid = False  # (paranoid executes every block again, by design)
    before = node.metrics.reexecuted
    _commit(w, node, leaves[:3])
    assert node.metrics.reexecuted == before  # the fast path: the mempool's own write sets
    assert node.mempool_size == 5


def test_a_reordering_that_changes_the_state_makes_the_node_recheck() -> None:
    """Two key rotations of one actor append to its key list: their order shows."""
    from helpers import OFFICE
    from signer import generate, public_key_record

    w, node, leaves = _setup()
    rot = [codec.encode(w.ev("key.rotate", OFFICE, {"id": "coop", "add": [public_key_record(generate("ed25519"))]}))
           for _ in range(2)]
    assert [r["status"] for r in node.submit_leaves(rot, local=True)] == ["accepted"] * 2
    _commit(w, node, leaves)  # the tags first, as admitted
    before = node.metrics.reexecuted
    _commit(w, node, [rot[1], rot[0]])
    assert node.metrics.reexecuted - before == 2  # the block; nothing was left to recheck
    coop = node.store.state_get("a/coop")
    assert coop is not None
    keys = coop["keys"]
    assert len(keys) == 3
    # and with something behind them in the mempool, the node rebuilds it
    w2, node2, leaves2 = _setup()
    rot2 = [codec.encode(w2.ev("key.rotate", OFFICE, {"id": "coop", "add": [public_key_record(generate("ed25519"))]}))
            for _ in range(2)]
    node2.submit_leaves(rot2, local=True)
    _commit(w2, node2, leaves2)
    tail = codec.encode(w2.tag("coop", "315252300000060"))
    node2.submit_leaves([tail], local=True)
    before = node2.metrics.reexecuted
    _commit(w2, node2, [rot2[1], rot2[0]])
    assert node2.metrics.reexecuted - before == 2 + 1  # the block, then the tag behind it
    assert node2.produce_block() is not None and node2.mempool_size == 0
