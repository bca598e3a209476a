"""Full-chain audit: replay every block from genesis and check everything (``lambtrace audit``).

For each block, in height order, the auditor checks

* the header: it decodes, names genesis's chain and validator set and a validator as
  proposer, has the next height, a time after the previous block's (the first at or
  after genesis), no ``state_root`` (none is defined yet) and ``prev`` equal to the hash
  of the previous header (genesis's hash for height 1);
* the log: ``log_size`` is the previous size plus the block's leaves, and ``log_root`` is
  the RFC 9162 root recomputed from every leaf since genesis;
* where the source is the node's own store, that the node's stored Merkle nodes give
  the same root (``store_mismatch`` otherwise: a rewritten or corrupted store);
* the commit certificate: for this height and header hash, known validators, each once,
  sorted, valid precommit signatures holding more than 2/3 of the power;
* every leaf: a canonical signed event (:func:`ledger.events.parse_leaf`);
* every event, in order, against the state replayed so far with
  :func:`ledger.rules.apply_event` at the block's time: the same rules the validators
  ran, signatures included.  Any refusal breaks the chain there.

At the end the replayed state hash (:func:`ledger.state.state_hash`) is compared with
the node's, when the source can tell it.

**Both cores.**  Signature checks are independent of the rules' order, so they run
ahead of the replay on an executor (a process pool in ``lambtrace audit``): the main
thread parses a batch of blocks and predicts each signature's public key from the key
enrolments it has parsed so far, workers verify the batch, and the rules then consult
those verdicts (keyed by algorithm, key, message and signature, so a verdict is only
ever reused for exactly the bytes it was computed on; a miss is verified on the spot).
While workers verify batch *k + 1*, the main thread replays batch *k*.  Failures found
while preparing a batch are held back until every block before them has been replayed,
so the reported break is always the *first* one in chain order.

Pure apart from the executor it is handed: blocks come in as values from a source
(the command line reads LevelDB or the HTTP API), progress goes out through a callback.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from ledger import codec, merkle
from ledger.blocks.certificate import CommitCertificate, vote_bytes
from ledger.blocks.header import Header
from ledger.errors import DecodeError, LedgerError, Rejected
from ledger.events import SignedEvent, parse_leaf
from ledger.genesis import Genesis
from ledger.hashing import key_id
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.rules import Context, apply_event
from ledger.sigs import verify_signature
from ledger.state import FLOOR_PREFIXES, MemoryState, StateView, genesis_writes, state_hash

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
    "Auditor",
    "IndexedMemoryState",
    "RawBlock",
    "audit_chain",
    "verify_jobs",
]

Job = tuple[str, bytes, bytes, bytes]
"""``(alg, public key, message, signature)``."""


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


# --------------------------------------------------------------------------- one block


@dataclass
class _Prepared:
    """A block after the order-independent work: decoded, parsed, hashed, jobs planned."""

    raw: RawBlock
    header: Header | None = None
    cert: CommitCertificate | None = None
    events: list[SignedEvent] = field(default_factory=list)
    leaf_hashes: list[bytes] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    error: VerificationError | None = None
    """The first failure found while preparing; raised when the block's turn comes."""


class Auditor:
    """Replays a chain block by block; :meth:`prepare` is order-independent work,
    :meth:`apply` the sequential checks and the rules.  Not thread-safe."""

    def __init__(self, genesis: Genesis, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.genesis = genesis
        self.limits = limits
        self.state = IndexedMemoryState(genesis_writes(genesis))
        self.frontier = merkle.CompactRange()
        self.height = 0
        self.last_hash = genesis.hash
        self.last_time = genesis.time
        self.events = 0
        self._validators = {v.name: v for v in genesis.validators}
        self._predicted: dict[str, tuple[str, bytes]] = {
            key_id(k["alg"], k["pub"]): (k["alg"], k["pub"]) for k in genesis.trace_office["keys"]
        }
        self._verdicts: dict[Job, bool] = {}
        self._next_index = 0
        """Leaf index of the next leaf :meth:`prepare` will see (it runs ahead of :meth:`apply`)."""

    # -- order-independent ----------------------------------------------------------------
    def prepare(self, raw: RawBlock) -> _Prepared:
        """Decode the header and certificate, parse and hash the leaves, plan the
        signature jobs.  Never raises for bad input: the failure is kept in the result."""
        p = _Prepared(raw)
        h = raw.height
        try:
            p.header = _header(raw.header, h)
            p.cert = _certificate(raw.certificate, h)
            if raw.leaves is None:
                raise BadHeader(f"block {h}: its leaves cannot be located", height=h)
            first = self._next_index
            self._next_index += len(raw.leaves)
            for k, leaf in enumerate(raw.leaves):
                try:
                    ev = parse_leaf(leaf, self.limits)
                except Rejected as exc:
                    raise BadEvent(f"block {h}, leaf {first + k}: not a canonical signed event: {exc.message}",
                                   height=h, index=first + k, cause=exc.code) from None
                p.events.append(ev)
                p.leaf_hashes.append(merkle.leaf_hash(leaf))
                self._plan(ev, p.jobs)
            msg = vote_bytes("precommit", self.genesis.chain, p.cert.height, p.cert.round, p.cert.block)
            for name, sig in p.cert.precommits:
                v = self._validators.get(name)
                if v is not None:
                    p.jobs.append((v.alg, v.pub, msg, sig))
        except VerificationError as exc:
            p.error = exc
        return p

    def _plan(self, ev: SignedEvent, jobs: list[Job]) -> None:
        """Predict each signature's key from the enrolments seen so far (the rules decide
        later whether the prediction was the key; a wrong guess only costs a re-check)."""
        b = ev.body
        if ev.kind == "actor.enroll":
            for k in b["keys"]:
                self._predicted[key_id(k["alg"], k["pub"])] = (k["alg"], k["pub"])
        elif ev.kind == "key.rotate":
            for k in b.get("add", []):
                self._predicted[key_id(k["alg"], k["pub"])] = (k["alg"], k["pub"])
        elif ev.kind == "device.register":
            k = b["key"]
            self._predicted[key_id(k["alg"], k["pub"])] = (k["alg"], k["pub"])
        msg = ev.signing_bytes()
        for kid, sig in ev.sigs:
            pk = self._predicted.get(kid)
            if pk is not None:
                jobs.append((pk[0], pk[1], msg, sig))

    # -- sequential -------------------------------------------------------------------------
    def add_verdicts(self, jobs: Sequence[Job], verdicts: Sequence[bool]) -> None:
        """Remember the workers' verdicts for the rules to consult."""
        self._verdicts.update(zip(jobs, verdicts))

    def _verify(self, alg: str, pub: bytes, msg: bytes, sig: bytes) -> bool:
        found = self._verdicts.pop((alg, pub, msg, sig), None)
        return verify_signature(alg, pub, msg, sig) if found is None else found

    def apply(self, p: _Prepared) -> None:
        """Check block ``p`` against the chain so far and replay its events.

        Raises a :mod:`verify.errors` subclass naming ``height`` (and ``index``) at the
        first failure; on success the auditor's tip moves to this block.
        """
        h = p.raw.height
        if p.error is not None:
            raise p.error
        header, cert = p.header, p.cert
        if header is None or cert is None:  # pragma: no cover - prepare sets both or an error
            raise RuntimeError("apply() needs a prepared block")
        g = self.genesis
        if h != self.height + 1:
            raise BadHeader(f"expected block {self.height + 1}, got {h}", height=h)
        if header.chain != g.chain:
            raise ChainMismatch(f"block {h} names chain {header.chain!r}", height=h)
        if header.validators != g.validators_hash:
            raise ChainMismatch(f"block {h} names another validator set", height=h)
        if header.proposer not in self._validators:
            raise BadHeader(f"block {h}'s proposer {header.proposer!r} is not a validator", height=h)
        if header.state_root is not None:
            raise BadHeader(f"block {h} carries a state_root, which no rule defines yet", height=h)
        if header.prev != self.last_hash:
            raise BrokenLink(f"block {h}'s prev is not the hash of block {h - 1}", height=h)
        if header.time < self.last_time or (h > 1 and header.time == self.last_time):
            raise BadHeader(f"block {h}'s time does not move forward", height=h)
        first = self.frontier.size
        if header.log_size != first + len(p.events):
            raise LogMismatch(f"block {h} claims log size {header.log_size}, its leaves make "
                              f"{first + len(p.events)}", height=h)
        frontier = self.frontier.copy()
        for lh in p.leaf_hashes:
            frontier.append(lh)
        if frontier.root() != header.log_root:
            raise LogMismatch(f"block {h}'s log root is not the root of its leaves", height=h,
                              index=self._first_bad_leaf(p, first))
        if p.raw.stored_root_known and p.raw.stored_root != header.log_root:
            raise StoreMismatch(f"the node's stored Merkle nodes disagree with block {h}'s log root "
                                "(the store was rewritten or corrupted here)", height=h)
        block_hash = header.hash
        self._check_certificate(cert, h, block_hash)
        ctx = Context(g, header.time, self._verify)
        view = StateView(self.state)
        for k, ev in enumerate(p.events):
            try:
                apply_event(view, ev, ctx)
            except Rejected as exc:
                if exc.code == "bad_signature":
                    raise BadEventSignature(f"block {h}, leaf {first + k}: {exc.message}", height=h,
                                            index=first + k) from None
                raise RuleViolation(f"block {h}, leaf {first + k}: the rules refuse it: {exc.code}: {exc.message}",
                                    height=h, index=first + k, rule=exc.code) from None
        self.state.apply(view)
        self.frontier = frontier
        self.height, self.last_hash, self.last_time = h, block_hash, header.time
        self.events += len(p.events)

    def forget_verdicts(self) -> None:
        """Drop verdicts no rule asked for (keys predicted wrongly); call between batches."""
        self._verdicts.clear()

    def _first_bad_leaf(self, p: _Prepared, first: int) -> int | None:
        """Where a root mismatch comes from, if a signature tells: the first leaf whose
        event signature does not verify under its predicted key (a bit flipped inside a
        leaf usually breaks it).  ``None`` if none does."""
        for k, ev in enumerate(p.events):
            msg = ev.signing_bytes()
            for kid, sig in ev.sigs:
                pk = self._predicted.get(kid)
                if pk is not None and not verify_signature(pk[0], pk[1], msg, sig):
                    return first + k
        return None

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


# --------------------------------------------------------------------------- the driver


def audit_chain(
    blocks: Iterable[RawBlock],
    genesis: Genesis,
    *,
    executor: Executor | None = None,
    batch_sigs: int = 4096,
    in_flight: int = 3,
    tasks_per_batch: int = 2,
    node_state_hash: Callable[[int], bytes | None] | None = None,
    trusted: Sequence[tuple[int, bytes]] = (),
    progress: Callable[[int, int], None] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    clock: Callable[[], float] = time.perf_counter,
) -> AuditReport:
    """Replay ``blocks`` (heights 1, 2, ... in order) from ``genesis``; never raises for
    what the blocks hold: the first failure is the report's ``failure``.

    ``executor`` verifies signature batches (of about ``batch_sigs`` signatures, split in
    ``tasks_per_batch`` tasks so every worker shares each batch, at most ``in_flight``
    batches ahead of the replay); ``None`` verifies them inline.
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
    pending: deque[tuple[list[_Prepared], list[Job], list[Future[list[bool]]]]] = deque()

    def settle() -> None:
        batch, jobs, futs = pending.popleft()
        if futs:
            auditor.add_verdicts(jobs, [v for fut in futs for v in fut.result()])
        elif jobs:
            auditor.add_verdicts(jobs, verify_jobs(jobs))
        for p in batch:
            auditor.apply(p)
            hh = p.raw.height
            if hh in want and want[hh] != auditor.last_hash:
                raise CheckpointMismatch(f"block {hh} is not the trusted checkpoint at that height", height=hh,
                                         expected=want[hh].hex(), served=auditor.last_hash.hex())
            if progress is not None:
                progress(1, len(p.events))
        auditor.forget_verdicts()

    try:
        for batch in _batches(blocks, auditor, batch_sigs):
            jobs = [j for p in batch for j in p.jobs]
            futs: list[Future[list[bool]]] = []
            if executor is not None and jobs:
                step = -(-len(jobs) // max(1, tasks_per_batch))
                futs = [executor.submit(verify_jobs, jobs[k:k + step]) for k in range(0, len(jobs), step)]
            pending.append((batch, jobs, futs))
            while len(pending) >= in_flight:
                settle()
        while pending:
            settle()
        missing = [hh for hh in want if hh > auditor.height]
        if missing:
            raise CheckpointMismatch(f"the chain ends at {auditor.height}, before the trusted checkpoint at "
                                     f"{missing[0]}", height=missing[0])
    except VerificationError as exc:
        failure = exc
    finally:
        for _b, _j, futs in pending:
            for fut in futs:
                fut.cancel()
    replayed = auditor.state_hash() if failure is None else None
    node_hash: bytes | None = None
    notes: list[str] = []
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
    )
    if failure is not None:
        report.failure = {"code": failure.code, "message": failure.message, **_jsonable(failure.details)}
        report.failure.setdefault("height", auditor.height + 1)
        report.failure.setdefault("index", None)
    return report


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in details.items()}


def _batches(blocks: Iterable[RawBlock], auditor: Auditor, batch_sigs: int) -> Iterator[list[_Prepared]]:
    """Prepared blocks grouped so each group holds about ``batch_sigs`` signature jobs;
    a block that failed to prepare ends its group (nothing after it matters)."""
    batch: list[_Prepared] = []
    n = 0
    for raw in blocks:
        p = auditor.prepare(raw)
        batch.append(p)
        n += len(p.jobs)
        if n >= batch_sigs or p.error is not None:
            yield batch
            batch, n = [], 0
            if p.error is not None:
                return
    if batch:
        yield batch
