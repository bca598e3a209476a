"""The audit's worker processes (verify/audit_workers.py): leaves parsed, hashed and their
signatures verified in dedicated processes, keys predicted in the main process.

A key enrolled in the same block as an event it signs, a key the prediction missed, a
leaf that is not canonical, a forged signature found by a worker, a worker that dies:
each gives the same report as the inline audit.  No worker outlives an audit, whether
it ends intact, fails early or its parent dies.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import plyvel
import pytest
from test_audit import Chain, corrupt, u64

from helpers_api import AGENT, CHAIN, COOP, VALIDATOR
from lambtrace.cmd_verify import StoreSource
from ledger import codec, merkle
from ledger.blocks.builder import assemble_block
from ledger.blocks.certificate import sign_commit
from ledger.errors import Rejected
from ledger.events import parse_leaf, parse_unverified
from ledger.rules import Applied
from verify import audit as audit_mod
from verify.audit import AuditReport, AuditWorkers, audit_chain
from verify.audit_workers import UNKNOWN, run_task

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    c = Chain(tmp_path)
    yield c
    try:
        c.close()
    except Exception:
        pass


@pytest.fixture(scope="module")
def pool() -> Iterator[AuditWorkers]:
    """Two workers shared by the tests of this module (an audit resets their key maps)."""
    with AuditWorkers(2) as w:
        w.warm()
        yield w


def audit(chain: Chain, workers: int | AuditWorkers = 0, **kw: Any) -> AuditReport:
    """Audit the (closed) chain's data directory as ``lambtrace audit --data`` does."""
    source = StoreSource(str(chain.dir), chain.w.genesis)
    try:
        return audit_chain(source.blocks(), chain.w.genesis, workers=workers, node_state_hash=source.state_hash,
                           **kw)
    finally:
        source.close()


def same(a: AuditReport, b: AuditReport) -> dict[str, Any]:
    """The reports' dicts, timings aside; asserts they are equal."""
    da, db = a.to_dict(), b.to_dict()
    for d in (da, db):
        d.pop("elapsed_s")
        d.pop("events_per_s")
    assert da == db
    return da


def count_main_verifies(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the signatures the main process verifies itself (the workers' are not counted)."""
    calls = [0]
    real = audit_mod.verify_signature

    def counting(alg: str, pub: bytes, msg: bytes, sig: bytes) -> bool:
        calls[0] += 1
        return real(alg, pub, msg, sig)

    monkeypatch.setattr(audit_mod, "verify_signature", counting)
    return calls


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (a zombie waiting for a reaper counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return True
        if "\nState:\tZ" in status:
            return True
        time.sleep(0.05)
    return False


def enrol_and_sign_in_one_block(chain: Chain) -> int:
    """A block that enrols a herder agent and holds a lamb.tag signed by its new key."""
    w = chain.w
    return chain.block([w.enroll("agent-2", "herder_agent", "152523", parent=COOP),
                        w.lamb_tag("agent-2", "315252300000007")])


# --------------------------------------------------------------------------- key prediction


def test_key_enrolled_in_the_same_block(chain: Chain, pool: AuditWorkers, monkeypatch: pytest.MonkeyPatch) -> None:
    h = enrol_and_sign_in_one_block(chain)
    chain.close()
    inline = audit(chain)
    assert inline.intact and inline.height == h, inline.failure
    calls = count_main_verifies(monkeypatch)
    # one leaf per task: the enrolment and the event it signs go to different workers
    rep = audit(chain, pool, batch_sigs=1, in_flight=1)
    same(rep, inline)
    assert calls[0] == 0  # every verdict came from a worker: the new key was predicted in time


def test_prediction_miss_is_verified_in_the_main_process(chain: Chain, pool: AuditWorkers,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    enrol_and_sign_in_one_block(chain)
    w = chain.w
    ev = w.lamb_tag(AGENT, "315252300000008")
    ev["sigs"][0]["sig"] = bytes(64)  # forged, by a key no prediction knows now
    index = chain.store.log_size
    h = chain.block([ev], check_sigs=False)
    chain.close()
    inline = audit(chain)
    assert inline.failure is not None
    assert (inline.failure or {}).get("code") == "bad_event_signature" and inline.failure["index"] == index
    assert inline.failure["height"] == h
    monkeypatch.setattr(audit_mod.Auditor, "_predict", lambda self, leaf: None)  # predict no enrolment
    calls = count_main_verifies(monkeypatch)
    same(audit(chain, pool, batch_sigs=2), inline)
    assert calls[0] > 0  # the signatures of enrolled keys were checked here, and the forgery caught


def test_trusted_decode_gives_the_parsed_event(chain: Chain) -> None:
    """The main process's cheap decode of a leaf a worker parsed is exactly parse_leaf's event."""
    enrol_and_sign_in_one_block(chain)
    leaves = [leaf for _i, leaf in chain.store.leaves(0, chain.store.log_size)]
    res = run_task({}, leaves, [])
    assert not res.errors and res.verdicts == bytes([UNKNOWN]) * len(leaves)
    for i, leaf in enumerate(leaves):
        ev = audit_mod._trusted_event(leaf, res.ids[32 * i:32 * i + 32], res.env_ends[i])
        assert ev == parse_leaf(leaf)
        assert res.hashes[32 * i:32 * i + 32] == merkle.leaf_hash(leaf)


# --------------------------------------------------------------------------- failures found by workers


def test_leaf_that_is_not_canonical(chain: Chain, pool: AuditWorkers) -> None:
    begin, _ = chain.store.block_range(5)
    chain.close()
    db = plyvel.DB(str(chain.dir / "chain.ldb"))
    try:
        leaf = db.get(b"L" + u64(begin))
        value = codec.decode(leaf)
        # the same event, its map's keys in the wrong order: valid msgpack, not canonical
        bad = msgpack.packb({"sigs": value["sigs"], "event": value["event"]}, use_bin_type=True)
        db.put(b"L" + u64(begin), bad, sync=True)
    finally:
        db.close()
    with pytest.raises(Rejected) as exc:
        parse_leaf(bad)
    rep = same(audit(chain, pool, batch_sigs=1), audit(chain))
    f = rep["failure"]
    assert (f["code"], f["cause"], f["height"], f["index"]) == ("bad_event", exc.value.code, 5, begin)
    assert exc.value.code == "non_canonical" and exc.value.message in f["message"]


def test_forged_signature_found_by_a_worker(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    w = chain.w
    ev = w.lamb_tag(AGENT, "315252300000003")
    ev["sigs"][0]["sig"] = bytes([ev["sigs"][0]["sig"][0] ^ 1]) + ev["sigs"][0]["sig"][1:]
    index = chain.store.log_size
    h = chain.block([w.lamb_tag(AGENT, "315252300000004"), ev], check_sigs=False)
    chain.close()
    calls = count_main_verifies(monkeypatch)
    rep = audit(chain, 2, batch_sigs=1)  # workers started and stopped by the audit
    assert calls[0] == 0  # the worker's verdict, not a check in this process
    f = rep.failure or {}
    assert (f.get("code"), f.get("height"), f.get("index")) == ("bad_event_signature", h, index + 1)
    same(rep, audit(chain))


@pytest.mark.parametrize("damage", ["intact", "signature_bit", "first_byte", "header", "certificate", "rule",
                                    "same_block_key"])
def test_workers_threads_and_inline_report_the_same(chain: Chain, pool: AuditWorkers, damage: str) -> None:
    w = chain.w
    if damage == "rule":
        ev = w.lamb_tag(AGENT, "315252300000001")  # already applied
        chain.block([w.lamb_tag(AGENT, "315252300000005")])
        store = chain.store
        w.now += 1000
        built = assemble_block(store, store.frontier, w.genesis, height=store.height + 1, prev=store.last_hash,
                               time_ms=w.now, proposer=VALIDATOR, executed=[(parse_unverified(ev), {}, Applied())])
        store.commit(built, sign_commit(CHAIN, built.header.height, 0, built.header.hash,
                                        [(VALIDATOR, w.validator)]))
    if damage == "same_block_key":
        enrol_and_sign_in_one_block(chain)
    begin, _ = chain.store.block_range(6)
    chain.close()
    if damage == "signature_bit":
        corrupt(chain.dir, b"L" + u64(begin + 1), -1)
    elif damage == "first_byte":
        corrupt(chain.dir, b"L" + u64(begin), 0, 0xFF)
    elif damage == "header":
        corrupt(chain.dir, b"H" + u64(3), -40)
    elif damage == "certificate":
        corrupt(chain.dir, b"C" + u64(4), -3)
    inline = audit(chain)
    assert inline.intact == (damage in ("intact", "same_block_key")), inline.failure
    for kw in ({"batch_sigs": 1, "in_flight": 1}, {"batch_sigs": 2, "in_flight": 3}, {}):
        same(audit(chain, pool, **kw), inline)
    with ThreadPoolExecutor(2) as ex:
        same(audit(chain, executor=ex, batch_sigs=2), inline)


def test_a_process_pool_executor_still_works(chain: Chain) -> None:
    """``executor=`` (any executor; tasks then carry the whole predicted key map)."""
    from concurrent.futures import ProcessPoolExecutor

    enrol_and_sign_in_one_block(chain)
    chain.close()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as ex:
        rep = same(audit(chain, executor=ex, batch_sigs=1), audit(chain))
    assert rep["intact"]


def test_a_worker_that_dies_is_replaced_by_the_main_process(chain: Chain) -> None:
    chain.close()
    inline = audit(chain)
    with AuditWorkers(2) as ws:
        ws.warm()
        os.kill(ws.pids[0], signal.SIGKILL)
        assert gone(ws.pids[0])
        same(audit(chain, ws, batch_sigs=1), inline)


# --------------------------------------------------------------------------- no worker left behind


def test_no_worker_outlives_an_audit(chain: Chain, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[AuditWorkers] = []

    class Recorded(AuditWorkers):
        def __init__(self, n: int) -> None:
            super().__init__(n)
            started.append(self)

    monkeypatch.setattr(audit_mod, "AuditWorkers", Recorded)
    begin, _ = chain.store.block_range(1)
    chain.close()
    assert audit(chain, 2).intact
    # a leaf of block 1 broken: the audit fails while the workers still have every other block queued
    corrupt(chain.dir, b"L" + u64(begin), 0, 0xFF)
    rep = audit(chain, 2, batch_sigs=1, in_flight=100)
    assert rep.failure is not None
    assert (rep.failure or {}).get("code") == "bad_event" and rep.failure["height"] == 1
    # a header that does not decode: the audit stops at once
    corrupt(chain.dir, b"H" + u64(1), 0, 0xFF)
    rep = audit(chain, 2)
    assert (rep.failure or {}).get("code") == "bad_header"
    assert len(started) == 3
    for ws in started:
        for pid in ws.pids:
            assert gone(pid, timeout=5.0), pid
    assert not {p.pid for p in multiprocessing.active_children()} & {pid for ws in started for pid in ws.pids}


def test_workers_exit_when_their_parent_dies(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from verify.audit_workers import AuditWorkers\n"
        "if __name__ == '__main__':\n"
        "    ws = AuditWorkers(2)\n"
        "    ws.warm()\n"
        "    print(' '.join(map(str, ws.pids)), flush=True)\n"
        "    os._exit(0)\n"  # no clean-up at all: as if killed
    )
    path = tmp_path / "parent.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60, env=env,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2
    for pid in pids:
        assert gone(pid), pid


def test_prediction_decodes_no_leaf_over_the_event_size_limit(chain: Chain) -> None:
    """Key prediction reads untrusted leaves before any worker has checked them: one over
    the event size limit is not decoded at all (the worker then refuses it as too_large)."""
    from dataclasses import replace

    from ledger.limits import DEFAULT_LIMITS
    from verify.audit import Auditor

    leaf = codec.encode(chain.w.enroll("agent-3", "herder_agent", "152523", parent=COOP))
    roomy = Auditor(chain.w.genesis)
    roomy._predict(leaf)
    tight = Auditor(chain.w.genesis, limits=replace(DEFAULT_LIMITS, max_event_bytes=len(leaf) - 1))
    tight._predict(leaf)
    assert len(roomy.predicted) == len(tight.predicted) + 1
