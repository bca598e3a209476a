"""Backups of a node's store: a consistent snapshot as one framed, hashed byte stream.

A backup is everything in the node's LevelDB (the chain under ``G M H C L N E S T`` and
any local prefixes such as check codes) read from ONE LevelDB snapshot in key order, so
it holds exactly the chain as committed at one instant even while the node keeps
committing.  It does not hold the consensus WAL or the validator's sign guard, which
live beside ``chain.ldb`` (docs/backup.md).

Format (version 1), all integers big-endian::

    MAGIC                      b"LAMBTRACE-BACKUP" (16 bytes)
    u32 n, header              canonical msgpack map: format, chain, genesis_hash,
                               height, log_size, log_root, created_ms
    records                    u32 key length (>= 1), key, u32 value length, value
    u32 0                      end of records (keys are never empty)
    u64 records                how many records came
    32 bytes                   SHA-256 of every byte before it

:func:`snapshot_stream` writes it (a generator of bounded chunks), :func:`read_backup`
checks and reads it back, :func:`restore` writes a fresh LevelDB from it and opens the
result with :class:`~node.store.ChainStore` to check it.  Errors carry stable codes:
``backup_format`` (not a backup, or another version), ``backup_corrupt`` (truncated,
badly framed, or the hash does not match), ``backup_inconsistent`` (the records do not
make the chain the header names), ``store_too_new`` (the records are a later version's
layout), ``genesis_mismatch``, ``target_not_empty``,
``target_unwritable``, ``target_unreadable``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ledger import codec, merkle
from ledger.blocks.header import Header
from ledger.errors import LedgerError, StorageError
from ledger.genesis import Genesis

from .kv import KV, LevelKV, MemoryKV

MAGIC = b"LAMBTRACE-BACKUP"
FORMAT = 1
CHUNK = 256 * 1024
"""Bytes per chunk the writer yields: memory stays bounded whatever the store's size."""
MAX_FIELD = 64 * 1024 * 1024
"""No key, value or header is larger than this; a longer length means a corrupt file."""
KEEP_ON_RESTORE = frozenset({"sign-guard.json"})
"""Files a restore target may already hold: a validator keeps its own sign guard."""
RESTORING = "chain.ldb.restoring"
"""Where a restore writes the LevelDB before renaming it to ``chain.ldb``."""


class BackupError(LedgerError):
    code = "backup_corrupt"


@dataclass(frozen=True)
class BackupHeader:
    chain: str
    genesis_hash: bytes
    height: int
    log_size: int
    log_root: bytes
    created_ms: int
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "chain": self.chain, "genesis_hash": self.genesis_hash,
                "height": self.height, "log_size": self.log_size, "log_root": self.log_root,
                "created_ms": self.created_ms}

    def to_json(self) -> dict[str, Any]:
        return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, d: Any) -> BackupHeader:
        try:
            return cls(chain=str(d["chain"]), genesis_hash=bytes(d["genesis_hash"]), height=int(d["height"]),
                       log_size=int(d["log_size"]), log_root=bytes(d["log_root"]),
                       created_ms=int(d["created_ms"]), format=int(d["format"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"the backup header is malformed: {exc}") from exc


# --------------------------------------------------------------------------- snapshots


class _Snapshot:
    """A point-in-time view of a KV: ``get`` and an ascending scan of everything."""

    def __init__(self, kv: KV) -> None:
        self._close: Callable[[], None] = lambda: None
        if isinstance(kv, LevelKV):
            snap = kv.snapshot()  # get and scan on ONE point in time
            self.get: Callable[[bytes], bytes | None] = snap.get
            self._iter: Callable[[], Iterator[tuple[bytes, bytes]]] = snap.iterator
            self._close = snap.close
        elif isinstance(kv, MemoryKV):
            items = dict(kv.scan(b""))  # a copy: later writes do not show
            self.get = items.get
            self._iter = lambda: iter(sorted(items.items()))
        else:
            raise StorageError(f"cannot take a snapshot of {type(kv).__name__}", code="backup_unsupported")

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        it = self._iter()
        try:
            yield from it
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        self._close()


def _header_of(snap: _Snapshot) -> BackupHeader:
    raw_g = snap.get(b"G")
    if raw_g is None:
        raise StorageError("the store holds no genesis: nothing to back up", code="empty_store")
    g = Genesis.decode(raw_g)
    height = int.from_bytes(snap.get(b"Mh") or bytes(8), "big")
    log_size, log_root = 0, merkle.EMPTY_ROOT
    if height:
        raw_h = snap.get(b"H" + height.to_bytes(8, "big"))
        if raw_h is None:
            raise StorageError(f"the store lacks its tip header {height}", code="corrupt_store")
        h = Header.decode(raw_h)
        log_size, log_root = h.log_size, h.log_root
    return BackupHeader(chain=g.chain, genesis_hash=g.hash, height=height, log_size=log_size,
                        log_root=log_root, created_ms=int(time.time() * 1000))


class SnapshotStream:
    """A backup of ``kv`` as it is now: :attr:`header` is known at once, iterate for
    the bytes (chunks of about :data:`CHUNK`).  The snapshot is released when the
    iteration ends or :meth:`close` is called (a client that hangs up)."""

    def __init__(self, kv: KV, *, chunk: int = CHUNK) -> None:
        self._snap = _Snapshot(kv)
        try:
            self.header = _header_of(self._snap)
        except BaseException:
            self._snap.close()
            raise
        self.chunk = chunk
        self.records = 0
        self.bytes = 0
        self._gen = self._generate()

    def __iter__(self) -> Iterator[bytes]:
        return self._gen

    def __next__(self) -> bytes:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()
        self._snap.close()

    def _generate(self) -> Generator[bytes, None, None]:
        digest = hashlib.sha256()
        buf = bytearray()

        def flush() -> bytes:
            out = bytes(buf)
            digest.update(out)
            self.bytes += len(out)
            buf.clear()
            return out

        try:
            head = codec.encode(self.header.to_dict())
            buf += MAGIC + struct.pack(">I", len(head)) + head
            pack = struct.Struct(">I").pack
            for k, v in self._snap.items():
                buf += pack(len(k)) + k + pack(len(v)) + v
                self.records += 1
                if len(buf) >= self.chunk:
                    yield flush()
            buf += struct.pack(">IQ", 0, self.records)
            last = flush()
            tail = digest.digest()
            self.bytes += len(tail)
            yield last + tail
        finally:
            self._snap.close()


def snapshot_stream(kv: KV, *, chunk: int = CHUNK) -> SnapshotStream:
    """Take a snapshot of ``kv`` now; see :class:`SnapshotStream`."""
    return SnapshotStream(kv, chunk=chunk)


# --------------------------------------------------------------------------- reading


class _HashingReader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.digest = hashlib.sha256()
        self.pos = 0

    def read(self, n: int, what: str) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise BackupError(f"the backup ends early (truncated) while reading {what} at byte {self.pos}")
        self.digest.update(data)
        self.pos += n
        return data


def read_backup(f: BinaryIO, on_record: Callable[[bytes, bytes], None] | None = None,
                progress: Callable[[int], None] | None = None) -> tuple[BackupHeader, int]:
    """Read a backup from ``f``, calling ``on_record(key, value)`` for each record in
    order; returns ``(header, records)`` once the trailing hash has been checked.

    Raises :class:`BackupError` (``backup_format``, ``backup_corrupt``).  Records are
    handed out before the hash is checked: a caller that writes them must discard what
    it wrote when this raises.
    """
    r = _HashingReader(f)
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise BackupError("this is not a LambTrace backup (bad magic)", code="backup_format")
    r.digest.update(magic)
    r.pos = len(magic)
    (n,) = struct.unpack(">I", r.read(4, "the header length"))
    if n > MAX_FIELD:
        raise BackupError(f"header length {n} is implausible")
    try:
        head_raw = codec.decode(r.read(n, "the header"))
    except LedgerError as exc:
        raise BackupError(f"the backup header does not decode: {exc.message}") from exc
    fmt = head_raw.get("format") if isinstance(head_raw, dict) else None
    if fmt != FORMAT:
        raise BackupError(f"backup format {fmt!r} is not supported (this build reads {FORMAT})",
                          code="backup_format")
    header = BackupHeader.from_dict(head_raw)
    records = 0
    last_key = b""
    while True:
        (kl,) = struct.unpack(">I", r.read(4, "a key length"))
        if kl == 0:
            break
        if kl > MAX_FIELD:
            raise BackupError(f"key length {kl} at byte {r.pos - 4} is implausible")
        k = r.read(kl, "a key")
        (vl,) = struct.unpack(">I", r.read(4, "a value length"))
        if vl > MAX_FIELD:
            raise BackupError(f"value length {vl} at byte {r.pos - 4} is implausible")
        v = r.read(vl, "a value")
        if k <= last_key:
            raise BackupError(f"records out of key order at byte {r.pos}")
        last_key = k
        records += 1
        if on_record is not None:
            on_record(k, v)
        if progress is not None:
            progress(r.pos)
    (count,) = struct.unpack(">Q", r.read(8, "the record count"))
    expected = r.digest.digest()
    tail = f.read(32)
    if len(tail) != 32:
        raise BackupError("the backup ends early (truncated): the trailing SHA-256 is missing")
    if tail != expected:
        raise BackupError("the backup's SHA-256 does not match its contents: the file is corrupt")
    if f.read(1):
        raise BackupError("the backup has bytes after its trailing SHA-256")
    if count != records:
        raise BackupError(f"the backup says {count} records but holds {records}")
    if progress is not None:
        progress(r.pos + 32)
    return header, records


# --------------------------------------------------------------------------- restoring


def check_target(data: Path) -> None:
    """Refuse a data directory that holds anything but :data:`KEEP_ON_RESTORE`."""
    try:
        if not data.exists():
            return
        if not data.is_dir():
            raise LedgerError(f"cannot restore into {data}: it is a file, not a directory", code="target_unwritable")
        # a restore killed half-way leaves its scratch copy: the next one replaces it
        other = sorted(p.name for p in data.iterdir() if p.name not in KEEP_ON_RESTORE | {RESTORING})
    except OSError as exc:  # e.g. a directory on the way this user may not search or list
        raise LedgerError(f"cannot read {data}: {_why(exc)}", code="target_unreadable") from exc
    if other:
        raise LedgerError(f"{data} is not empty ({', '.join(other[:5])}{', ...' if len(other) > 5 else ''}); "
                          "restore needs an empty data directory", code="target_not_empty")


def _why(exc: OSError) -> str:
    """The cause of ``exc`` in words ("Permission denied"), without Python's decoration."""
    return exc.strerror or str(exc)


def _prepare_target(data: Path, tmp: Path) -> list[Path]:
    """Create ``data`` (and its missing parents) and the empty directory ``tmp`` in it, and
    check a file can be written there, before LevelDB is asked to (whose own answer to an
    unwritable directory is a puzzling "LOCK: No such file or directory").  Returns the
    directories it created, parents first: the caller removes them again on failure.
    Raises :class:`LedgerError` ``target_unwritable`` naming the path and the cause."""
    missing: list[Path] = []
    p = data
    try:
        while not p.exists() and not p.is_symlink() and p != p.parent:
            missing.append(p)
            p = p.parent
        if not p.is_dir():  # e.g. --data /srv/backup.ltb/node: a file where a directory must be
            what = ("a file" if p.is_file() else "a broken symbolic link" if p.is_symlink() and not p.exists()
                    else "not a directory")
            raise LedgerError(f"cannot create {data}: Not a directory ({p} is {what})", code="target_unwritable")
    except OSError as exc:
        raise LedgerError(f"cannot create {data}: {_why(exc)}", code="target_unwritable") from exc
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                os.mkdir(d)
            except OSError as exc:
                where = "" if d == data else f" (creating {d})"
                raise LedgerError(f"cannot create {data}: {_why(exc)}{where}", code="target_unwritable") from exc
            created.append(d)
        try:
            os.mkdir(tmp)
            probe = tmp / "probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise LedgerError(f"cannot write {data}: {_why(exc)}", code="target_unwritable") from exc
    except BaseException:
        _remove_created(tmp, created)
        raise
    return created


def _remove_created(tmp: Path, created: list[Path]) -> None:
    """Undo :func:`_prepare_target` and whatever was written into ``tmp``: nothing is left."""
    shutil.rmtree(tmp, ignore_errors=True)
    for d in reversed(created):
        try:
            d.rmdir()  # only if still empty: never anything the user put there meanwhile
        except OSError:
            break


def restore(src: Path, data: Path, *, genesis: Genesis | None = None,
            progress: Callable[[int], None] | None = None, batch_bytes: int = 8 * 1024 * 1024) -> dict[str, Any]:
    """Restore the backup file ``src`` into the data directory ``data`` (``chain.ldb``).

    The LevelDB is written beside its final place and renamed in only once the hash,
    the genesis (against ``genesis`` if given) and the chain (opened with
    :class:`~node.store.ChainStore`: height, log size and Merkle frontier against the
    backup's header) all check out; on any failure nothing is left behind (not even the
    data directory, if this call created it).  A data directory that cannot be created or
    written is refused up front (``target_unwritable``, naming the path and the cause).
    """
    from .store import ChainStore

    check_target(data)
    final = data / "chain.ldb"
    tmp = data / RESTORING
    if tmp.exists():
        shutil.rmtree(tmp)
    created = _prepare_target(data, tmp)
    try:
        kv = LevelKV(str(tmp))
    except BaseException:
        _remove_created(tmp, created)
        raise
    closed = False
    try:
        puts: dict[bytes, bytes] = {}
        size = [0]

        def on_record(k: bytes, v: bytes) -> None:
            puts[k] = v
            size[0] += len(k) + len(v)
            if size[0] >= batch_bytes:
                kv.write(puts, sync=False)
                puts.clear()
                size[0] = 0

        with open(src, "rb") as f:
            header, records = read_backup(f, on_record, progress)
        if puts:
            kv.write(puts, sync=True)
        raw_g = kv.get(b"G")
        if raw_g is None:
            raise BackupError("the backup holds no genesis", code="backup_inconsistent")
        stored_genesis = Genesis.decode(raw_g)
        if stored_genesis.hash != header.genesis_hash or stored_genesis.chain != header.chain:
            raise BackupError("the backup's genesis record differs from its header", code="backup_inconsistent")
        if genesis is not None and genesis.hash != header.genesis_hash:
            raise BackupError(f"the backup is of chain {header.chain} (genesis {header.genesis_hash.hex()[:16]}…), "
                              f"not of the given genesis {genesis.chain} ({genesis.hash.hex()[:16]}…)",
                              code="genesis_mismatch")
        try:
            store = ChainStore(kv, stored_genesis)
        except StorageError as exc:
            raise BackupError(f"the restored store does not open: {exc.message}",
                              code="store_too_new" if exc.code == "store_too_new" else "backup_inconsistent") from exc
        if (store.height, store.log_size, store.frontier.root()) != (header.height, header.log_size,
                                                                     header.log_root):
            raise BackupError(
                f"the restored chain (height {store.height}, log size {store.log_size}) does not match the "
                f"backup's header (height {header.height}, log size {header.log_size})", code="backup_inconsistent")
        kv.write({}, sync=True)
        kv.close()
        closed = True
        os.replace(tmp, final)
    except BaseException:
        if not closed:
            kv.close()
        _remove_created(tmp, created)
        raise
    return {"restored": True, "data": str(data), "records": records, **header.to_json()}


def write_backup(chunks: Iterator[bytes], out: Path, progress: Callable[[int], None] | None = None
                 ) -> tuple[BackupHeader, int, int]:
    """Write ``chunks`` to ``out`` atomically: a temporary file, fsync, read back and
    checked with :func:`read_backup` (a stream cut short never becomes ``out``), rename.
    Returns ``(header, records, bytes)``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    total = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                total += len(chunk)
                if progress is not None:
                    progress(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        with open(tmp, "rb") as f:
            header, records = read_backup(f)
        os.replace(tmp, out)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return header, records, total
