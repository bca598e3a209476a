"""Consensus in a running node: the replica's app, WAL, sign guard and driver thread.

:class:`NodeApp` lets a :class:`~ledger.consensus.replica.Replica` build, validate and
commit blocks through the node (mempool, rules, LevelDB).  :class:`FileWAL` and
:class:`FileGuard` keep what a restart needs on disk.  :class:`ConsensusDriver` owns the
replica: one thread feeds it peer messages, timers and a gossip tick, and hands its
outputs to the transport.  Events admitted by any node are relayed to its peers, so
they reach every validator's mempool.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from ledger import codec
from ledger.blocks.builder import BuiltBlock
from ledger.blocks.certificate import CommitCertificate
from ledger.blocks.header import Header
from ledger.consensus.replica import MemoryGuard, Out, Replica, Send, SetTimer, must_persist
from ledger.errors import LedgerError, Rejected, StorageError
from ledger.limits import DEFAULT_LIMITS, Limits
from signer.software import fsync_directory

from .node import Node, OtherEvents
from .transport import FRAME_DEPTH_ALLOWANCE

log = logging.getLogger("lambtrace.consensus")

MAX_FORGED_RELAYED = 64
"""A peer that relays this many events with bad signatures within ``RELAY_WINDOW_MS`` has
its relayed events ignored for the rest of that window."""
RELAY_WINDOW_MS = 60_000
MAX_CLOCK_DRIFT_MS = 10_000
"""A proposed block's time may be at most this far ahead of the local clock."""


class NodeApp:
    """The :class:`~ledger.consensus.replica.App` of a node.

    A payload is ``{"header": header map, "events": [leaf bytes, ...]}``; its value is
    the header hash.  Block times come from the node's wall clock (``node.clock``); the
    ``now_ms`` the replica passes is the driver's monotonic clock, for timers only (a
    wall clock stepped back would stall them).  Validation re-executes the events on committed state and requires
    the very same header; executed blocks are kept (bounded) so that commit does not
    execute them again.
    """

    MAX_CACHED = 16

    def __init__(self, node: Node) -> None:
        self.node = node
        self._built: OrderedDict[bytes, BuiltBlock] = OrderedDict()

    def committed_height(self) -> int:
        return self.node.store.height

    def has_pending(self) -> bool:
        return self.node.mempool_size > 0

    def _keep(self, built: BuiltBlock) -> None:
        self._built[built.header.hash] = built
        while len(self._built) > self.MAX_CACHED:
            self._built.popitem(last=False)

    def propose(self, height: int, now_ms: int) -> tuple[bytes, Any]:
        built = self.node.propose_block(self.node.clock())
        self._keep(built)
        return built.header.hash, {"header": built.header.to_dict(), "events": [ev.leaf for ev in built.events]}

    def time_of(self, payload: Any) -> int:
        return int(payload["header"]["time"])

    def value_of(self, payload: Any) -> bytes | None:
        if type(payload) is not dict or set(payload) != {"header", "events"}:
            return None
        try:
            return Header.from_dict(payload["header"]).hash
        except Rejected:
            return None

    def validate(self, height: int, payload: Any, proposer: str, now_ms: int) -> tuple[bytes | None, bool]:
        if type(payload) is not dict or set(payload) != {"header", "events"}:
            return None, False
        try:
            header = Header.from_dict(payload["header"])
        except Rejected:
            return None, False
        leaves = payload["events"]
        if type(leaves) is not list or any(type(x) is not bytes for x in leaves):
            return None, False
        value = header.hash
        if value in self._built:
            return value, True
        g = self.node.genesis
        store = self.node.store
        last = store.last_header
        ok = (
            header.chain == g.chain
            and header.height == height == store.height + 1
            and header.validators == g.validators_hash
            and len(leaves) <= self.node.limits.max_events_per_block
            and header.time > (last.time if last else g.time)
            and (proposer == ""
                 or (header.proposer == proposer and header.time <= self.node.clock() + MAX_CLOCK_DRIFT_MS))
        )
        if not ok:
            return value, False
        try:
            built = self.node.execute_block(header, leaves)
        except OtherEvents:
            # Not the block the (signed) header names: a copy a peer changed, which must
            # neither count as the proposer's block nor shut the genuine copy out.
            return None, False
        if built is None:
            return value, False
        self._keep(built)
        return value, True

    def commit(self, height: int, payload: Any, cert: CommitCertificate) -> None:
        built = self._built.get(cert.block)
        if built is None:
            value, valid = self.validate(height, payload, "", 0)
            built = self._built.get(cert.block) if valid and value == cert.block else None
        if built is None:
            raise StorageError(f"decided block {cert.block.hex()} cannot be executed here", code="bad_decided_block")
        self.node.commit_built(built, cert)
        self._built.clear()

    def committed(self, height: int) -> tuple[Any, CommitCertificate] | None:
        store = self.node.store
        header = store.header(height)
        cert = store.certificate(height)
        if header is None or cert is None:
            return None
        begin, end = store.block_range(height)
        leaves = [leaf for _i, leaf in store.leaves(begin, end)]
        return {"header": header.to_dict(), "events": leaves}, cert


class FileWAL:
    """Append-only log of consensus inputs, one file per height, under ``directory``.

    Records are length-prefixed canonical msgpack.  ``fsync`` is called for the inputs
    that matter for a restart (:func:`~ledger.consensus.replica.must_persist`); a torn
    tail (a crash in mid-write) is ignored when reading and cut before the next append,
    and a log damaged before its end is set aside (ADR 0021).  Records are read back
    under the limits the transport decodes a peer's frame under (``limits`` with
    :data:`FRAME_DEPTH_ALLOWANCE`): the replica logs a peer's message as it came, so
    whatever it logged reads back.
    """

    def __init__(self, directory: Path, limits: Limits = DEFAULT_LIMITS) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[int, Any] = {}
        self.own_name = ""
        self.limits = replace(limits, max_depth=limits.max_depth + FRAME_DEPTH_ALLOWANCE)

    def _path(self, height: int) -> Path:
        return self.dir / f"{height:012d}.wal"

    def append(self, height: int, record: dict[str, Any]) -> None:
        f = self._files.get(height)
        if f is None:
            f = self._open(height)
        data = codec.encode(record)
        try:
            f.write(len(data).to_bytes(4, "big") + data)
            f.flush()
            if must_persist(record, self.own_name):
                os.fsync(f.fileno())
        except OSError as exc:  # disk full, I/O error: the input must not be stepped
            raise StorageError(f"cannot write the consensus log {self._path(height)}: {exc.strerror or exc}",
                               code="storage_unavailable") from exc

    def _open(self, height: int) -> Any:
        """The height's file, for appending after its last whole record.  A torn tail left
        by a crash is cut first: records appended after it would be unreadable to the
        next run, which stops at the first record it cannot read.  A file it creates is made
        durable in its directory at once, so that records fsynced into it survive a power loss."""
        path = self._path(height)
        f = None
        try:
            created = not path.exists()
            whole = self._scan(self._read(path))[1]
            f = open(path, "ab")  # noqa: SIM115 - kept open for the height
            if created:
                fsync_directory(path.parent)
            if f.tell() > whole:
                log.warning("consensus log %s: cutting %d bytes of a torn or unreadable tail", path,
                            f.tell() - whole)
                f.truncate(whole)
                os.fsync(f.fileno())
        except OSError as exc:
            if f is not None:
                self._close(f)
            raise StorageError(f"cannot open the consensus log {path}: {exc.strerror or exc}",
                               code="storage_unavailable") from exc
        self._files[height] = f
        return f

    @staticmethod
    def _read(path: Path) -> bytes:
        """The file's bytes, as many as its size says (a device behind it, such as
        /dev/full in the tests, is not read without end)."""
        if not path.exists():
            return b""
        with open(path, "rb") as f:
            return f.read(os.fstat(f.fileno()).st_size)

    def _scan(self, raw: bytes) -> tuple[list[dict[str, Any]], int]:
        """The whole records at the start of ``raw``, and the length they take."""
        out = []
        pos = 0
        while pos + 4 <= len(raw):
            n = int.from_bytes(raw[pos : pos + 4], "big")
            if pos + 4 + n > len(raw):
                break  # torn tail
            try:
                out.append(codec.decode(raw[pos + 4 : pos + 4 + n], self.limits))
            except LedgerError:
                break
            pos += 4 + n
        return out, pos

    def set_aside_if_damaged(self, height: int) -> Path | None:
        """Set the height's log aside if it is damaged *before* its end: an unreadable record with
        more written after it (a torn or zero-filled tail is what a crash leaves, and is
        not damage).  The records after such a spot were stepped on but cannot be read
        back, among them perhaps this validator's own votes and so its lock.  The file is
        renamed to ``<name>.damaged`` (kept for a look) and that path returned (``None``:
        not damaged); the caller
        must then sign nothing at this height (:func:`damaged_wal_pause`)."""
        path = self._path(height)
        raw = self._read(path)
        whole = self._scan(raw)[1]
        rest = raw[whole:]
        if whole == len(raw) or not rest.strip(b"\x00"):
            return None
        n = int.from_bytes(rest[:4], "big") if len(rest) >= 4 else len(rest)
        if not rest[4 + n:].strip(b"\x00"):
            return None  # nothing written after the unreadable record: a tail
        f = self._files.pop(height, None)
        if f is not None:
            self._close(f)
        aside = path.with_name(path.name + ".damaged")
        try:
            os.replace(path, aside)
        except OSError as exc:
            raise StorageError(f"cannot set aside the damaged consensus log {path}: {exc.strerror or exc}",
                               code="storage_unavailable") from exc
        return aside

    def records(self, height: int) -> Sequence[dict[str, Any]]:
        return self._scan(self._read(self._path(height)))[0]

    @staticmethod
    def _close(f: Any) -> None:
        with contextlib.suppress(OSError):  # what a failed write left buffered fails again
            f.close()

    def forget_below(self, height: int) -> None:
        for h in [h for h in self._files if h < height]:
            self._close(self._files.pop(h))
        for p in self.dir.glob("*.wal"):
            try:
                if int(p.stem) < height:
                    p.unlink()
            except (ValueError, OSError):
                pass

    def close(self) -> None:
        for f in self._files.values():
            self._close(f)
        self._files.clear()


class FileGuard(MemoryGuard):
    """The validator's double-sign guard, persisted (with fsync) before each signature.

    It stays outside any HSM on purpose: the token signs, this file decides whether it
    may.  The rule is :class:`~ledger.consensus.replica.MemoryGuard`'s: an earlier
    (height, round, step) and a different message at the same one are refused.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        if path.exists():
            try:
                d = json.loads(path.read_text())
                self.last = (int(d["height"]), int(d["round"]), int(d["step"]))
                self.last_hash = str(d["sign_bytes_sha256"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StorageError(f"sign guard {path} is unreadable: {exc}", code="corrupt_guard") from exc

    def _persist(self, hrs: tuple[int, int, int], digest: str) -> None:
        height, round_, step = hrs
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump({"height": height, "round": round_, "step": step, "sign_bytes_sha256": digest}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fsync_directory(self.path.parent)  # the rename too, or a power loss could undo it
        except OSError as exc:  # nothing is signed unless the guard holds it
            raise StorageError(f"cannot write the sign guard {self.path}: {exc.strerror or exc}",
                               code="storage_unavailable") from exc


LOST_GUARD_MARGIN_MS = 2 * MAX_CLOCK_DRIFT_MS
"""How far past its start a block's time must be before a validator whose guard was lost
signs again: a block time may run ``MAX_CLOCK_DRIFT_MS`` ahead of real time, and this
node's own clock may lag by as much."""


class GuardStart(NamedTuple):
    """How a validator without its sign guard file starts (:func:`lost_guard_pause`)."""

    paused_until_ms: int | None
    """It signs nothing until a block timed at least this is committed."""
    watch_until_ms: int | None
    """It signs, but pauses as above should a block's certificate, or a peer, show it a
    precommit or vote of its own that this run did not sign."""
    paused_because: str = ""
    """Why it starts paused (``/v1/status``): ``sign_guard_lost``, ``consensus_log_damaged``
    or both, comma-separated; empty when it does not."""


def lost_guard_pause(path: Path, node: Node, *, fresh: bool = False) -> GuardStart:
    """Whether validator ``node`` may sign at once, given its guard file ``path``.

    A data directory whose chain is above height 0 but holds no guard file has lost it
    (restored from a backup, copied from another node, the file deleted), and the lost
    file may have recorded votes at the height the network is at now.  Such a validator
    signs nothing until it commits, from its peers, a block whose time is
    ``LOST_GUARD_MARGIN_MS`` past its start: that block's height is above anything it
    can have signed before (ADR 0014; the replica applies the pause).  An empty chain
    without a guard is a new validator, or one reinstalled on an empty disk: it signs,
    but pauses the same way if a synced block's certificate or a relayed vote shows a
    signature of its own that it did not make in this run.  ``fresh`` (``lambtrace node
    --fresh-sign-guard``) skips both, for when the operator knows no other instance signed
    at the current height, e.g. every validator of a halted network lost its guard.
    """
    if path.exists():
        return GuardStart(None, None)
    if fresh:
        if node.store.height > 0:
            log.warning("no sign guard at %s, though the chain here is at height %d: starting a fresh one "
                        "(--fresh-sign-guard): if this validator signed elsewhere at the current height, its "
                        "votes and these may conflict", path, node.store.height)
        return GuardStart(None, None)
    until = node.clock() + LOST_GUARD_MARGIN_MS
    if node.store.height == 0:
        return GuardStart(None, until)
    log.warning("no sign guard at %s, though the chain here is at height %d: the guard was lost, so this "
                "validator signs nothing until its peers commit a block timed after %s (at least %d s from "
                "now); it still follows and serves the chain. If the network cannot commit without it (every "
                "validator lost its guard), restart it with --fresh-sign-guard once no other instance of it "
                "is running", path, node.store.height, _utc(until), LOST_GUARD_MARGIN_MS // 1000)
    return GuardStart(until, None, "sign_guard_lost")


def damaged_wal_pause(wal: FileWAL, node: Node) -> int | None:
    """``paused_until_ms`` for a validator whose consensus log for the height it resumes
    at is damaged (:meth:`FileWAL.set_aside_if_damaged`): like a validator that lost its
    guard, it signs nothing until its peers commit a block timed after
    ``LOST_GUARD_MARGIN_MS`` from now, which is past any height it may have voted at."""
    height = node.store.height + 1
    aside = wal.set_aside_if_damaged(height)
    if aside is None:
        return None
    until = node.clock() + LOST_GUARD_MARGIN_MS
    log.error("the consensus log of height %d is damaged before its end (set aside as %s): this validator may "
              "have voted at that height in ways it can no longer read back, so it signs nothing until its peers "
              "commit a block timed after %s; it still follows and serves the chain", height, aside, _utc(until))
    return until


def validator_start(guard_path: Path, wal: FileWAL, node: Node, *, fresh: bool = False) -> GuardStart:
    """How a validator starts: :func:`lost_guard_pause` for its sign guard, paused longer
    if need be by :func:`damaged_wal_pause` for its consensus log."""
    start = lost_guard_pause(guard_path, node, fresh=fresh)
    damaged = damaged_wal_pause(wal, node)
    if damaged is None:
        return start
    why = ", ".join(r for r in (start.paused_because, "consensus_log_damaged") if r)
    return GuardStart(max(damaged, start.paused_until_ms or 0), start.watch_until_ms, why)


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


class ConsensusDriver:
    """Runs a replica in its own thread over a transport.

    ``send(to, msg)`` and ``broadcast(msg)`` are the transport's; incoming messages
    arrive through :meth:`deliver` (any thread).  Admitted events are relayed to peers
    with :meth:`relay_events`.
    """

    TICK_MS = 250

    def __init__(
        self,
        node: Node,
        replica: Replica,
        *,
        send: Callable[[str, dict[str, Any]], None],
        broadcast: Callable[[dict[str, Any]], None],
        clock: Callable[[], int] = lambda: int(time.monotonic() * 1000),
    ) -> None:
        self.node = node
        self.replica = replica
        self._send = send
        self._broadcast = broadcast
        self.clock = clock
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=100_000)
        self._timers: list[tuple[int, int, tuple[str, int, int]]] = []
        self._seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._events_q: queue.Queue[tuple[str, list[bytes]] | None] = queue.Queue(maxsize=1_000)
        """Relayed events wait here for admission on their own thread, so a big batch
        never holds up consensus messages."""
        self._relay_lock = threading.Lock()
        self._relay_bad: dict[str, tuple[int, int]] = {}
        """Per peer: (start of its window, relayed events with bad signatures in it)."""
        self._admitter: threading.Thread | None = None
        self.dropped_inbox = 0
        self._paused = replica.paused_until_ms is not None

    def _note_pause(self) -> None:
        """One log line when the replica stops or resumes signing for a lost guard."""
        paused = self.replica.paused_until_ms
        if not self._paused and paused is not None:
            st = self.replica.stats
            seen = (f"block {st.paused_at} carries a precommit" if st.paused_by == "certificate"
                    else f"a peer relayed a vote at height {st.paused_at}")
            log.warning("sign guard: %s of this validator that this run did not sign, so an earlier run of "
                        "it signed on this chain (its guard lost with its data): it signs nothing until its "
                        "peers commit a block timed after %s; if another instance of it is still running, "
                        "stop one of them", seen, _utc(paused))
        elif self._paused and paused is None:
            log.warning("sign guard: a block was committed after this validator started, so it signs "
                        "again from height %s on", self.replica.stats.resumed_at)
        self._paused = paused is not None

    def deliver(self, sender: str, msg: Any) -> None:
        """Queue a message from ``sender`` (thread-safe; drops when the inbox is full)."""
        try:
            self._inbox.put_nowait((sender, msg))
        except queue.Full:
            self.dropped_inbox += 1

    def relay_events(self, leaves: list[bytes]) -> None:
        """Send events admitted here to every peer's mempool, and wake the replica."""
        if leaves:
            self._broadcast({"t": "events", "chain": self.node.genesis.chain, "events": leaves})
            self.deliver("", {"t": "_poke"})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consensus", daemon=True)
        self._thread.start()
        self._admitter = threading.Thread(target=self._admit_relayed, name="relay-admission", daemon=True)
        self._admitter.start()

    def stop(self) -> None:
        self._stop.set()
        self.deliver("", {"t": "_poke"})
        try:
            self._events_q.put_nowait(None)
        except queue.Full:
            pass
        for t in (self._thread, self._admitter):
            if t is not None:
                t.join(timeout=10)

    def _admit_relayed(self) -> None:
        while not self._stop.is_set():
            item = self._events_q.get()
            if item is None:
                return
            try:
                admitted = self.admit_relayed(*item)
            except Exception:  # admission of relayed events is best effort
                log.exception("relayed events failed")
                admitted = True
            if admitted:
                self.deliver("", {"t": "_poke"})

    def admit_relayed(self, sender: str, leaves: list[Any]) -> bool:
        """Admit the events ``sender`` relayed (at most a request's worth, bytes only),
        counting those whose signatures do not verify; whether there were any to admit."""
        values = [leaf for leaf in leaves[: self.node.limits.max_events_per_request] if type(leaf) is bytes]
        if not values:
            return False
        try:
            results = self.node.submit_leaves(values, local=False)
            self._count_forged(sender, sum(1 for r in results if r.get("code") == "bad_signature"))
        except LedgerError as exc:
            log.debug("relayed events refused: %s", exc.code)
        return True

    def _count_forged(self, sender: str, n: int) -> None:
        """Remember that ``sender`` relayed ``n`` events whose signatures do not verify."""
        if not n:
            return
        now = self.clock()
        with self._relay_lock:
            start, bad = self._relay_bad.get(sender, (now, 0))
            if now - start >= RELAY_WINDOW_MS:
                start, bad = now, 0
            self._relay_bad[sender] = (start, bad + n)
            if bad < MAX_FORGED_RELAYED <= bad + n:
                log.warning("peer %s relayed %d events with bad signatures; its events are ignored for %d s",
                            sender, bad + n, RELAY_WINDOW_MS // 1000)

    def _relay_muted(self, sender: str) -> bool:
        """Whether events relayed by ``sender`` are ignored for now.  An honest peer relays
        only events it admitted, so their signatures verify: a peer whose relayed events do
        not is faulty, and each of them costs a verification here."""
        with self._relay_lock:
            start, bad = self._relay_bad.get(sender, (0, 0))
            return bad >= MAX_FORGED_RELAYED and self.clock() - start < RELAY_WINDOW_MS

    def _carry_out(self, outs: list[Out]) -> None:
        for o in outs:
            if isinstance(o, SetTimer):
                self._seq += 1
                heapq.heappush(self._timers, (o.at_ms, self._seq, o.key))
            elif isinstance(o, Send):
                if o.to is None:
                    self._broadcast(o.msg)
                else:
                    self._send(o.to, o.msg)

    def _run(self) -> None:
        self._carry_out(self.replica.start(self.clock()))
        next_tick = self.clock() + self.TICK_MS
        while not self._stop.is_set():
            now = self.clock()
            wake = min([next_tick] + [t for t, _s, _k in self._timers[:1]])
            try:
                sender, msg = self._inbox.get(timeout=max(0.0, (wake - now) / 1000))
            except queue.Empty:
                sender, msg = "", None
            try:
                now = self.clock()
                if msg is not None:
                    self._handle(sender, msg, now)
                while self._timers and self._timers[0][0] <= now:
                    _at, _s, key = heapq.heappop(self._timers)
                    self._carry_out(self.replica.on_timer(key, now))
                if now >= next_tick:
                    next_tick = now + self.TICK_MS
                    self._carry_out(self.replica.tick(now))
                self._note_pause()
            except StorageError as exc:
                if exc.code != "storage_unavailable":
                    log.exception("consensus step failed")
                    continue
                # fail-stop: a validator that cannot log its inputs or store blocks must not
                # go on voting; the node keeps serving what it committed, /healthz says 503
                self.node.mark_fault(exc)
                log.error("consensus stopped at height %d: %s (%s); free space or fix the disk, then restart "
                          "the node", self.replica.height, exc.message, exc.code)
                return
            except Exception:  # one bad input never stops consensus
                log.exception("consensus step failed")

    def _handle(self, sender: str, msg: Any, now: int) -> None:
        if type(msg) is not dict:
            return
        t = msg.get("t")
        if t == "_poke":
            self._carry_out(self.replica.poke(now))
        elif t == "events":
            if msg.get("chain") != self.node.genesis.chain:
                self.replica.stats.drop("wrong_chain")
            elif type(msg.get("events")) is not list:
                self.replica.stats.drop("malformed")
            elif self._relay_muted(sender):
                self.replica.stats.drop("relay_muted")
            else:
                try:
                    self._events_q.put_nowait((sender, msg["events"]))
                except queue.Full:
                    self.dropped_inbox += 1
                    self.replica.stats.drop("events_queue_full")
        else:
            self._carry_out(self.replica.on_message(sender, msg, now))
