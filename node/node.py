"""A node: admits signed events into a bounded mempool and commits them in blocks.

Admission (``submit``) parses each event, drops duplicates, and checks it with the
rules against the *check state*: committed state plus every event already admitted,
in order, so a batch may enrol an actor and then use its key.  Block production takes
admitted events in order, re-executes them against committed state (with a signature
cache, so each signature is verified once), signs a commit certificate with the
validator key, and writes the block in one synced batch.  After each block the check
state is rebuilt from the remaining mempool; events that no longer fit are dropped and
reported as rejected.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ledger import merkle
from ledger.blocks.builder import BuiltBlock, assemble_block, build_block
from ledger.blocks.certificate import CommitCertificate, sign_commit
from ledger.blocks.header import Header
from ledger.errors import LedgerError, Rejected, StorageError
from ledger.events import SignedEvent, parse_leaf, parse_unverified
from ledger.genesis import Genesis
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.rules import Applied, Context, time_ok, try_event
from ledger.sigs import verify_signature
from ledger.state import StateView
from signer import Signer

from .store import ChainStore

log = logging.getLogger("lambtrace.node")


_Job = tuple[str, bytes, bytes, bytes]


def _watch_parent(parent_pid: int) -> None:
    """Worker-process initializer: exit when the node process is gone (even after a
    SIGKILL, which gives the node no chance to shut its pool down)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # pragma: no cover - another user's pid now
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _verify_jobs(jobs: list[_Job]) -> list[int]:
    """Indexes of the jobs whose signature verifies (runs in a worker)."""
    return [i for i, j in enumerate(jobs) if verify_signature(*j)]


class SigCache:
    """Remembers signatures that verified, so block execution does not verify twice.

    A cache hit returns the verdict a fresh verification would: only triples that
    verified are stored, keyed by the full ``(alg, pub, message, sig)``.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._ok: dict[tuple[str, bytes, bytes, bytes], None] = {}
        self.hits = 0
        self.misses = 0

    def verify(self, alg: str, pub: bytes, msg: bytes, sig: bytes) -> bool:
        k = (alg, pub, msg, sig)
        if k in self._ok:
            self.hits += 1
            return True
        self.misses += 1
        ok = verify_signature(alg, pub, msg, sig)
        if ok:
            self.add(k)
        return ok

    def __contains__(self, k: tuple[str, bytes, bytes, bytes]) -> bool:
        return k in self._ok

    def add(self, k: tuple[str, bytes, bytes, bytes]) -> None:
        if len(self._ok) >= self.max_entries:
            # drop the oldest half; dicts keep insertion order
            for old in list(self._ok)[: self.max_entries // 2]:
                del self._ok[old]
        self._ok[k] = None

    def discard(self, msg_sigs: Sequence[tuple[bytes, bytes]]) -> None:  # pragma: no cover - tuning hook
        pass


@dataclass
class Metrics:
    submitted: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    blocks: int = 0
    committed_events: int = 0
    last_block_ms: float = 0.0
    sig_jobs: int = 0
    """Signatures handed to the verification workers."""
    reexecuted: int = 0
    """Events whose rules ran again: a peer's block not in this mempool's order, or a recheck."""

    def reject(self, code: str) -> None:
        self.rejected[code] = self.rejected.get(code, 0) + 1


class OtherEvents(LedgerError):
    """A block's events are not the ones its header commits to (:meth:`Node.execute_block`)."""

    code = "other_events"


class MempoolFull(LedgerError):
    code = "mempool_full"


@dataclass(slots=True)
class _Entry:
    """An admitted event with the write set it produced on the check state."""

    ev: SignedEvent
    writes: dict[str, Any]
    applied: Applied


class Node:
    """One validator (or, later, observer) over a :class:`ChainStore`."""

    def __init__(
        self,
        store: ChainStore,
        genesis: Genesis,
        *,
        name: str,
        signer: Signer | None,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
        verify_threads: int = 2,
        verify_processes: int = 0,
    ) -> None:
        self.store = store
        self.genesis = genesis
        self.name = name
        self.signer = signer
        self.limits = limits
        self.clock = clock
        self.metrics = Metrics()
        self.sigcache = SigCache(max(4 * limits.max_mempool_events, 10_000))
        self._lock = threading.RLock()
        self._mempool: OrderedDict[bytes, _Entry] = OrderedDict()
        self.paranoid = bool(os.environ.get("LAMBTRACE_PARANOID"))
        """Re-execute every block and compare with the write sets kept from admission."""
        self._check = StateView(store)
        self._recent_rejects: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._fault_logged = False
        self._fault: StorageError | None = None
        self._thread: threading.Thread | None = None
        self._pool: Executor | None = None
        self._verify_processes = verify_processes
        self._pool_lock = threading.Lock()
        self.pool_renewals = 0
        """How often a broken pool of verification workers was replaced."""
        if verify_processes > 0:
            self._pool = self._new_process_pool()
        elif verify_threads > 0:
            self._pool = ThreadPoolExecutor(max_workers=verify_threads)
        self.commit_listeners: list[Callable[[Header], None]] = []
        self.admission_listeners: list[Callable[[list[bytes]], None]] = []
        """Called with the leaves of events admitted by local submissions (for relaying)."""
        validator = genesis.validator(name)
        self.is_validator = validator is not None and signer is not None
        if validator is not None and signer is not None and signer.public_key != validator.pub:
            raise LedgerError(f"this node key is not the key genesis names for {name}", code="wrong_node_key")

    # -- admission --------------------------------------------------------------------
    @property
    def mempool_size(self) -> int:
        return len(self._mempool)

    def submit(self, values: Sequence[Any], *, presorted: bool = False, local: bool = True) -> list[dict[str, Any]]:
        """Admit untrusted signed-event values; one result per value, in order.

        A result is ``{id, status, code?, message?}`` with status ``accepted``,
        ``duplicate`` or ``rejected``.  ``local``: submitted here (not relayed by a peer);
        admission listeners hear of local admissions only.  ``presorted``: the values came out of
        :func:`ledger.codec.decode` (canonical already).  Raises :class:`MempoolFull` (nothing admitted)
        when the batch does not fit in the mempool.
        """
        if len(values) > self.limits.max_events_per_request:
            raise Rejected("too_many_events", f"at most {self.limits.max_events_per_request} events a request")
        parsed: list[SignedEvent | Rejected] = []
        for v in values:
            try:
                parsed.append(parse_unverified(v, self.limits, presorted=presorted))
            except Rejected as exc:
                parsed.append(exc.untraced())
        return self.submit_parsed(parsed, local=local)

    def submit_leaves(self, leaves: Sequence[bytes], *, local: bool = False) -> list[dict[str, Any]]:
        """:meth:`submit` for events as canonical leaf bytes (relayed by a peer)."""
        if len(leaves) > self.limits.max_events_per_request:
            raise Rejected("too_many_events", f"at most {self.limits.max_events_per_request} events a request")
        parsed: list[SignedEvent | Rejected] = []
        for leaf in leaves:
            try:
                parsed.append(parse_leaf(leaf, self.limits))
            except Rejected as exc:
                parsed.append(exc.untraced())
        return self.submit_parsed(parsed, local=local)

    def submit_parsed(self, parsed: list[SignedEvent | Rejected], *, local: bool) -> list[dict[str, Any]]:
        """Admit events parsed by :meth:`submit` or :meth:`submit_leaves` (a :class:`Rejected`
        stands for one that did not parse).  Raises :class:`StorageError` ``storage_unavailable``
        (nothing admitted) once the store has failed a write: events admitted then could
        never be committed."""
        self.check_writable()
        pending = self._preverify(parsed)
        results = []
        with self._lock:
            fresh = sum(1 for p in parsed if isinstance(p, SignedEvent) and p.id not in self._mempool)
            if len(self._mempool) + fresh > self.limits.max_mempool_events:
                raise MempoolFull(
                    f"the mempool holds {len(self._mempool)} of {self.limits.max_mempool_events} events; retry later"
                )
            ctx = Context(self.genesis, max(self.clock(), self._min_time()), self.sigcache.verify)
            for i, p in enumerate(parsed):
                while pending and pending[0][0] <= i:
                    self._collect(*pending.pop(0)[1:])
                self.metrics.submitted += 1
                if isinstance(p, Rejected):
                    self.metrics.reject(p.code)
                    results.append({"id": None, "status": "rejected", **p.to_dict()})
                    continue
                results.append(self._admit(p, ctx))
        if results and any(r["status"] == "accepted" for r in results):
            if len(self._mempool) >= self.limits.max_events_per_block:
                self._wake.set()
            if local and self.admission_listeners:
                accepted = [p.leaf for p, r in zip(parsed, results)
                            if isinstance(p, SignedEvent) and r["status"] == "accepted"]
                for listener in self.admission_listeners:
                    try:
                        listener(accepted)
                    except Exception:  # relaying is best effort; admission stands
                        log.exception("admission listener failed")
        return results

    def mark_fault(self, fault: StorageError) -> None:
        """Take no more events: a write this node depends on (its consensus log, its sign
        guard) failed.  :meth:`check_writable` raises from now on."""
        self._fault = self._fault or fault

    def check_writable(self) -> None:
        """Raise :class:`StorageError` ``storage_unavailable`` if the store takes no more writes
        (or :meth:`mark_fault` was called)."""
        fault = self.store.fault or self._fault
        if fault is not None:
            raise StorageError(f"this node cannot store events: {fault.message}; free space or fix the disk, "
                               "then restart the node", code="storage_unavailable")

    def _admit(self, ev: SignedEvent, ctx: Context) -> dict[str, Any]:
        hexid = ev.id.hex()
        if ev.id in self._mempool:
            self.metrics.duplicates += 1
            return {"id": hexid, "status": "duplicate", "code": "duplicate", "state": "pending"}
        loc = self.store.event_location(ev.id, remember_absent=True)
        if loc is not None:
            self.metrics.duplicates += 1
            return {"id": hexid, "status": "duplicate", "code": "duplicate", "state": "committed", "height": loc[0]}
        try:
            child, applied = try_event(self._check, ev, ctx)
        except Rejected as exc:
            self.metrics.reject(exc.code)
            return {"id": hexid, "status": "rejected", **exc.to_dict()}
        child.merge_into(self._check)
        self._mempool[ev.id] = _Entry(ev, child.writes, applied)
        self.metrics.accepted += 1
        return {"id": hexid, "status": "accepted"}

    def _preverify(
        self, parsed: list[SignedEvent | Rejected]
    ) -> list[tuple[int, list[_Job], Future[list[int]], Executor]]:
        """Start verifying signatures on worker threads (libsodium releases the GIL).

        Returns ``(first index, jobs, future, pool)`` per chunk of events, in order: admission waits
        for a chunk's future just before admitting it, so verification of later chunks
        overlaps the rules on earlier ones, and the rules then hit the cache.  Keys not
        known yet (enrolled earlier in the same batch) are left to the rules.
        """
        pool = self._pool
        if pool is None or len(parsed) < 32:
            return []
        out: list[tuple[int, list[_Job], Future[list[int]], Executor]] = []
        known = self.sigcache  # verified before (an event admitted here, then proposed)
        chunk = 128 if isinstance(pool, ProcessPoolExecutor) else 64  # fewer, larger hand-offs to processes
        for start in range(0, len(parsed), chunk):
            jobs: list[_Job] = []
            for ev in parsed[start : start + chunk]:
                if not isinstance(ev, SignedEvent) or ev.id in self._mempool:
                    continue  # a duplicate, or admitted already: its signatures were checked then
                msg = ev.signing_bytes()
                for kid, sig in ev.sigs:
                    key = self._check.state_get(f"k/{kid}")
                    if key is not None:
                        job = (key["alg"], key["pub"], msg, sig)
                        if job not in known:
                            jobs.append(job)
            if jobs:
                try:
                    fut = pool.submit(_verify_jobs, jobs)
                except BrokenExecutor:  # a worker died since the last batch
                    self._renew_pool(pool)
                    break  # the rules check the rest inline
                self.metrics.sig_jobs += len(jobs)
                out.append((start, jobs, fut, pool))
        return out

    def _new_process_pool(self) -> ProcessPoolExecutor:
        # Worker processes verify with their own interpreter lock, in parallel with the
        # rules in this process; forkserver keeps them free of this process's threads.
        return ProcessPoolExecutor(self._verify_processes, mp_context=multiprocessing.get_context("forkserver"),
                                   initializer=_watch_parent, initargs=(os.getpid(),))

    def _renew_pool(self, broken: Executor) -> None:
        """Replace a pool whose worker died (the OOM killer, a stray kill): a broken
        ``ProcessPoolExecutor`` refuses all work for ever.  Signatures it did not check
        are checked inline by the rules meanwhile, so nothing is admitted unchecked."""
        with self._pool_lock:
            if self._pool is not broken or self._stop.is_set():
                return  # another thread renewed it already, or the node is stopping
            log.warning("a signature verification worker died; starting new workers")
            self._pool = self._new_process_pool()
            self.pool_renewals += 1
        broken.shutdown(wait=False, cancel_futures=True)

    def _collect(self, jobs: list[_Job], fut: Future[list[int]], pool: Executor) -> None:
        """Cache the signatures a worker found valid; if the worker died, renew the pool and
        leave them to the rules (which verify anything not cached)."""
        try:
            valid = fut.result()
        except BrokenExecutor:
            self._renew_pool(pool)
            return
        for k in valid:
            self.sigcache.add(jobs[k])

    def _min_time(self) -> int:
        last = self.store.last_header
        # strictly after the previous block, or after genesis: what every validator requires
        return (last.time + 1) if last else self.genesis.time + 1

    # -- queries ----------------------------------------------------------------------
    def event_status(self, event_id: bytes) -> dict[str, Any] | None:
        loc = self.store.event_location(event_id)
        if loc is not None:
            return {"state": "committed", "height": loc[0], "index": loc[1]}
        if event_id in self._mempool:
            return {"state": "pending"}
        rej = self._recent_rejects.get(event_id)
        if rej is not None:
            return {"state": "rejected", "code": rej[0], "message": rej[1]}
        return None

    def pending_event(self, event_id: bytes) -> SignedEvent | None:
        entry = self._mempool.get(event_id)
        return entry.ev if entry is not None else None

    # -- block production -------------------------------------------------------------
    def produce_block(self) -> Header | None:
        """Single-validator mode: commit one block from the mempool if it holds anything.

        Returns the committed header, or None.  With several validators blocks come from
        consensus instead (:mod:`node.consensus`).
        """
        if not self.is_validator or self.signer is None or len(self.genesis.validators) != 1:
            return None
        with self._lock:
            if not self._mempool:
                return None
            t0 = time.perf_counter()
            built = self.propose_block(max(self.clock(), self._min_time()))
            header = built.header
            if not built.events:
                self._after_commit(built)
                return None
            cert = sign_commit(self.genesis.chain, header.height, 0, header.hash, [(self.name, self.signer)])
            self.commit_built(built, cert)
            self.metrics.last_block_ms = (time.perf_counter() - t0) * 1000
        return header

    def propose_block(self, now: int) -> BuiltBlock:
        """The next block from the mempool (not committed).  Events the rules now refuse
        are dropped from the mempool and reported as rejected."""
        with self._lock:
            built = self._build(max(now, self._min_time()))
            for ev, exc in built.rejected:
                self._mempool.pop(ev.id, None)
                self._remember_reject(ev.id, exc)
            if built.rejected:
                self._recheck()
            return built

    def execute_block(self, header: Header, leaves: Sequence[bytes]) -> BuiltBlock | None:
        """Re-execute a block proposed by a peer (or fetched by block sync).

        Returns the built block when every event parses and is accepted and the result
        has exactly ``header``; None otherwise.  Nothing is committed.  Raises
        :class:`OtherEvents` when ``leaves`` are not the events ``header`` commits to
        (its log root after this node's last block): not the block its header names,
        but a copy someone changed; that costs hashing only, no parsing or signatures.
        """
        with self._lock:
            if header.height != self.store.height + 1 or header.prev != self.store.last_hash:
                return None
            # Common case: the block is exactly the front of this node's mempool (events
            # reach every mempool in the order their entry node relayed them); then the
            # write sets kept since admission give the block without executing it again.
            front = list(itertools.islice(self._mempool.values(), len(leaves)))
            if (
                not self.paranoid
                and len(front) == len(leaves)
                and all(e.ev.leaf == leaf for e, leaf in zip(front, leaves))
                and all(time_ok(e.ev, self.genesis, header.time) for e in front)
            ):
                fast = assemble_block(
                    self.store, self.store.frontier, self.genesis, height=header.height, prev=header.prev,
                    time_ms=header.time, proposer=header.proposer,
                    executed=[(e.ev, e.writes, e.applied) for e in front],
                )
                if fast.header == header:
                    return fast
            if not self._log_commits(header, leaves):
                raise OtherEvents(f"the events of block {header.height} do not make its header's log root")
            # Events admitted here were parsed then: reuse them when the bytes are the same.
            admitted = {e.ev.leaf: e.ev for e in self._mempool.values()}
            events = []
            for leaf in leaves:
                ev = admitted.get(leaf)
                if ev is None:
                    try:
                        ev = parse_leaf(leaf, self.limits)
                    except Rejected:
                        return None
                events.append(ev)
            # Events this node has not admitted yet (the proposal outran the relay) have
            # unverified signatures: check them on the workers, not one by one here.
            for _start, jobs, fut, pool in self._preverify(list(events)):
                self._collect(jobs, fut, pool)
            self.metrics.reexecuted += len(events)
            built = build_block(
                self.store, self.store.frontier, self.genesis, height=header.height, prev=header.prev,
                time_ms=header.time, proposer=header.proposer, candidates=events, max_events=len(events),
                max_bytes=self.limits.max_block_bytes, verify=self.sigcache.verify,
            )
            if built.rejected or len(built.events) != len(events) or built.header != header:
                return None
            return built

    def _log_commits(self, header: Header, leaves: Sequence[bytes]) -> bool:
        """Whether ``leaves``, appended to this node's log, give ``header``'s log size and root."""
        frontier = self.store.frontier
        if header.log_size != frontier.size + len(leaves):
            return False
        cr = frontier.copy()
        for leaf in leaves:
            cr.append(merkle.leaf_hash(leaf))
        return cr.root() == header.log_root

    def commit_built(self, built: BuiltBlock, cert: CommitCertificate) -> None:
        """Store a decided block with its certificate and bring the mempool up to date."""
        with self._lock:
            try:
                self.store.commit(built, cert)
            except StorageError as exc:
                if self.store.fault is not None and not self._fault_logged:
                    self._fault_logged = True
                    log.error("storage failed while committing block %d: %s (%s); block %d stays the last "
                              "committed, the node refuses events from now on (storage_unavailable): free "
                              "space or fix the disk, then restart the node", built.header.height, exc.message,
                              exc.code, self.store.height)
                raise
            self.metrics.blocks += 1
            self.metrics.committed_events += len(built.events)
            self._after_commit(built)
        for listener in self.commit_listeners:
            try:
                listener(built.header)
            except Exception:  # a listener's fault never stops the chain
                log.exception("commit listener failed")

    def _after_commit(self, built: BuiltBlock) -> None:
        ids = [ev.id for ev in built.events]
        same = self._state_as_mempool(built, ids)
        for eid in ids:
            self._mempool.pop(eid, None)
        if not same or not self._mempool or len(self._check.writes) > 4 * self.limits.max_mempool_events:
            self._recheck()
        elif self.paranoid:
            kept = {eid: e.writes for eid, e in self._mempool.items()}
            self._recheck(count=False)
            if kept != {eid: e.writes for eid, e in self._mempool.items()}:
                raise RuntimeError("write sets kept across a reordered block differ from a recheck")

    def _state_as_mempool(self, built: BuiltBlock, ids: list[bytes]) -> bool:
        """Whether the check state (committed + admitted events) and the write sets kept
        for the events left are still exactly right after ``built`` (just committed).

        They are when the block is the front of the mempool in its order.  A peer's block
        often holds the events of the front in another order, or leaves some of them
        out: then the events it left out of that front are executed again on the new
        committed state, and if the block's writes and theirs together equal the
        writes of the front in mempool order, the state is the same as the mempool
        assumed and everything after that front stays valid (those few events take
        their new write sets).  Otherwise, or if the block holds an event this mempool
        lacks, the caller rebuilds everything.
        """
        want = set(ids)
        if len(want) != len(ids):
            return False
        front: list[_Entry] = []
        found = 0
        for eid, entry in self._mempool.items():
            if found == len(want):
                break
            front.append(entry)
            found += eid in want
        if found != len(want):
            return False
        if len(front) == len(ids) and all(e.ev.id == eid for e, eid in zip(front, ids)):
            return True
        before: dict[str, Any] = {}
        for e in front:
            before.update(e.writes)
        view = StateView(self.store)
        ctx = Context(self.genesis, max(self.clock(), self._min_time()), self.sigcache.verify)
        left_out = [e for e in front if e.ev.id not in want]
        redone: list[tuple[_Entry, dict[str, Any], Applied]] = []
        self.metrics.reexecuted += len(left_out)
        for e in left_out:
            try:
                child, applied = try_event(view, e.ev, ctx)
            except Rejected:
                return False
            child.merge_into(view)
            redone.append((e, child.writes, applied))
        after = dict(built.view.writes)
        after.update(view.writes)
        if after != before:
            return False
        for e, writes, applied in redone:
            e.writes, e.applied = writes, applied
        return True

    def _build(self, now: int) -> BuiltBlock:
        """The next block: from the write sets kept since admission when the mempool's
        prefix still passes the clock checks, else by executing the events again."""
        prefix: list[_Entry] = []
        size = 0
        for entry in self._mempool.values():
            if len(prefix) >= self.limits.max_events_per_block or size + len(entry.ev.leaf) > self.limits.max_block_bytes:  # noqa: E501
                break
            prefix.append(entry)
            size += len(entry.ev.leaf)
        height, prev, proposer = self.store.height + 1, self.store.last_hash, self.name

        def execute() -> BuiltBlock:
            return build_block(
                self.store, self.store.frontier, self.genesis, height=height, prev=prev, time_ms=now,
                proposer=proposer, candidates=[e.ev for e in prefix], max_events=len(prefix),
                max_bytes=self.limits.max_block_bytes, verify=self.sigcache.verify,
            )

        if not all(time_ok(e.ev, self.genesis, now) for e in prefix):
            return execute()
        fast = assemble_block(
            self.store, self.store.frontier, self.genesis, height=height, prev=prev, time_ms=now,
            proposer=proposer, executed=[(e.ev, e.writes, e.applied) for e in prefix],
        )
        if self.paranoid:
            slow = execute()
            if slow.rejected or slow.header != fast.header or slow.view.writes != fast.view.writes:
                raise RuntimeError("write sets kept from admission differ from re-execution")
        return fast

    def _remember_reject(self, event_id: bytes, exc: Rejected) -> None:
        self._recent_rejects[event_id] = (exc.code, exc.message)
        while len(self._recent_rejects) > 10_000:
            self._recent_rejects.popitem(last=False)

    def _recheck(self, *, count: bool = True) -> None:
        """Rebuild the check state from committed state plus the remaining mempool
        (``count``: in ``metrics.reexecuted``; not for a paranoid comparison)."""
        self._check = StateView(self.store)
        if not self._mempool:
            return
        ctx = Context(self.genesis, max(self.clock(), self._min_time()), self.sigcache.verify)
        if count:
            self.metrics.reexecuted += len(self._mempool)
        for eid, entry in list(self._mempool.items()):
            try:
                child, applied = try_event(self._check, entry.ev, ctx)
            except Rejected as exc:
                del self._mempool[eid]
                self._remember_reject(eid, exc)
                continue
            child.merge_into(self._check)
            entry.writes, entry.applied = child.writes, applied

    # -- running ----------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="block-producer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self.genesis.params.block_interval_ms / 1000
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.produce_block()
            except Exception as exc:
                if isinstance(exc, StorageError) and self.store.fault is not None:
                    break  # logged by commit_built; retrying could only fail, or corrupt the store
                log.exception("block production failed; retrying")
                time.sleep(interval)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
