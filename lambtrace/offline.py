"""A handheld terminal's offline queue, and its upload (``lambtrace device sync``).

A terminal out on the steppe records and signs events with no network for days; each
event carries its own time (the rules accept it up to genesis ``max_lateness_ms``
late).  The queue is a directory::

    QUEUE/queue.json            {"chain": ...}  (written by the first record)
    QUEUE/events/00000001.ev    one signed event each, canonical msgpack, in order
    QUEUE/results.jsonl         one JSON line per answered event (append-only)

:func:`record` appends an event; :func:`sync` uploads the events not yet answered, in
recorded order, in batches of ``batch``.  After each batch the per-event answers are
appended (and fsynced) to ``results.jsonl``:

* ``accepted`` and ``duplicate`` (the node had it already, e.g. from an upload cut off
  after the node took it) count as *done* and are never sent again;
* ``rejected`` (with the rules' code, e.g. ``too_late``) is final: the event is
  reported and not sent again unless ``retry_rejected``.

So re-sending changes nothing (a node answers a known event ``duplicate``), order holds
within a batch and across batches (a lamb's tagging before its shipping), and an upload
cut off halfway (a dropped connection, a killed process, a torn last line in the
results log) resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger import codec
from ledger import events as ev_mod
from ledger.errors import LedgerError
from signer.software import fsync_directory

if TYPE_CHECKING:  # pragma: no cover
    from api.client import Client
    from signer import Signer

__all__ = ["SyncReport", "pending", "record", "record_event", "results", "summary", "sync"]

EVENTS = "events"
RESULTS = "results.jsonl"
META = "queue.json"
DONE = ("accepted", "duplicate")


def _events_dir(queue_dir: str | os.PathLike[str]) -> Path:
    return Path(queue_dir) / EVENTS


def queue_meta(queue_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The queue's ``queue.json`` (``{}`` when there is none yet)."""
    p = Path(queue_dir) / META
    if not p.exists():
        return {}
    meta: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
    return meta


def record(queue_dir: str | os.PathLike[str], signed_event: dict[str, Any]) -> tuple[int, str]:
    """Append a signed event (as :func:`ledger.events.sign` makes it) to the queue.

    Checks its structure (not its signature nor the rules: no network), writes it
    atomically under the next sequence number, and returns ``(seq, event id hex)``.
    Raises :class:`~ledger.errors.Rejected` for a malformed event and
    :class:`~ledger.errors.LedgerError` ``wrong_chain`` for another chain's event.
    """
    parsed = ev_mod.parse_unverified(signed_event)
    q = Path(queue_dir)
    d = _events_dir(q)
    d.mkdir(parents=True, exist_ok=True)
    meta = queue_meta(q)
    if not meta:
        (q / META).write_text(json.dumps({"chain": parsed.chain}) + "\n", encoding="utf-8")
    elif meta.get("chain") != parsed.chain:
        raise LedgerError(f"this queue holds events of chain {meta.get('chain')!r}, not {parsed.chain!r}",
                          code="wrong_chain")
    seq = max((s for s, _ in _listing(q)), default=0) + 1
    while True:
        tmp = d / f".{seq:08d}.tmp"
        tmp.write_bytes(parsed.leaf)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        try:
            os.link(tmp, d / f"{seq:08d}.ev")  # fails if another recorder took the number
        except FileExistsError:
            tmp.unlink()
            seq += 1
            continue
        tmp.unlink()
        break
    fsync_directory(d)
    return seq, parsed.id.hex()


def record_event(
    queue_dir: str | os.PathLike[str],
    signer: Signer,
    *,
    chain: str,
    kind: str,
    actor: str,
    body: dict[str, Any],
    time_ms: int | None = None,
) -> tuple[int, str]:
    """Sign an event offline with the terminal's key (for its owner ``actor``), dated
    ``time_ms`` (default now), and :func:`record` it."""
    t = int(time.time() * 1000) if time_ms is None else time_ms
    return record(queue_dir, ev_mod.sign(ev_mod.envelope(chain, kind, actor, t, body), signer))


def _listing(queue_dir: Path) -> list[tuple[int, Path]]:
    d = _events_dir(queue_dir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        if p.suffix == ".ev" and p.stem.isdigit():
            out.append((int(p.stem), p))
    out.sort()
    return out


def results(queue_dir: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """The last recorded answer for each sequence number (a torn last line is ignored)."""
    p = Path(queue_dir) / RESULTS
    out: dict[int, dict[str, Any]] = {}
    if not p.exists():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash mid-write: that batch is simply sent again
        if isinstance(rec, dict) and isinstance(rec.get("seq"), int):
            out[rec["seq"]] = rec
    return out


def pending(queue_dir: str | os.PathLike[str], *, retry_rejected: bool = False) -> list[tuple[int, Path]]:
    """Queued events still to upload, in recorded order."""
    done = results(queue_dir)
    todo = []
    for seq, path in _listing(Path(queue_dir)):
        st = done.get(seq, {}).get("status")
        if st in DONE or (st == "rejected" and not retry_rejected):
            continue
        todo.append((seq, path))
    return todo


def summary(queue_dir: str | os.PathLike[str]) -> dict[str, int]:
    """``{events, done, rejected, pending}`` over the whole queue (all syncs so far)."""
    done = results(queue_dir)
    out = {"events": 0, "done": 0, "rejected": 0, "pending": 0}
    for seq, _path in _listing(Path(queue_dir)):
        out["events"] += 1
        st = done.get(seq, {}).get("status")
        out["done" if st in DONE else "rejected" if st == "rejected" else "pending"] += 1
    return out


@dataclass
class SyncReport:
    """What one :func:`sync` did: counts of this run and every event's answer."""

    sent: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    batches: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    """This run's per-event answers: ``{seq, id, status, code?, message?, state?}``."""
    remaining: int = 0
    """Events still not answered (0 unless the upload stopped early)."""

    @property
    def complete(self) -> bool:
        """Every queued event was answered and none was rejected."""
        return self.remaining == 0 and self.rejected == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "batches": self.batches,
            "remaining": self.remaining,
            "rejections": [r for r in self.results if r["status"] == "rejected"],
        }


def _batches(todo: list[tuple[int, Path]], size: int) -> Iterator[list[tuple[int, Path]]]:
    for i in range(0, len(todo), size):
        yield todo[i:i + size]


def sync(
    queue_dir: str | os.PathLike[str],
    client: Client,
    *,
    batch: int = 200,
    progress: bool = True,
    wait: bool = False,
    retry_rejected: bool = False,
) -> SyncReport:
    """Upload the queue's unanswered events in order, ``batch`` per request.

    Each batch's answers are made durable before the next batch is sent, so a sync
    cut off at any point (an exception from ``client``, a killed process) resumes where
    it stopped when run again; events the node took before the cut answer
    ``duplicate`` and count as done.  ``wait`` asks the node to answer once the batch is
    committed.  Raises what ``client.submit`` raises (``TransportError``,
    ``ClientError``) after recording the batches already answered.
    """
    if batch < 1:
        raise LedgerError(f"--batch takes 1 or more events per request, not {batch}", code="bad_argument")
    q = Path(queue_dir)
    if not q.is_dir():
        raise LedgerError(f"no queue directory {str(q)!r}", code="not_found")
    if not (q / META).is_file():
        raise LedgerError(f"{str(q)!r} is not a terminal's queue (no {META}; `lambtrace device record` makes one)",
                          code="not_found")
    todo = pending(q, retry_rejected=retry_rejected)
    log_path = q / RESULTS
    if log_path.exists() and log_path.stat().st_size:
        with open(log_path, "rb+") as f:  # end a line torn by a crash before appending
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
    report = SyncReport(remaining=len(todo))
    bar: Any = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="event", desc="sync", leave=True)
    try:
        with open(log_path, "a", encoding="utf-8") as log:
            for chunk in _batches(todo, batch):
                values = [codec.decode(path.read_bytes()) for _seq, path in chunk]
                answers = client.submit(values, wait=wait)
                if len(answers) != len(chunk):
                    raise LedgerError(f"the node answered {len(answers)} results for {len(chunk)} events",
                                      code="bad_response")
                lines = []
                for (seq, _path), ans in zip(chunk, answers):
                    rec: dict[str, Any] = {"seq": seq, "id": ans.get("id"), "status": ans.get("status")}
                    for k in ("code", "message", "state", "height"):
                        if k in ans:
                            rec[k] = ans[k]
                    lines.append(json.dumps(rec, ensure_ascii=False))
                    report.results.append(rec)
                    if rec["status"] == "accepted":
                        report.accepted += 1
                    elif rec["status"] == "duplicate":
                        report.duplicate += 1
                    else:
                        report.rejected += 1
                log.write("\n".join(lines) + "\n")
                log.flush()
                os.fsync(log.fileno())
                report.sent += len(chunk)
                report.batches += 1
                report.remaining -= len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                    bar.set_postfix(rejected=report.rejected)
    finally:
        if bar is not None:
            bar.close()
    return report
