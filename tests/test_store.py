"""Chain store and node: blocks, restart recovery, determinism, state hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import World
from ledger import merkle
from ledger.blocks.certificate import verify_commit
from ledger.blocks.header import Header
from ledger.errors import StorageError
from ledger.events import parse_unverified
from ledger.rules import Context, apply_event
from ledger.state import MemoryState, StateView
from node.kv import LevelKV, MemoryKV
from node.store import ChainStore
from test_rejections_http import A, base, slaughtered


def lifecycle(w: World) -> list[dict]:
    return [*base(w), *slaughtered(w), w.label("plant", "c-1", [("L1", 3000), ("L2", 2500)])]


def header_at(store: ChainStore, height: int) -> Header:
    """The committed header at ``height`` (which the test knows is there)."""
    hdr = store.header(height)
    assert hdr is not None
    return hdr


def last_header(store: ChainStore) -> Header:
    """The store's last header (the test has committed at least one block)."""
    assert store.last_header is not None
    return store.last_header


@pytest.mark.parametrize("kind", ["memory", "leveldb"])
def test_lifecycle_commits_and_links(tmp_path: Path, kind: str) -> None:
    w = World()
    kv = MemoryKV() if kind == "memory" else LevelKV(str(tmp_path / "db"))
    node = w.new_node(kv)
    evs = lifecycle(w)
    for i in range(0, len(evs), 4):
        assert all(r["status"] == "accepted" for r in node.submit(evs[i : i + 4]))
        node.produce_block()
    store = node.store
    assert store.log_size == len(evs)
    prev = w.genesis.hash
    for h in range(1, store.height + 1):
        hdr = store.header(h)
        assert hdr is not None and hdr.prev == prev
        cert = store.certificate(h)
        assert cert is not None
        verify_commit(cert, w.chain, h, hdr.hash, w.genesis.validators)
        prev = hdr.hash
    assert merkle.root_from_store(store.log_size, store.get_node) == last_header(store).log_root
    lamb = store.state_get(f"t/{A}")
    assert lamb is not None
    assert lamb["status"] == "slaughtered" and lamb["holder"] == "plant"
    label = store.state_get("l/L1")
    assert label is not None
    assert label["carcass"] == "c-1"
    assert len(store.tag_event_indexes(A)) == 5  # tag, ship, receive, slaughter, label


def test_restart_recovers_the_same_chain(tmp_path: Path) -> None:
    w = World()
    node = w.new_node(LevelKV(str(tmp_path / "db")))
    node.submit(lifecycle(w))
    node.produce_block()
    hashes = [header_at(node.store, h).hash for h in range(1, node.store.height + 1)]
    root, size, sh = last_header(node.store).log_root, node.store.log_size, node.store.state_hash()
    node.store.close()
    store = ChainStore(LevelKV(str(tmp_path / "db")), w.genesis)
    assert [header_at(store, h).hash for h in range(1, store.height + 1)] == hashes
    assert (last_header(store).log_root, store.log_size, store.state_hash()) == (root, size, sh)
    store.close()


def test_other_genesis_is_refused(tmp_path: Path) -> None:
    w = World()
    ChainStore(LevelKV(str(tmp_path / "db")), w.genesis).close()
    with pytest.raises(StorageError) as e:
        ChainStore(LevelKV(str(tmp_path / "db")), World().genesis)
    assert e.value.code == "genesis_mismatch"


def test_second_process_cannot_open_the_store(tmp_path: Path) -> None:
    w = World()
    store = ChainStore(LevelKV(str(tmp_path / "db")), w.genesis)
    with pytest.raises(StorageError) as e:
        LevelKV(str(tmp_path / "db"))
    assert e.value.code == "storage_unavailable"
    store.close()


def test_apply_is_deterministic_and_state_hash_agrees() -> None:
    """Replaying the committed log on a plain in-memory state gives the store's state hash."""
    w = World()
    node = w.new_node()
    node.submit(lifecycle(w))
    node.produce_block()
    store = node.store
    from ledger.state import genesis_writes, state_hash

    replay = MemoryState(genesis_writes(w.genesis))
    hdr = last_header(store)
    for i in range(store.log_size):
        view = StateView(replay)
        ev = parse_unverified(__import__("ledger.codec", fromlist=["decode"]).decode(store.leaf(i)))
        apply_event(view, ev, Context(w.genesis, hdr.time))
        replay.apply(view)
    assert state_hash(sorted(replay.items.items())) == store.state_hash()


def test_mempool_is_bounded_and_deduplicated() -> None:
    from ledger.limits import Limits
    from node.node import MempoolFull

    w = World()
    node = w.new_node()
    node.limits = Limits(max_mempool_events=11)
    evs = base(w)
    node.submit(evs)
    assert node.mempool_size == 10
    assert [r["status"] for r in node.submit(evs[:3])] == ["duplicate"] * 3
    with pytest.raises(MempoolFull):
        node.submit([w.tag("agent", "315252300000005"), w.tag("agent", "315252300000006")])
    assert node.mempool_size == 10


def test_blocks_respect_the_event_limit() -> None:
    from ledger.limits import Limits

    w = World()
    node = w.new_node()
    node.limits = Limits(max_events_per_block=4)
    node.submit(base(w))
    sizes = []
    while node.mempool_size:
        node.produce_block()
        sizes.append(last_header(node.store).log_size)
    assert sizes == [4, 8, 10]
