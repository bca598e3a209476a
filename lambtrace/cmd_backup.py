"""``lambtrace backup`` and ``lambtrace restore`` (docs/backup.md).

``backup --url`` asks a running node for ``GET /v1/backup`` (the node holds the
LevelDB lock, so it takes the snapshot itself); ``backup --data`` reads a stopped
node's ``chain.ldb`` directly.  Either way the file is written atomically and read
back before it gets its name.  ``restore`` writes a fresh ``chain.ldb`` and checks it
(:func:`node.backup.restore`).

Exit codes: 0 done; 1 the backup is refused (corrupt, another genesis, inconsistent);
2 usage, file, network or storage errors (e.g. a ``--data`` directory that cannot be
created or written: ``target_unwritable``, naming the path and the cause).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError

from .config import load_genesis

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def register(sub: Any) -> None:
    """Add ``backup`` and ``restore`` to the ``lambtrace`` parser."""
    s = sub.add_parser("backup", help="write a consistent snapshot of a node's store to a file")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="a running node's API (it must let this host take backups)")
    src.add_argument("--data", help="a STOPPED node's data directory (holding chain.ldb)")
    s.add_argument("--out", required=True, help="the backup file to write")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_backup)

    s = sub.add_parser("restore", help="restore a backup into an empty data directory")
    s.add_argument("--in", dest="src", required=True, help="the backup file")
    s.add_argument("--data", required=True, help="the data directory to create (empty, or only a sign guard)")
    s.add_argument("--genesis", help="the genesis JSON you trust: the backup must be of its chain")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_restore)


def _http_chunks(url: str) -> tuple[Iterator[bytes], int | None, Any]:
    import requests

    try:
        resp = requests.get(url.rstrip("/") + "/v1/backup", stream=True, timeout=(10, 120))
    except requests.RequestException as exc:
        raise LedgerError(f"cannot reach {url}: {exc}", code="unreachable") from exc
    if resp.status_code != 200:
        try:
            err = resp.json()["error"]
            code, message = str(err["code"]), str(err["message"])
        except (ValueError, KeyError, TypeError):
            code, message = f"http_{resp.status_code}", resp.text[:200]
        resp.close()
        raise LedgerError(f"{url} refused the backup: {message}", code=code)

    def chunks() -> Iterator[bytes]:
        try:
            yield from resp.iter_content(chunk_size=256 * 1024)
        except requests.RequestException as exc:
            raise LedgerError(f"the backup stream from {url} broke off: {exc}", code="unreachable") from exc
        finally:
            resp.close()

    height = resp.headers.get("X-LambTrace-Height")
    return chunks(), int(height) if height and height.isdigit() else None, resp


def cmd_backup(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from node.backup import BackupError, snapshot_stream, write_backup

    out = Path(args.out)
    kv = None
    if args.url:
        chunks, height, _resp = _http_chunks(args.url)
        source = f"url:{args.url}"
    else:
        from node.kv import LevelKV

        path = Path(args.data) / "chain.ldb"
        if not path.is_dir():
            raise LedgerError(f"{path} does not exist", code="storage_unavailable")
        kv = LevelKV(str(path), create=False)
        stream = snapshot_stream(kv)
        chunks, height = iter(stream), stream.header.height
        source = f"data:{args.data}"
    bar = tqdm(unit="B", unit_scale=True, file=sys.stderr, disable=args.quiet, dynamic_ncols=True,
               desc=f"backup{'' if height is None else f' @{height}'}")
    try:
        header, records, size = write_backup(chunks, out, progress=bar.update)
    except BackupError as exc:
        print(f"error: {exc.code}: the backup came out broken: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        bar.close()
        if kv is not None:
            kv.close()
    print(json.dumps({"backup": str(out), "source": source, "bytes": size, "records": records,
                      **header.to_json()}, ensure_ascii=False))
    return EXIT_OK


def _check_readable(src: Path) -> None:
    """Refuse a backup file that is not there or cannot be read, naming the cause, before
    anything is created in the target."""
    try:
        if src.is_dir():
            raise LedgerError(f"cannot read {src}: it is a directory, not a backup file", code="backup_missing")
        with open(src, "rb"):
            pass
    except FileNotFoundError as exc:
        raise LedgerError(f"cannot read {src}: {exc.strerror}", code="backup_missing") from exc
    except OSError as exc:
        raise LedgerError(f"cannot read {src}: {exc.strerror or exc}", code="backup_unreadable") from exc


def cmd_restore(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from node.backup import BackupError, restore

    src = Path(args.src)
    _check_readable(src)
    genesis = load_genesis(args.genesis) if args.genesis else None
    bar = tqdm(total=src.stat().st_size, unit="B", unit_scale=True, file=sys.stderr, disable=args.quiet,
               dynamic_ncols=True, desc="restore")

    def progress(pos: int) -> None:
        if pos - bar.n >= 1 << 20 or pos == bar.total:
            bar.update(pos - bar.n)

    try:
        summary = restore(src, Path(args.data), genesis=genesis, progress=progress)
    except BackupError as exc:
        print(json.dumps({"restored": False, "code": exc.code, "message": exc.message}, ensure_ascii=False))
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        bar.close()
    print(json.dumps(summary, ensure_ascii=False))
    print(f"restored: height {summary['height']}, log size {summary['log_size']}, {summary['records']} records "
          f"into {args.data}/chain.ldb", file=sys.stderr)
    return EXIT_OK
