"""Full-chain audit: replay every block from genesis and check everything (``lambtrace audit``).

For each block, in height order, the auditor checks

* the header: it decodes, names genesis's chain and validator set and a validator as
  proposer, has the next height, a time after the previous block's (the first at or
  after genesis), a ``state_root`` exactly when genesis defines one, and ``prev`` equal
  to the hash of the previous header (genesis's hash for height 1);
* the log: ``log_size`` is the previous size plus the block's leaves, and ``log_root`` is
  the RFC 9162 root recomputed from every leaf since genesis;
* where the source is the node's own store, that the node's stored Merkle nodes give
  the same root (``store_mismatch`` otherwise: a rewritten or corrupted store);
* the commit certificate: for this height and header hash, known validators, each once,
  sorted, valid precommit signatures holding more than 2/3 of the power;
* every leaf: a canonical signed event (:func:`ledger.events.parse_leaf`);
* every event, in order, against the state replayed so far with
  :func:`ledger.rules.apply_event` at the block's time: the same rules the validators
  ran, signatures included.  Any refusal breaks the chain there;
* where genesis defines a ``state_root`` (``"recalls/v1"``), that the header's is the
  root of the recall map the replay has built (:mod:`ledger.recallmap`;
  ``state_mismatch`` otherwise).

At the end the replayed state hash (:func:`ledger.state.state_hash`) is compared with
the node's, when the source can tell it.

**Both cores.**  Everything about a leaf that does not depend on the order of the
chain runs ahead of the replay in worker processes (:mod:`verify.audit_workers`, one per
core in ``lambtrace audit``): its canonical parse (:func:`ledger.events.parse_leaf`, so a
bad leaf fails with the same code and message), its leaf hash, and the verification of
each of its signatures under the key its key id names.  The main process reads blocks
ahead of the replay and predicts keys cheaply: only leaves whose bytes can hold an
enrolment (``actor.enroll``, ``key.rotate``, ``device.register``) are decoded, and each
worker is sent the keys it has not seen yet with the task that may need them.  Workers
answer compactly (leaf hashes, one verdict byte per signature, the rare parse errors);
the main process then decodes each leaf without re-checking it (the worker proved it
canonical), checks headers, certificates and the log root, and runs the rules, whose
signature checks are answered from the verdicts: only for the same leaf, signature and
key bytes the worker used (a key the prediction missed is verified on the spot).  The
first failure in chain order is reported, whoever found it.

Pure apart from the workers it is handed or starts: blocks come in as values from a source
(the command line reads LevelDB or the HTTP API), progress goes out through a callback.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ledger import codec, merkle, recallmap
from ledger.blocks.certificate import CommitCertificate, vote_bytes
from ledger.blocks.header import Header
from ledger.errors import DecodeError, LedgerError, Rejected
from ledger.events import SignedEvent
from ledger.genesis import Genesis
from ledger.hashing import key_id
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.rules import Context, apply_event
from ledger.sigs import verify_signature
from ledger.state import FLOOR_PREFIXES, MemoryState, StateView, genesis_writes, state_hash

from .audit_workers import LEAF_HEAD, UNKNOWN, AuditWorkers, Job, KeyRecord, TaskResult, WorkerLost, run_task
from .errors import (
    BadCertificate,
    BadEvent,
    BadEventSignature,
    BadHeader,
    BrokenLink,
    ChainMismatch,
    CheckpointMismatch,
    InsufficientPower,
    LogMismatch,
    RuleViolation,
    StateMismatch,
    StoreMismatch,
    VerificationError,
)

__all__ = [
    "AuditReport",
    "AuditWorkers",
    "Auditor",
    "IndexedMemoryState",
    "RawBlock",
    "audit_chain",
    "verify_jobs",
]


@dataclass
class RawBlock:
    """One block as a source hands it over: nothing in it is trusted yet.

    ``header`` and ``certificate`` are canonical msgpack bytes (a store) or decoded maps
    with real bytes (the API).  ``leaves`` is ``None`` when the source could not tell
    which leaves belong to the block (its header does not decode).  ``stored_root`` is
    the root the node's own Merkle nodes give at the header's ``log_size`` (a store
    only; ``None`` if those nodes are missing or malformed), ``stored_root_known``
    whether the source checked at all.
    """

    height: int
    header: Any
    certificate: Any
    leaves: list[bytes] | None
    stored_root: bytes | None = None
    stored_root_known: bool = False


@dataclass
class AuditReport:
    """The outcome: ``intact`` or the first ``failure`` (code, height, index, message)."""

    intact: bool
    chain: str
    genesis_hash: bytes
    height: int
    log_size: int
    events: int
    state_hash: bytes | None
    node_state_hash: bytes | None = None
    failure: dict[str, Any] | None = None
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    recalled_labels: int | None = None
    """Chains with the recall map: labels with a recall in the replayed map (every header's
    ``state_root`` was checked against it); None for chains without it."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (bytes as hex)."""
        return {
            "intact": self.intact,
            "chain": self.chain,
            "genesis_hash": self.genesis_hash.hex(),
            "height": self.height,
            "log_size": self.log_size,
            "events": self.events,
            "state_hash": self.state_hash.hex() if self.state_hash else None,
            "node_state_hash": self.node_state_hash.hex() if self.node_state_hash else None,
            "failure": self.failure,
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(self.events / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
            "recalled_labels": self.recalled_labels,
            "notes": list(self.notes),
        }


class IndexedMemoryState(MemoryState):
    """:class:`~ledger.state.MemoryState` with a sorted index for floor queries, so a
    replay of *n* tag ranges does not scan the whole state per ``lamb.tag``."""

    def __init__(self, items: dict[str, Any] | None = None) -> None:
        super().__init__(items)
        self._sorted: dict[str, list[str]] = {
            p: sorted(k for k in self.items if k.startswith(p)) for p in FLOOR_PREFIXES
        }

    def state_floor(self, prefix: str, key: str) -> tuple[str, Any] | None:
        keys = self._sorted.get(prefix)
        if keys is None:
            return super().state_floor(prefix, key)
        i = bisect.bisect_right(keys, key)
        if i == 0:
            return None
        k = keys[i - 1]
        return k, self.items[k]

    def apply(self, view: StateView) -> None:
        for k in view.writes:
            if k not in self.items:
                for p, keys in self._sorted.items():
                    if k.startswith(p):
                        bisect.insort(keys, k)
        super().apply(view)


def verify_jobs(jobs: Sequence[Job]) -> list[bool]:
    """Each job's verdict (:func:`ledger.sigs.verify_signature`); picklable for process
    pools.  Never raises for bad input."""
    return [verify_signature(*j) for j in jobs]


# --------------------------------------------------------------------------- tasks


class _Task:
    """Consecutive leaves (of one or more blocks) and certificate jobs checked together."""

    __slots__ = ("fetch", "jobs", "leaves", "res", "starts")

    def __init__(self) -> None:
        self.leaves: list[Any] = []
        self.jobs: list[Job] = []
        self.fetch: Callable[[], TaskResult] | None = None
        """Set when the task is handed out; waits for (or computes) its result."""
        self.res: TaskResult | None = None
        self.starts: list[int] = []
        """Per leaf, where its verdicts start in ``res.verdicts``."""

    def result(self) -> TaskResult:
        if self.res is None:
            if self.fetch is None:  # pragma: no cover - the driver flushes before it settles
                raise RuntimeError("task not handed out")
            res = self.fetch()
            starts, n = [], 0
            for k in res.nsigs:
                starts.append(n)
                n += k
            self.res, self.starts = res, starts
        return self.res


class _Runner:
    """Hands tasks out: inline (lazily, in this process), to an executor or to workers."""

    keep_events = True

    def __init__(self, auditor: Auditor) -> None:
        self.auditor = auditor

    def start(self, task: _Task) -> None:
        a = self.auditor
        task.fetch = lambda: run_task(a.predicted, task.leaves, task.jobs, a.limits, self.keep_events)

    def stop(self) -> None:
        """The audit is over: drop what is still running."""


class _ExecutorRunner(_Runner):
    def __init__(self, auditor: Auditor, executor: Executor) -> None:
        super().__init__(auditor)
        self.executor = executor
        self.threads = isinstance(executor, ThreadPoolExecutor)
        self.keep_events = self.threads
        self.futures: set[Future[TaskResult]] = set()

    def start(self, task: _Task) -> None:
        a = self.auditor
        # Threads share the (append-only) key map; processes get a copy.
        keys = a.predicted if self.threads else dict(a.predicted)
        fut = self.executor.submit(run_task, keys, task.leaves, task.jobs, a.limits, self.keep_events)
        self.futures.add(fut)

        def fetch() -> TaskResult:
            self.futures.discard(fut)
            return fut.result()

        task.fetch = fetch

    def stop(self) -> None:
        for fut in self.futures:
            fut.cancel()


class _WorkerRunner(_Runner):
    """Dedicated workers, each keeping its own key map: a task carries the key delta."""

    keep_events = False

    def __init__(self, auditor: Auditor, workers: AuditWorkers) -> None:
        super().__init__(auditor)
        self.workers = workers
        self.sent = [0] * len(workers)
        self.fresh = [True] * len(workers)
        self.turn = 0

    def start(self, task: _Task) -> None:
        a, ws = self.auditor, self.workers
        for _ in range(len(ws)):
            w = self.turn
            self.turn = (w + 1) % len(ws)
            if ws.alive(w):
                break
        else:
            super().start(task)  # no worker left: inline
            return
        delta = a.key_log[self.sent[w]:]
        self.sent[w] = len(a.key_log)
        try:
            seq = ws.submit(w, self.fresh[w], delta, task.leaves, task.jobs, a.limits)
        except WorkerLost:
            super().start(task)
            return
        self.fresh[w] = False

        def fetch() -> TaskResult:
            try:
                return ws.result(w, seq)
            except WorkerLost:
                return run_task(a.predicted, task.leaves, task.jobs, a.limits, False)

        task.fetch = fetch


# --------------------------------------------------------------------------- one block


@dataclass
class _Block:
    """A block as read: header and certificate decoded, its leaves placed in tasks."""

    raw: RawBlock
    first: int = 0
    """Leaf index of its first leaf."""
    leaves: list[Any] = field(default_factory=list)
    header: Header | None = None
    cert: CommitCertificate | None = None
    jobs: list[Job] = field(default_factory=list)
    segments: list[tuple[_Task, int, int]] = field(default_factory=list)
    """``(task, position in the task, count)``: where its leaves were checked, in order."""
    job_segment: tuple[_Task, int] | None = None
    error: VerificationError | None = None
    """The first failure found while reading; raised when the block's turn comes."""


# The kind strings of the events that enrol keys, as a canonical leaf encodes them (fixstr).
_ENROLMENT_MARKS = (b"\xacactor.enroll", b"\xaakey.rotate", b"\xafdevice.register")


def _trusted_event(leaf: bytes, eid: bytes, env_end: int) -> SignedEvent:
    """The event of a leaf a worker has parsed: already proven canonical and schema-valid,
    so a plain decode suffices.  Its id and where its envelope ends in the leaf come from
    the worker's parse of these very bytes (canonical, so the slice is exactly the
    envelope's canonical encoding)."""
    value = msgpack.unpackb(leaf, raw=False, use_list=True, strict_map_key=True)
    if not leaf.startswith(LEAF_HEAD):  # pragma: no cover - impossible for a parsed leaf
        raise RuntimeError("a parsed leaf is not canonical")
    return SignedEvent(envelope=value["event"], sigs=tuple([(s["key"], s["sig"]) for s in value["sigs"]]),
                       id=eid, envelope_bytes=leaf[len(LEAF_HEAD):env_end], leaf=leaf)


class Auditor:
    """Replays a chain block by block: :meth:`read` is the cheap part that runs ahead
    (decode header and certificate, predict keys), :meth:`apply` the sequential checks
    and the rules once the block's tasks are answered.  Not thread-safe."""

    def __init__(self, genesis: Genesis, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.genesis = genesis
        self.limits = limits
        self.state = IndexedMemoryState(genesis_writes(genesis))
        self.frontier = merkle.CompactRange()
        self.height = 0
        self.last_hash = genesis.hash
        self.last_time = genesis.time
        self.events = 0
        self.notes: list[str] = []
        """What the report should say besides a verdict (nothing that makes a chain fail)."""
        self._validators = {v.name: v for v in genesis.validators}
        self.predicted: dict[str, tuple[str, bytes]] = {}
        """Key id -> ``(alg, public key)`` from the enrolments read so far.  Append-only,
        first one wins: workers are sent the same entries in the same order
        (:attr:`key_log`), so a worker's key for an id is always this one."""
        self.key_log: list[KeyRecord] = []
        for k in genesis.trace_office["keys"]:
            self._learn(k["alg"], k["pub"])
        self._next_index = 0
        self._verdicts: dict[Job, bool] = {}
        self._cur: SignedEvent | None = None
        self._cur_verdicts = b""

    # -- ahead of the replay ----------------------------------------------------------------
    def _learn(self, alg: Any, pub: Any) -> None:
        if type(alg) is str and type(pub) is bytes:
            kid = key_id(alg, pub)
            if kid not in self.predicted:
                self.predicted[kid] = (alg, pub)
                self.key_log.append((kid, alg, pub))

    def _predict(self, leaf: bytes) -> None:
        """Learn the keys a leaf may enrol (the rules decide later whether it does; a wrong
        or missing guess only costs a signature check in this process)."""
        m1, m2, m3 = _ENROLMENT_MARKS
        if len(leaf) > self.limits.max_event_bytes or not (m1 in leaf or m2 in leaf or m3 in leaf):
            return  # (an oversized leaf is not decoded here: the worker refuses it as too_large)
        try:
            env = msgpack.unpackb(leaf, raw=False, strict_map_key=False)["event"]
            kind, body = env["kind"], env["body"]
            if kind == "actor.enroll":
                keys = body["keys"]
            elif kind == "key.rotate":
                keys = body.get("add", [])
            elif kind == "device.register":
                keys = [body["key"]]
            else:
                return
            for k in keys:
                self._learn(k["alg"], k["pub"])
        except Exception:  # not even msgpack, or not an enrolment: the worker will say
            return

    def read(self, raw: RawBlock) -> _Block:
        """Decode the header and certificate, plan the certificate's signature jobs and
        predict keys from the leaves.  Never raises for bad input: the failure is kept."""
        b = _Block(raw)
        h = raw.height
        try:
            b.header = _header(raw.header, h)
            b.cert = _certificate(raw.certificate, h)
            if raw.leaves is None:
                raise BadHeader(f"block {h}: its leaves cannot be located", height=h)
        except VerificationError as exc:
            b.error = exc
            return b
        b.leaves = [bytes(x) if isinstance(x, bytearray | memoryview) else x for x in raw.leaves]
        b.first = self._next_index
        self._next_index += len(b.leaves)
        for leaf in b.leaves:
            if type(leaf) is bytes:
                self._predict(leaf)
        msg = vote_bytes("precommit", self.genesis.chain, b.cert.height, b.cert.round, b.cert.block)
        for name, sig in b.cert.precommits:
            v = self._validators.get(name)
            if v is not None:
                b.jobs.append((v.alg, v.pub, msg, sig))
        return b

    # -- sequential -------------------------------------------------------------------------
    def _verify(self, alg: str, pub: bytes, msg: bytes, sig: bytes) -> bool:
        """The rules' signature check: a worker's verdict where it was computed on exactly
        these bytes (this event's leaf, this signature, this key), else verified here."""
        ev = self._cur
        if ev is not None:
            for j, (kid, s) in enumerate(ev.sigs):
                if s == sig and self._cur_verdicts[j] != UNKNOWN and self.predicted.get(kid) == (alg, pub) \
                        and msg == ev.signing_bytes():
                    return self._cur_verdicts[j] == 1
        found = self._verdicts.pop((alg, pub, msg, sig), None)
        return verify_signature(alg, pub, msg, sig) if found is None else found

    def apply(self, b: _Block) -> None:
        """Check block ``b`` against the chain so far and replay its events.

        Raises a :mod:`verify.errors` subclass naming ``height`` (and ``index``) at the
        first failure; on success the auditor's tip moves to this block.
        """
        h = b.raw.height
        if b.error is not None:
            raise b.error
        header, cert = b.header, b.cert
        if header is None or cert is None:  # pragma: no cover - read() sets both or an error
            raise RuntimeError("apply() needs a block read by read()")
        first = b.first
        # Per leaf: (task result, position in the task), in order.
        slots: list[tuple[TaskResult, int, _Task]] = []
        for task, pos, count in b.segments:
            res = task.result()
            for i in range(pos, pos + count):
                if i in res.errors:
                    code, message = res.errors[i]
                    k = len(slots)
                    raise BadEvent(f"block {h}, leaf {first + k}: not a canonical signed event: {message}",
                                   height=h, index=first + k, cause=code)
                slots.append((res, i, task))
        g = self.genesis
        if h != self.height + 1:
            raise BadHeader(f"expected block {self.height + 1}, got {h}", height=h)
        if header.chain != g.chain:
            raise ChainMismatch(f"block {h} names chain {header.chain!r}", height=h)
        if header.validators != g.validators_hash:
            raise ChainMismatch(f"block {h} names another validator set", height=h)
        if header.proposer not in self._validators:
            raise BadHeader(f"block {h}'s proposer {header.proposer!r} is not a validator", height=h)
        mapped = recallmap.enabled(g)
        if not mapped and header.state_root is not None:
            raise BadHeader(f"block {h} carries a state_root, which this chain's genesis does not define",
                            height=h)
        if mapped and header.state_root is None:
            raise BadHeader(f"block {h} has no state_root (this chain's genesis commits the recall map)", height=h)
        if header.prev != self.last_hash:
            raise BrokenLink(f"block {h}'s prev is not the hash of block {h - 1}", height=h)
        if header.time < self.last_time or (h > 1 and header.time == self.last_time):
            raise BadHeader(f"block {h}'s time does not move forward", height=h)
        if h == 1 and header.time == self.last_time:
            # nodes refuse this since a fix; a single validator could write it before
            self.notes.append("block 1 is dated at the genesis time itself: validators now require a later time, "
                              "so this chain was written by an older single-validator node")
        base = self.frontier.size
        if header.log_size != base + len(slots):
            raise LogMismatch(f"block {h} claims log size {header.log_size}, its leaves make "
                              f"{base + len(slots)}", height=h)
        frontier = self.frontier.copy()
        for res, i, _t in slots:
            frontier.append(res.hashes[32 * i:32 * i + 32])
        if frontier.root() != header.log_root:
            raise LogMismatch(f"block {h}'s log root is not the root of its leaves", height=h,
                              index=_first_bad_leaf(slots, first))
        if b.raw.stored_root_known and b.raw.stored_root != header.log_root:
            raise StoreMismatch(f"the node's stored Merkle nodes disagree with block {h}'s log root "
                                "(the store was rewritten or corrupted here)", height=h)
        block_hash = header.hash
        self._verdicts = {}
        if b.job_segment is not None:
            task, pos = b.job_segment
            jv = task.result().jobs
            self._verdicts = {j: jv[pos + n] == 1 for n, j in enumerate(b.jobs)}
        self._check_certificate(cert, h, block_hash)
        self._verdicts = {}
        ctx = Context(g, header.time, self._verify)
        view = StateView(self.state)
        try:
            for k, (res, i, task) in enumerate(slots):
                ev = res.events[i] if res.events is not None else None
                if ev is None:
                    ev = _trusted_event(b.leaves[k], res.ids[32 * i:32 * i + 32], res.env_ends[i])
                start = task.starts[i]
                self._cur, self._cur_verdicts = ev, res.verdicts[start:start + res.nsigs[i]]
                try:
                    apply_event(view, ev, ctx)
                except Rejected as exc:
                    if exc.code == "bad_signature":
                        raise BadEventSignature(f"block {h}, leaf {first + k}: {exc.message}", height=h,
                                                index=first + k) from None
                    raise RuleViolation(f"block {h}, leaf {first + k}: the rules refuse it: {exc.code}: "
                                        f"{exc.message}", height=h, index=first + k, rule=exc.code) from None
        finally:
            self._cur, self._cur_verdicts = None, b""
        root = recallmap.finish_block(view, g)
        if root != header.state_root:
            raise StateMismatch(f"block {h}'s state_root is not the root of the recall map its events make",
                                height=h)
        self.state.apply(view)
        self.frontier = frontier
        self.height, self.last_hash, self.last_time = h, block_hash, header.time
        self.events += len(slots)

    def _check_certificate(self, cert: CommitCertificate, h: int, block_hash: bytes) -> None:
        if cert.height != h:
            raise BadCertificate(f"block {h}'s certificate is for height {cert.height}", height=h)
        if cert.block != block_hash:
            raise BadCertificate(f"block {h}'s certificate is for another header", height=h)
        names = [n for n, _ in cert.precommits]
        if any(n not in self._validators for n in names) or names != sorted(set(names)):
            raise BadCertificate(f"block {h}'s certificate names unknown, repeated or unsorted validators",
                                 height=h)
        msg = vote_bytes("precommit", self.genesis.chain, cert.height, cert.round, cert.block)
        power = 0
        for name, sig in cert.precommits:
            v = self._validators[name]
            if not self._verify(v.alg, v.pub, msg, sig):
                raise BadCertificate(f"block {h}: the precommit of {name} does not verify", height=h)
            power += v.power
        if 3 * power <= 2 * self.genesis.total_power():
            raise InsufficientPower(f"block {h}'s precommits hold {power} of {self.genesis.total_power()} power",
                                    height=h)

    def state_hash(self) -> bytes:
        """:func:`ledger.state.state_hash` of the replayed state."""
        return state_hash(sorted(self.state.items.items()))


def _header(value: Any, h: int) -> Header:
    try:
        if isinstance(value, bytes | bytearray | memoryview):
            value = codec.decode(bytes(value))
        header = Header.from_dict(value)
    except (DecodeError, Rejected) as exc:
        raise BadHeader(f"block {h}'s header does not decode: {exc.message}", height=h) from None
    if header.height != h:
        raise BadHeader(f"the header stored for block {h} says height {header.height}", height=h)
    return header


def _certificate(value: Any, h: int) -> CommitCertificate:
    try:
        if isinstance(value, bytes | bytearray | memoryview):
            value = codec.decode(bytes(value))
        return CommitCertificate.from_dict(value)
    except (DecodeError, Rejected) as exc:
        raise BadCertificate(f"block {h}'s certificate does not decode: {exc.message}", height=h) from None


def _first_bad_leaf(slots: Sequence[tuple[TaskResult, int, _Task]], first: int) -> int | None:
    """Where a root mismatch comes from, if a signature tells: the first leaf with a
    signature that does not verify under its predicted key (a bit flipped inside a leaf
    usually breaks one).  ``None`` if none does."""
    for k, (res, i, task) in enumerate(slots):
        start = task.starts[i]
        if 0 in res.verdicts[start:start + res.nsigs[i]]:
            return first + k
    return None


# --------------------------------------------------------------------------- the driver


def audit_chain(
    blocks: Iterable[RawBlock],
    genesis: Genesis,
    *,
    workers: int | AuditWorkers = 0,
    executor: Executor | None = None,
    batch_sigs: int = 512,
    in_flight: int = 16,
    node_state_hash: Callable[[int], bytes | None] | None = None,
    trusted: Sequence[tuple[int, bytes]] = (),
    progress: Callable[[int, int], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    clock: Callable[[], float] = time.perf_counter,
) -> AuditReport:
    """Replay ``blocks`` (heights 1, 2, ... in order) from ``genesis``; never raises for
    what the blocks hold: the first failure is the report's ``failure``.

    Leaves are parsed, hashed and their signatures verified in tasks of about
    ``batch_sigs`` leaves, at most about ``in_flight`` tasks ahead of the replay, by
    ``workers``: a number of worker processes to start (forkserver) and stop before
    returning, or running :class:`~verify.audit_workers.AuditWorkers` (left running).
    With ``workers=0`` an ``executor`` may run the tasks instead (threads or processes);
    with neither, they run inline, in this process.
    ``node_state_hash(height)`` is the node's state hash at that tip (``None`` if it
    cannot tell); it is compared with the replayed one at the end.  ``trusted`` are
    ``(height, header hash)`` checkpoints the chain must pass through (a witness's).
    ``progress(blocks, events)`` is called after each replayed block.  ``clock`` times
    the run (the only clock read here, for the report's rate).
    """
    t0 = clock()
    auditor = Auditor(genesis, limits=limits)
    want = dict(trusted)
    failure: VerificationError | None = None
    owned: AuditWorkers | None = None
    runner: _Runner | None = None
    size = max(1, batch_sigs)
    ahead = size * max(1, in_flight)
    queue: deque[_Block] = deque()
    queued = 0  # leaves in ``queue``
    current = _Task()

    def flush() -> None:
        nonlocal current
        if (current.leaves or current.jobs) and runner is not None:
            runner.start(current)
            current = _Task()

    def place(b: _Block) -> None:
        nonlocal current
        if b.jobs:
            b.job_segment = (current, len(current.jobs))
            current.jobs.extend(b.jobs)
        i, n = 0, len(b.leaves)
        while i < n:
            part = b.leaves[i:i + size - len(current.leaves)]
            b.segments.append((current, len(current.leaves), len(part)))
            current.leaves.extend(part)
            i += len(part)
            if len(current.leaves) >= size:
                flush()

    def settle() -> None:
        nonlocal queued
        b = queue.popleft()
        queued -= len(b.leaves)
        if any(t is current for t, _p, _n in b.segments) or (b.job_segment and b.job_segment[0] is current):
            flush()
        auditor.apply(b)
        hh = b.raw.height
        if hh in want and want[hh] != auditor.last_hash:
            raise CheckpointMismatch(f"block {hh} is not the trusted checkpoint at that height", height=hh,
                                     expected=want[hh].hex(), served=auditor.last_hash.hex())
        if progress is not None:
            progress(1, len(b.leaves))

    try:
        if isinstance(workers, AuditWorkers):
            runner = _WorkerRunner(auditor, workers)
        elif workers > 0:
            owned = AuditWorkers(workers)
            runner = _WorkerRunner(auditor, owned)
        elif executor is not None:
            runner = _ExecutorRunner(auditor, executor)
        else:
            runner = _Runner(auditor)
        for raw in blocks:
            b = auditor.read(raw)
            queue.append(b)
            queued += len(b.leaves)
            if b.error is not None:
                break  # nothing after it matters
            place(b)
            # Replay the oldest block once enough work is queued behind it for the workers.
            while len(queue) > 1 and queued - len(queue[0].leaves) >= ahead:
                settle()
        flush()
        while queue:
            settle()
        missing = [hh for hh in want if hh > auditor.height]
        if missing:
            raise CheckpointMismatch(f"the chain ends at {auditor.height}, before the trusted checkpoint at "
                                     f"{missing[0]}", height=missing[0])
    except VerificationError as exc:
        failure = exc
    finally:
        if runner is not None:
            runner.stop()
        if owned is not None:
            owned.close()
    replayed = auditor.state_hash() if failure is None else None
    node_hash: bytes | None = None
    notes = list(auditor.notes)
    if failure is None and node_state_hash is not None:
        try:
            node_hash = node_state_hash(auditor.height)
        except LedgerError as exc:
            notes.append(f"the node's state hash could not be read: {exc.code}: {exc.message}")
        if node_hash is None:
            notes.append("the node's state hash at the audited tip is not available; only the replay is checked")
        elif node_hash != replayed:
            failure = StateMismatch(f"the state replayed to block {auditor.height} differs from the node's",
                                    height=auditor.height)
    report = AuditReport(
        intact=failure is None,
        chain=genesis.chain,
        genesis_hash=genesis.hash,
        height=auditor.height,
        log_size=auditor.frontier.size,
        events=auditor.events,
        state_hash=replayed,
        node_state_hash=node_hash,
        elapsed_s=clock() - t0,
        notes=notes,
        recalled_labels=recallmap.size_in(auditor.state) if recallmap.enabled(genesis) else None,
    )
    if failure is not None:
        report.failure = {"code": failure.code, "message": failure.message, **_jsonable(failure.details)}
        report.failure.setdefault("height", auditor.height + 1)
        report.failure.setdefault("index", None)
    return report


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in details.items()}
