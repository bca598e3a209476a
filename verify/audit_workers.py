"""Worker processes for :mod:`verify.audit`: the order-independent half of an audit.

A *task* is a run of consecutive log leaves (and a few certificate signature jobs).
For each leaf, :func:`run_task` does exactly what the auditor would otherwise do in its
own process before the rules can run:

* parse it with :func:`ledger.events.parse_leaf` (the same function, so a leaf that is
  not a canonical signed event fails with the same code and message);
* hash it (RFC 9162 leaf hash);
* verify each of its signatures under the public key its key id names in the worker's
  key map: ``1`` valid, ``0`` not, ``2`` (:data:`UNKNOWN`) the key id is not in the map.

It answers with a compact :class:`TaskResult` (a few ``bytes`` and the rare errors):
pickling parsed events back would cost as much as parsing them again.

:class:`AuditWorkers` runs :func:`run_task` in dedicated processes (forkserver), each
keeping its own key map: a task carries only the keys that worker has not been sent
yet, so the map is never shipped twice.  Each worker reads tasks from its own pipe and
answers on another, in order; a worker exits when it reads ``None`` or when its task
pipe closes (the parent is gone), and a send to a vanished parent fails, so no worker
outlives the auditor.  A sender thread in the parent writes the tasks, so the parent
never blocks on a busy worker's full pipe.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from ledger import merkle
from ledger.errors import Rejected
from ledger.events import SignedEvent, parse_leaf
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.sigs import verify_signature

__all__ = ["LEAF_HEAD", "UNKNOWN", "AuditWorkers", "Job", "KeyRecord", "TaskResult", "WorkerLost", "run_task"]

Job = tuple[str, bytes, bytes, bytes]
"""``(alg, public key, message, signature)``."""

KeyRecord = tuple[str, str, bytes]
"""``(key id, alg, public key)``."""

UNKNOWN = 2
"""A verdict byte: the signature's key id was not in the worker's key map."""

_HASH = 32
LEAF_HEAD = b"\x82\xa5event"
"""How every canonical leaf starts: a 2-entry map whose first key is ``event``."""
_LEAF_HEAD_LEN = len(LEAF_HEAD)


@dataclass(slots=True)
class TaskResult:
    """What a task found, leaf by leaf, in the task's order.

    ``hashes`` holds 32 bytes per leaf (zeros for a leaf that failed to parse), ``ids``
    its event id likewise, ``env_ends`` where its envelope's bytes end in it (0 if it
    failed), ``nsigs`` one byte per leaf (its number of signatures, 0 if it failed),
    ``verdicts`` one byte per signature of the parsed leaves in order (1, 0 or
    :data:`UNKNOWN`), ``errors`` maps a leaf's position in the task to the
    ``(code, message)`` of its :class:`~ledger.errors.Rejected`, ``jobs`` one byte
    (1/0) per certificate job, and ``events`` the parsed events themselves when the
    caller shares the process (inline or threads), else ``None``.
    """

    hashes: bytes
    ids: bytes
    env_ends: list[int]
    nsigs: bytes
    verdicts: bytes
    errors: dict[int, tuple[str, str]]
    jobs: bytes
    events: list[SignedEvent | None] | None = None


def run_task(keys: Mapping[str, tuple[str, bytes]], leaves: Sequence[Any], jobs: Sequence[Job],
             limits: Limits = DEFAULT_LIMITS, keep_events: bool = False) -> TaskResult:
    """Parse, hash and verify ``leaves`` (see the module docstring); verify ``jobs``.

    ``keys`` maps key id to ``(alg, public key)``.  Raises nothing for what the leaves
    hold: a leaf that does not parse is reported in ``errors``.
    """
    hashes = bytearray()
    ids = bytearray()
    env_ends: list[int] = []
    nsigs = bytearray()
    verdicts = bytearray()
    errors: dict[int, tuple[str, str]] = {}
    events: list[SignedEvent | None] | None = [] if keep_events else None
    get = keys.get
    for i, leaf in enumerate(leaves):
        try:
            ev = parse_leaf(leaf, limits)
        except Rejected as exc:
            errors[i] = (exc.code, exc.message)
            hashes += bytes(_HASH)
            ids += bytes(_HASH)
            env_ends.append(0)
            nsigs.append(0)
            if events is not None:
                events.append(None)
            continue
        hashes += merkle.leaf_hash(ev.leaf)
        ids += ev.id
        # a canonical leaf is b"\x82\xa5event" + envelope + b"\xa4sigs" + signatures
        env_ends.append(_LEAF_HEAD_LEN + len(ev.envelope_bytes))
        nsigs.append(len(ev.sigs))
        msg = ev.signing_bytes()
        for kid, sig in ev.sigs:
            pk = get(kid)
            verdicts.append(UNKNOWN if pk is None else 1 if verify_signature(pk[0], pk[1], msg, sig) else 0)
        if events is not None:
            events.append(ev)
    job_verdicts = bytes(1 if verify_signature(*j) else 0 for j in jobs)
    return TaskResult(bytes(hashes), bytes(ids), env_ends, bytes(nsigs), bytes(verdicts), errors, job_verdicts,
                      events)


# --------------------------------------------------------------------------- processes


class WorkerLost(Exception):
    """A worker died or failed on a task; the caller redoes the task itself."""


_Task = tuple[int, bool, list[KeyRecord], Sequence[Any], Sequence[Job], Limits]
"""``(seq, reset key map, key delta, leaves, jobs, limits)``."""


def _serve(tasks: Connection, results: Connection) -> None:
    """A worker's loop: answer tasks in order until ``None`` or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    keys: dict[str, tuple[str, bytes]] = {}
    while True:
        try:
            msg: _Task | None = tasks.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        seq, reset, delta, leaves, jobs, limits = msg
        if reset:
            keys = {}
        for kid, alg, pub in delta:
            keys.setdefault(kid, (alg, pub))
        out: tuple[int, TaskResult | None, str | None]
        try:
            out = (seq, run_task(keys, leaves, jobs, limits), None)
        except Exception:  # a bug, not the chain: the parent redoes the task and sees it
            out = (seq, None, traceback.format_exc())
        try:
            results.send(out)
        except (OSError, ValueError):
            return


class AuditWorkers:
    """``n`` dedicated worker processes for :func:`verify.audit.audit_chain`.

    Use as a context manager (or call :meth:`close`).  :meth:`submit` queues a task for
    one worker and returns its sequence number; :meth:`result` waits for that task's
    answer (raising :class:`WorkerLost` if the worker died or the task failed).
    Results of tasks nobody asked for (an audit that stopped early) are skipped, so the
    workers can serve another audit afterwards.  Not thread-safe.
    """

    def __init__(self, n: int, *, context: BaseContext | None = None) -> None:
        if n < 1:
            raise ValueError("AuditWorkers needs at least one worker")
        ctx: Any = context or multiprocessing.get_context("forkserver")
        self._procs: list[Any] = []
        self._tasks: list[Connection] = []
        self._results: list[Connection] = []
        self._next = [0] * n
        self._want = [0] * n
        self._dead = [False] * n
        self._closed = False
        self._outbox: queue.SimpleQueue[tuple[int, _Task | None] | None] = queue.SimpleQueue()
        try:
            for i in range(n):
                task_r, task_w = ctx.Pipe(duplex=False)
                res_r, res_w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_serve, args=(task_r, res_w), daemon=True, name=f"lambtrace-audit-{i}")
                p.start()
                task_r.close()
                res_w.close()
                self._procs.append(p)
                self._tasks.append(task_w)
                self._results.append(res_r)
        except BaseException:
            self._closed = True
            self._stop(force=True)
            raise
        self._sender = threading.Thread(target=self._send_loop, name="lambtrace-audit-sender", daemon=True)
        self._sender.start()

    def __enter__(self) -> AuditWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._procs)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def alive(self, w: int) -> bool:
        return not self._dead[w] and not self._closed

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            w, msg = item
            try:
                self._tasks[w].send(msg)
            except (OSError, ValueError):
                self._dead[w] = True

    def submit(self, w: int, reset: bool, delta: list[KeyRecord], leaves: Sequence[Any], jobs: Sequence[Job],
               limits: Limits) -> int:
        """Queue a task for worker ``w``; its sequence number (for :meth:`result`)."""
        if self._closed:
            raise WorkerLost("the workers are closed")
        seq = self._next[w]
        self._next[w] = seq + 1
        self._outbox.put((w, (seq, reset, delta, list(leaves), list(jobs), limits)))
        return seq

    def result(self, w: int, seq: int) -> TaskResult:
        """The answer to task ``seq`` of worker ``w`` (tasks are answered in order)."""
        if self._closed or self._dead[w] or seq < self._want[w]:
            raise WorkerLost(f"worker {w} cannot answer task {seq}")
        while True:
            try:
                got, res, err = self._results[w].recv()
            except (EOFError, OSError) as exc:
                self._dead[w] = True
                raise WorkerLost(f"worker {w} is gone") from exc
            self._want[w] = got + 1
            if got < seq:
                continue  # an answer nobody waits for any more
            if got > seq:  # pragma: no cover - answers are asked for in order
                raise WorkerLost(f"worker {w} answered task {got} before task {seq}")
            if res is None:
                raise WorkerLost(f"worker {w} failed on a task:\n{err}")
            return res

    def warm(self) -> None:
        """Wait until every worker has started and answered an empty task."""
        for w in range(len(self._procs)):
            self.result(w, self.submit(w, True, [], [], [], DEFAULT_LIMITS))

    def busy(self) -> bool:
        """Whether some worker still has tasks whose answers were not read."""
        return any(n > m and not d for n, m, d in zip(self._next, self._want, self._dead))

    def close(self) -> None:
        """Stop the workers: politely when idle, at once if they still have work queued."""
        if self._closed:
            return
        force = self.busy()
        self._closed = True
        self._stop(force=force)

    def _stop(self, *, force: bool) -> None:
        if force:
            for p in self._procs:
                if p.is_alive():
                    p.terminate()
        else:
            for w in range(len(self._procs)):
                self._outbox.put((w, None))
        sender = getattr(self, "_sender", None)
        if sender is not None:
            self._outbox.put(None)
            sender.join(timeout=5)
        for p in self._procs:
            p.join(timeout=1 if force else 5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        for c in (*self._tasks, *self._results):
            try:
                c.close()
            except OSError:
                pass
