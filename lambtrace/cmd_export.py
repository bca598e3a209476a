"""``lambtrace export epcis`` and ``lambtrace report premium`` (docs/export.md).

The shell around the pure folds in :mod:`lambtrace.epcis` and :mod:`lambtrace.premium`:
it reads committed blocks from a node's API (``GET /v1/blocks/<h>/leaves``) or from a
stopped node's LevelDB, shows a progress bar on stderr, and writes the output file
(atomically: a temporary file renamed into place, so a broken-off export leaves no
half-written file behind).

Both commands read the chain from height 1: the fold needs earlier events for context
(a receipt names only its shipment; the shipment lists the lambs).  ``--since H`` limits
what is *written* to events at heights above ``H``.

Exit codes: 0 written; 2 usage, network or storage errors (``error: <code>: <message>``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Protocol

from ledger import codec
from ledger.blocks.header import Header
from ledger.errors import LedgerError, Rejected
from ledger.events import parse_leaf

from . import epcis, premium
from .config import answer_of
from .epcis import Committed

EXIT_OK = 0


class Source(Protocol):
    chain: str
    tip: int

    def blocks(self) -> Iterator[tuple[int, int, int, list[bytes]]]:
        """``(height, block time, first leaf index, leaves)`` for heights 1..tip."""
        ...

    def close(self) -> None: ...


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


class StoreSource:
    """Committed blocks read from a node's LevelDB directory.

    Raises ``LedgerError`` ``store_locked`` when a running node holds the database (use
    ``--url``), ``no_data`` when there is none, ``corrupt_store`` on missing pieces.
    """

    def __init__(self, data: str) -> None:
        from .config import open_stopped_store

        self.kv, path = open_stopped_store(data, "export")
        raw_g = self.kv.get(b"G")
        if raw_g is None:
            self.kv.close()
            raise LedgerError(f"{path} holds no chain (no genesis)", code="no_data")
        self.chain = str(codec.decode_trusted(raw_g)["chain"])
        self.tip = int.from_bytes(self.kv.get(b"Mh") or _u64(0), "big")

    def blocks(self) -> Iterator[tuple[int, int, int, list[bytes]]]:
        begin = 0
        for h in range(1, self.tip + 1):
            raw = self.kv.get(b"H" + _u64(h))
            if raw is None:
                raise LedgerError(f"the store lacks the header of block {h}", code="corrupt_store")
            header = Header.decode(raw)
            leaves: list[bytes] = []
            for i, leaf in self.kv.scan(b"L", b"L" + _u64(begin)):
                if int.from_bytes(i[1:], "big") >= header.log_size:
                    break
                leaves.append(leaf)
            if len(leaves) != header.log_size - begin:
                raise LedgerError(f"block {h} lacks some of its leaves", code="corrupt_store")
            yield h, header.time, begin, leaves
            begin = header.log_size

    def close(self) -> None:
        self.kv.close()


class ApiSource:
    """Committed blocks read over HTTP, a few requests ahead of the fold."""

    AHEAD = 8

    def __init__(self, url: str) -> None:
        from api.client import Client

        self.client = Client(url, timeout=60)
        with answer_of(url):
            st = self.client.status()
            self.chain = str(st["chain"])
            self.tip = int(st["height"])
        self.url = url

    def blocks(self) -> Iterator[tuple[int, int, int, list[bytes]]]:
        with ThreadPoolExecutor(4) as pool:
            queue: list[Future[dict[str, Any]]] = []
            nxt = 1
            while nxt <= self.tip or queue:
                while len(queue) < self.AHEAD and nxt <= self.tip:
                    queue.append(pool.submit(self.client.block_leaves, nxt))
                    nxt += 1
                d = queue.pop(0).result()
                with answer_of(self.url):
                    block = int(d["height"]), int(d["header"]["time"]), int(d["log_range"][0]), list(d["leaves"])
                yield block

    def close(self) -> None:
        self.client.session.close()


def open_source(args: argparse.Namespace) -> Source:
    return StoreSource(args.data) if args.data else ApiSource(args.url)


def committed(source: Source, *, quiet: bool = False) -> Iterator[Committed]:
    """Every committed event of ``source``, in log order, with a progress bar by block."""
    from tqdm import tqdm

    with tqdm(total=source.tip, unit="block", file=sys.stderr, disable=quiet or None,
              dynamic_ncols=True, desc="reading") as bar:
        for height, block_time, begin, leaves in source.blocks():
            for k, leaf in enumerate(leaves):
                try:
                    ev = parse_leaf(leaf)
                except Rejected as exc:
                    raise LedgerError(f"leaf {begin + k} of block {height} does not parse: {exc.message}",
                                      code="corrupt_leaf") from exc
                yield Committed(height, block_time, begin + k, ev)
            bar.update(1)


def _write_atomic(out: str, write: Any) -> None:
    """Write through ``write(fp)`` to a temporary file beside ``out``, then rename."""
    path = Path(out)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fp:
            write(fp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


def cmd_export_epcis(args: argparse.Namespace) -> int:
    if args.since < 0:
        raise LedgerError("--since is a height, 0 or more", code="bad_argument")
    source = open_source(args)
    try:
        if args.since > source.tip:
            raise LedgerError(f"--since {args.since} is beyond the chain's tip {source.tip}", code="bad_argument")
        exporter = epcis.EpcisExporter(since=args.since)
        events = epcis.exported(exporter, committed(source, quiet=args.quiet))
        counts: dict[str, int] = {}

        def write(fp: IO[str]) -> None:
            if args.format == "csv":
                counts["n"] = epcis.write_csv(fp, events)
            else:
                head = epcis.document_head(chain=source.chain, now_ms=_now_ms(), since=args.since, tip=source.tip)
                counts["n"] = epcis.write_json(fp, head, events)

        _write_atomic(args.out, write)
    finally:
        source.close()
    print(json.dumps({"out": str(args.out), "format": args.format, "chain": source.chain,
                      "since": args.since, "tip": source.tip, "events": counts["n"]}))
    return EXIT_OK


def cmd_report_premium(args: argparse.Namespace) -> int:
    source = open_source(args)
    try:
        audit = premium.PremiumAudit()
        for c in committed(source, quiet=args.quiet):
            audit.feed(c)
        report = audit.report()
        report = {"chain": source.chain, **report}
    finally:
        source.close()

    def write(fp: IO[str]) -> None:
        if args.format == "csv":
            premium.write_csv(fp, report)
        else:
            fp.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")

    if args.out:
        _write_atomic(args.out, write)
        total = report["total"]
        print(json.dumps({"out": str(args.out), "format": args.format, "lambs": total["lambs"],
                          "shortfall_fen": total["shortfall_fen"]}))
    else:
        write(sys.stdout)
    return EXIT_OK


def _source_args(s: argparse.ArgumentParser) -> None:
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="a node's API")
    src.add_argument("--data", help="a stopped node's data directory (holding chain.ldb)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub: Any) -> None:
    """Add ``export epcis`` and ``report premium`` to the ``lambtrace`` parser."""
    s = sub.add_parser("export", help="export committed events for the big-data bureau")
    ssub = s.add_subparsers(dest="export_what", required=True, metavar="WHAT")
    e = ssub.add_parser("epcis", help="EPCIS 2.0 JSON-LD document (or CSV) of the committed events")
    _source_args(e)
    e.add_argument("--out", required=True, help="output file")
    e.add_argument("--since", type=int, default=0, help="only events in blocks above this height (default 0)")
    e.add_argument("--format", choices=("json", "csv"), default="json", help="json (EPCIS JSON-LD) or csv")
    e.set_defaults(func=cmd_export_epcis)

    s = sub.add_parser("report", help="reports computed from the ledger")
    rsub = s.add_subparsers(dest="report_what", required=True, metavar="WHAT")
    r = rsub.add_parser("premium", help="traced-lamb premium audit per plant, cooperative and herder")
    _source_args(r)
    r.add_argument("--out", help="output file (default: standard output)")
    r.add_argument("--format", choices=("json", "csv"), default="json")
    r.set_defaults(func=cmd_report_premium)
