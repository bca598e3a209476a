"""``lambtrace audit``: replay a chain from genesis, over LevelDB (``--data``) and HTTP (``--url``).

An intact chain audits clean both ways (the replayed state hash equals the node's).
Then chains that are broken in the ways an auditor must catch, each at the right
place: a leaf or a header corrupted on disk (plyvel directly), a block whose certified
event carries a forged signature, a certified block whose event the rules refuse, a
state entry changed behind the log's back, and a rewritten history (blocks of another
chain from the same genesis and validator key copied over the store, or served over
HTTP to an auditor holding a witness's checkpoint).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plyvel
import pytest

from helpers import Served
from helpers_api import AGENT, CHAIN, COOP, OFFICE, PLANT, VALIDATOR, ApiWorld
from lambtrace.cli import main
from lambtrace.config import genesis_to_json
from ledger import codec
from ledger.blocks.builder import assemble_block, build_block
from ledger.blocks.certificate import sign_commit
from ledger.errors import LedgerError
from ledger.events import parse_unverified
from ledger.rules import Applied
from node.kv import LevelKV, MemoryKV
from node.node import Node
from node.store import ChainStore
from verify.audit import RawBlock, audit_chain


def u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def raw_blocks(store: ChainStore) -> Iterator[RawBlock]:
    """A store's blocks as the auditor takes them: raw header, certificate and leaves."""
    for h in range(1, store.height + 1):
        b, e = store.block_range(h)
        yield RawBlock(h, store.kv.get(b"H" + u64(h)), store.kv.get(b"C" + u64(h)),
                       [leaf for _i, leaf in store.leaves(b, e)])


class Chain:
    """An ApiWorld season in a LevelDB data directory, and ways to extend it by hand."""

    def __init__(self, tmp: Path, name: str = "data") -> None:
        self.dir = tmp / name
        self.dir.mkdir()
        self.w = ApiWorld(LevelKV(str(self.dir / "chain.ldb")))
        self.w.season()
        self.gpath = tmp / "genesis.json"
        self.gpath.write_text(genesis_to_json(self.w.genesis))

    @property
    def store(self) -> ChainStore:
        return self.w.store

    def block(self, events: list[dict[str, Any]], *, check_sigs: bool = True) -> int:
        """Commit ``events`` in one block (rules enforced; signatures only if ``check_sigs``)."""
        store, g = self.store, self.w.genesis
        self.w.now += 1000
        built = build_block(
            store, store.frontier, g, height=store.height + 1, prev=store.last_hash, time_ms=self.w.now,
            proposer=VALIDATOR, candidates=[parse_unverified(e) for e in events], max_events=100,
            max_bytes=1 << 20, **({} if check_sigs else {"verify": lambda *_a: True}),
        )
        assert not built.rejected, built.rejected
        cert = sign_commit(CHAIN, built.header.height, 0, built.header.hash, [(VALIDATOR, self.w.validator)])
        store.commit(built, cert)
        return built.header.height

    def close(self) -> None:
        self.w.node.stop()
        self.w.store.close()


def run_audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    rc = main(["audit", *args, "--quiet"])
    cap = capsys.readouterr()
    return rc, json.loads(cap.out), cap.err


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    c = Chain(tmp_path)
    yield c
    try:
        c.close()
    except Exception:
        pass


def test_intact_chain_over_leveldb_and_http(chain: Chain, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    served = Served(chain.w.node)
    try:
        rc, rep, err = run_audit(capsys, "--url", served.url, "--genesis", str(chain.gpath))
        other = tmp_path / "other.json"
        other.write_text(genesis_to_json(ApiWorld(MemoryKV()).genesis))
        rc_other, rep_other, _ = run_audit(capsys, "--url", served.url, "--genesis", str(other))
    finally:
        served.close()
    # a node of another chain is named as such before a block is read
    assert rc_other == 1 and rep_other["failure"]["code"] == "wrong_genesis" and rep_other["failure"]["height"] == 0
    assert rc == 0, rep
    assert rep["intact"] and rep["failure"] is None and rep["height"] == chain.store.height
    assert rep["state_hash"] == rep["node_state_hash"] == chain.store.state_hash().hex()
    assert "intact" in err
    # a running node holds the LevelDB lock: refused clearly, pointing to --url
    rc = main(["audit", "--data", str(chain.dir), "--genesis", str(chain.gpath), "--quiet"])
    assert rc == 2 and "--url" in capsys.readouterr().err
    state_hash, events = chain.store.state_hash().hex(), chain.store.log_size
    chain.close()
    out = tmp_path / "report.json"
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath), "--json", str(out))
    assert rc == 0, rep
    assert rep["state_hash"] == rep["node_state_hash"] == state_hash and rep["events"] == events
    assert json.loads(out.read_text())["intact"] is True
    # with worker processes as well (forced: the chain is small)
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath), "--workers", "2")
    assert rc == 0 and rep["intact"]


def test_pure_driver_with_and_without_an_executor(chain: Chain) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = chain.store
    for ex in (None, ThreadPoolExecutor(2)):
        rep = audit_chain(raw_blocks(store), chain.w.genesis, executor=ex, batch_sigs=3,
                          node_state_hash=lambda h: store.state_hash())
        assert rep.intact and rep.events == store.log_size, rep.failure


def test_trusted_checkpoints_the_chain_must_pass_through(chain: Chain) -> None:
    """``trusted`` (a witness's checkpoints): the audit fails at a height whose block is not
    the trusted one, and when the chain served ends before a trusted height (a node that
    lost or hides its newer blocks); the node's state hash, if it cannot be read, is a
    note, not a verdict."""
    store, g = chain.store, chain.w.genesis
    top = store.height
    mid = store.header(top // 2 + 1)
    assert mid is not None and top >= 2
    through = audit_chain(raw_blocks(store), g, trusted=[(mid.height, mid.hash), (top, store.last_hash)])
    assert through.intact, through.failure

    other = audit_chain(raw_blocks(store), g, trusted=[(mid.height, bytes(32))])
    assert other.failure is not None
    assert (other.failure["code"], other.failure["height"]) == ("checkpoint_mismatch", mid.height)

    short = audit_chain(raw_blocks(store), g, trusted=[(top + 3, bytes(32))])
    assert short.failure is not None
    assert (short.failure["code"], short.failure["height"]) == ("checkpoint_mismatch", top + 3)
    assert f"ends at {top}" in short.failure["message"]

    def unreadable(_height: int) -> bytes:
        raise LedgerError("the node's store is busy", code="storage_unavailable")

    noted = audit_chain(raw_blocks(store), g, node_state_hash=unreadable)
    assert noted.intact and any("storage_unavailable" in n for n in noted.notes), noted.notes
    unknown = audit_chain(raw_blocks(store), g, node_state_hash=lambda _h: None)
    assert unknown.intact and any("not available" in n for n in unknown.notes), unknown.notes
    wrong = audit_chain(raw_blocks(store), g, node_state_hash=lambda _h: bytes(32))
    assert wrong.failure is not None and (wrong.failure["code"], wrong.failure["height"]) == ("state_mismatch", top)


def corrupt(directory: Path, key: bytes, pos: int, mask: int = 0x01) -> None:
    db = plyvel.DB(str(directory / "chain.ldb"))
    try:
        v = bytearray(db.get(key))
        v[pos] ^= mask
        db.put(key, bytes(v), sync=True)
    finally:
        db.close()


def test_corrupted_leaf(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    begin, end = chain.store.block_range(6)
    chain.close()
    # a flipped bit inside a signature: still msgpack, but the log root no longer holds
    corrupt(chain.dir, b"L" + u64(begin + 1), -1)
    rc, rep, err = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath))
    assert rc == 1
    f = rep["failure"]
    assert (f["code"], f["height"], f["index"]) == ("log_mismatch", 6, begin + 1), f
    assert "height 6" in err and f"leaf {begin + 1}" in err


def test_leaf_that_is_no_longer_canonical(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    begin, _ = chain.store.block_range(4)
    chain.close()
    corrupt(chain.dir, b"L" + u64(begin), 0, 0xFF)
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath))
    assert rc == 1 and (rep["failure"]["code"], rep["failure"]["height"], rep["failure"]["index"]) == (
        "bad_event", 4, begin)


@pytest.mark.parametrize("pos", [-1, -40, 12])
def test_corrupted_header(chain: Chain, capsys: pytest.CaptureFixture[str], pos: int) -> None:
    chain.close()
    corrupt(chain.dir, b"H" + u64(3), pos)
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath))
    assert rc == 1
    assert rep["failure"]["height"] == 3, rep["failure"]
    assert rep["failure"]["code"] in ("bad_header", "chain_mismatch", "broken_link", "bad_certificate",
                                      "log_mismatch"), rep["failure"]


def test_forged_signature_in_a_certified_block(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    w = chain.w
    ev = w.lamb_tag(AGENT, "315252300000003")
    ev["sigs"][0]["sig"] = bytes([ev["sigs"][0]["sig"][0] ^ 1]) + ev["sigs"][0]["sig"][1:]
    index = chain.store.log_size
    h = chain.block([w.lamb_tag(AGENT, "315252300000004"), ev], check_sigs=False)
    chain.close()
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath))
    assert rc == 1
    assert (rep["failure"]["code"], rep["failure"]["height"], rep["failure"]["index"]) == (
        "bad_event_signature", h, index + 1)


def test_certified_block_breaking_a_rule(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    w, store = chain.w, chain.store
    bad = parse_unverified(w.lamb_tag(AGENT, "315252300000050"))  # outside the issued range
    w.now += 1000
    built = assemble_block(store, store.frontier, w.genesis, height=store.height + 1, prev=store.last_hash,
                           time_ms=w.now, proposer=VALIDATOR, executed=[(bad, {}, Applied())])
    store.commit(built, sign_commit(CHAIN, built.header.height, 0, built.header.hash, [(VALIDATOR, w.validator)]))
    chain.close()
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath))
    assert rc == 1
    f = rep["failure"]
    assert (f["code"], f["rule"], f["height"], f["index"]) == ("rule_violation", "tag_not_issued", 9, 13)


def test_state_changed_behind_the_logs_back(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    chain.close()
    db = plyvel.DB(str(chain.dir / "chain.ldb"))
    key = b"Sl/l-0001"
    rec = codec.decode(db.get(key))
    rec["net_mass_g"] = 4000
    db.put(key, codec.encode(rec))
    db.close()
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath))
    assert rc == 1 and rep["failure"]["code"] == "state_mismatch" and rep["failure"]["height"] == 8


def fork(tmp_path: Path, chain: Chain) -> tuple[ChainStore, Node]:
    """A second store that shares the chain's first 8 blocks, then goes its own way."""
    chain.w.node.stop()
    chain.store.close()
    shutil.copytree(chain.dir, tmp_path / "fork")
    chain.w.store = ChainStore(LevelKV(str(chain.dir / "chain.ldb")), chain.w.genesis)
    store_b = ChainStore(LevelKV(str(tmp_path / "fork" / "chain.ldb")), chain.w.genesis)
    node_b = Node(store_b, chain.w.genesis, name=VALIDATOR, signer=chain.w.validator,
                  clock=lambda: chain.w.now + 1000, verify_threads=0)
    return store_b, node_b


def extend(store: ChainStore, w: ApiWorld, events: list[dict[str, Any]]) -> None:
    w.now += 1000
    built = build_block(store, store.frontier, w.genesis, height=store.height + 1, prev=store.last_hash,
                        time_ms=w.now, proposer=VALIDATOR, candidates=[parse_unverified(e) for e in events],
                        max_events=100, max_bytes=1 << 20)
    assert not built.rejected
    store.commit(built, sign_commit(CHAIN, built.header.height, 0, built.header.hash, [(VALIDATOR, w.validator)]))


def test_rewritten_history_in_the_store(chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = chain.w
    store_b, _node_b = fork(tmp_path, chain)
    a_events = [[w.lamb_tag(AGENT, "315252300000003")], [w.lamb_tag(AGENT, "315252300000004")]]
    b_events = [[w.lamb_tag(COOP, "315252300000005")], [w.lamb_tag(COOP, "315252300000006")]]
    for ea, eb in zip(a_events, b_events):
        extend(w.store, w, ea)
        extend(store_b, w, eb)
    b_blocks = {k: v for prefix in (b"H", b"C", b"L") for k, v in store_b.kv.scan(prefix)}
    store_b.close()
    chain.close()
    # the other chain's blocks 9 and 10 (headers, certificates, leaves) copied over this store's
    db = plyvel.DB(str(chain.dir / "chain.ldb"))
    for k, v in b_blocks.items():
        first = 13 if k[:1] == b"L" else 9  # leaves from index 13, headers and certificates from height 9
        if int.from_bytes(k[1:], "big") >= first:
            db.put(k, v)
    db.close()
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath))
    assert rc == 1
    assert (rep["failure"]["code"], rep["failure"]["height"]) == ("store_mismatch", 9), rep["failure"]


def test_rewritten_history_over_http(chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = chain.w
    store_b, node_b = fork(tmp_path, chain)
    extend(w.store, w, [w.lamb_tag(AGENT, "315252300000003")])
    extend(store_b, w, [w.lamb_tag(COOP, "315252300000005")])
    node_a = Node(w.store, w.genesis, name=VALIDATOR, signer=w.validator, clock=lambda: w.now + 1000,
                  verify_threads=0)
    served_a, served_b = Served(node_a), Served(node_b)
    state = tmp_path / "witness.json"
    try:
        assert main(["witness", "--url", served_a.url, "--state", str(state), "--genesis", str(chain.gpath)]) == 0
        capsys.readouterr()
        # the other chain audits clean on its own (same genesis, valid certificates) ...
        rc, rep, _ = run_audit(capsys, "--url", served_b.url, "--genesis", str(chain.gpath))
        assert rc == 0, rep
        # ... but not through the checkpoint the witness trusted
        rc, rep, _ = run_audit(capsys, "--url", served_b.url, "--genesis", str(chain.gpath), "--trusted", str(state))
        assert rc == 1
        assert (rep["failure"]["code"], rep["failure"]["height"]) == ("checkpoint_mismatch", 9), rep["failure"]
        rc, rep, _ = run_audit(capsys, "--url", served_a.url, "--genesis", str(chain.gpath), "--trusted", str(state))
        assert rc == 0, rep
    finally:
        served_a.close()
        served_b.close()
        store_b.close()


def test_another_genesis_and_missing_data(chain: Chain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chain.close()
    other = tmp_path / "other.json"
    other.write_text(genesis_to_json(ApiWorld(MemoryKV()).genesis))
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(other))
    assert rc == 1 and rep["failure"]["code"] == "wrong_genesis"
    assert main(["audit", "--data", str(tmp_path / "nothing"), "--genesis", str(chain.gpath), "--quiet"]) == 2
    assert "no_data" in capsys.readouterr().err


def test_audit_an_office_key_rotation_and_recall(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    """Membership changes replay too (revocations, recalls, a terminal's key)."""
    w = chain.w
    chain.block([
        w.ev("recall", OFFICE, {"targets": [{"type": "label", "id": "l-0002"}], "reason": "复检"}),
        w.ev("key.rotate", OFFICE, {"id": PLANT, "revoke": [w.keys[PLANT].key_id]}),
        w.ev("actor.revoke", OFFICE, {"id": COOP, "reason": "合并"}),
    ])
    chain.close()
    rc, rep, err = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath))
    assert rc == 0, rep
    assert rep["events"] == 16 and rep["height"] == 9
    assert rep["recalled_labels"] == 1 and "1 recalled label(s), the recall map checked at every block" in err


def test_a_certified_state_root_that_leaves_a_recall_out(chain: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    """Validators that certify a block whose state_root omits the recall it holds (so
    that bundles could leave the recall out) are caught at that block."""
    import dataclasses

    from ledger import recallmap

    w, store = chain.w, chain.store
    recall = parse_unverified(w.ev("recall", OFFICE, {"targets": [{"type": "label", "id": "l-0001"}],
                                                      "reason": "复检"}))
    w.now += 1000
    built = build_block(store, store.frontier, w.genesis, height=store.height + 1, prev=store.last_hash,
                        time_ms=w.now, proposer=VALIDATOR, candidates=[recall], max_events=10, max_bytes=1 << 20)
    assert not built.rejected and built.header.state_root != recallmap.EMPTY
    built.header = dataclasses.replace(built.header, state_root=recallmap.EMPTY)  # "nothing recalled"
    store.commit(built, sign_commit(CHAIN, built.header.height, 0, built.header.hash, [(VALIDATOR, w.validator)]))
    chain.close()
    rc, rep, _ = run_audit(capsys, "--data", str(chain.dir), "--genesis", str(chain.gpath))
    assert rc == 1
    assert (rep["failure"]["code"], rep["failure"]["height"]) == ("state_mismatch", built.header.height)
    assert "recall map" in rep["failure"]["message"]
