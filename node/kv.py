"""Ordered key-value storage: the ``Storage`` protocol, LevelDB and in-memory.

The chain store is written once against :class:`KV`; LevelDB (plyvel) backs real
nodes, :class:`MemoryKV` backs unit tests and the simulator.  ``write`` is atomic: a
crash leaves either all of a batch or none of it.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from ledger.errors import StorageError


class KV(Protocol):
    write_fault: StorageError | None
    """Set once a write failed in a way that makes every later write unsafe; from then
    on ``write`` raises ``storage_unavailable`` without writing."""

    def get(self, key: bytes) -> bytes | None: ...

    def write(self, puts: Mapping[bytes, bytes], deletes: tuple[bytes, ...] = (), *, sync: bool = True) -> None:
        """Apply all puts and deletes atomically; with ``sync`` they are durable on return."""
        ...

    def floor(self, prefix: bytes, key: bytes) -> tuple[bytes, bytes] | None:
        """The greatest entry whose key starts with ``prefix`` and is ``<= key``."""
        ...

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with ``prefix`` (and is ``>= start``), ascending."""
        ...

    def close(self) -> None: ...


class MemoryKV:
    """A sorted in-memory map; same semantics as LevelDB, nothing durable."""

    def __init__(self) -> None:
        self.write_fault: StorageError | None = None  # memory does not fill up; tests may set it
        self._d: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        return self._d.get(key)

    def write(self, puts: Mapping[bytes, bytes], deletes: tuple[bytes, ...] = (), *, sync: bool = True) -> None:
        if self.write_fault is not None:
            raise StorageError(self.write_fault.message, code="storage_unavailable")
        for k in deletes:
            if k in self._d:
                del self._d[k]
                self._keys.pop(bisect.bisect_left(self._keys, k))
        new = [k for k in puts if k not in self._d]
        self._d.update(puts)
        if new:
            if len(new) > 64:
                self._keys = sorted(self._d)
            else:
                for k in new:
                    bisect.insort(self._keys, k)

    def floor(self, prefix: bytes, key: bytes) -> tuple[bytes, bytes] | None:
        i = bisect.bisect_right(self._keys, key)
        if i and self._keys[i - 1].startswith(prefix):
            k = self._keys[i - 1]
            return k, self._d[k]
        return None

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        i = bisect.bisect_left(self._keys, max(prefix, start or b""))
        keys = self._keys
        while i < len(keys) and keys[i].startswith(prefix):
            yield keys[i], self._d[keys[i]]
            i += 1

    def close(self) -> None:
        pass


class LevelKV:
    """LevelDB through plyvel; every block is one synced write batch."""

    def __init__(self, path: str, *, create: bool = True) -> None:
        import plyvel  # the only place the project touches LevelDB

        try:
            # A bloom filter makes the many lookups of keys that are not there (new ear tags,
            # new event ids) cheap; the block cache keeps hot state close.
            self._db = plyvel.DB(
                path,
                create_if_missing=create,
                paranoid_checks=True,
                bloom_filter_bits=10,
                lru_cache_size=64 * 1024 * 1024,
                write_buffer_size=32 * 1024 * 1024,
            )
        except Exception as exc:  # plyvel.Error, IOError: another process holds the lock, ...
            raise StorageError(f"cannot open LevelDB at {path}: {exc}", code="storage_unavailable") from exc
        self._db_error: type[Exception] = plyvel.Error
        self.write_fault: StorageError | None = None
        """The first failed write.  LevelDB may leave part of a failed record in its log
        file; a later write appended after it (once space is free again) is acknowledged
        but makes the log unreadable at the next open (``Corruption: checksum mismatch``
        with ``paranoid_checks``; without them, every later write is lost).  So after one
        failure this handle refuses every write; reopening (a restart) recovers the log
        up to the last write that succeeded and starts a new log file."""

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def write(self, puts: Mapping[bytes, bytes], deletes: tuple[bytes, ...] = (), *, sync: bool = True) -> None:
        """Raises :class:`StorageError` ``storage_unavailable`` when LevelDB fails the write
        (disk full, I/O error) and for every write after such a failure (see ``write_fault``)."""
        if self.write_fault is not None:
            raise StorageError(f"the store refuses writes since one failed ({self.write_fault.message}); "
                               "free space or fix the disk, then restart the node", code="storage_unavailable")
        try:
            # transaction: a batch that raises while being filled is not written at all
            with self._db.write_batch(sync=sync, transaction=True) as wb:
                for k in deletes:
                    wb.delete(k)
                for k, v in puts.items():
                    wb.put(k, v)
        except self._db_error as exc:
            message = f"LevelDB write failed: {exc}"
            self.write_fault = StorageError(message, code="storage_unavailable")
            raise StorageError(message, code="storage_unavailable") from exc
        except Exception as exc:  # a key or value of the wrong type: nothing was written
            raise StorageError(f"LevelDB write failed: {exc}") from exc

    def floor(self, prefix: bytes, key: bytes) -> tuple[bytes, bytes] | None:
        it = self._db.iterator(start=prefix, stop=key + b"\x00", reverse=True)
        try:
            for k, v in it:
                return k, v
            return None
        finally:
            it.close()

    def scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        if start is None:
            it = self._db.iterator(prefix=prefix)
        else:
            it = self._db.iterator(start=max(start, prefix), stop=_prefix_end(prefix))
        try:
            yield from it
        finally:
            it.close()

    def snapshot(self) -> Any:
        """A plyvel snapshot (``get``, ``iterator``, ``close``): one point in time for
        readers that need several reads to agree (backups)."""
        return self._db.snapshot()

    def snapshot_scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        snap = self._db.snapshot()
        it = snap.iterator(prefix=prefix)
        try:
            yield from it
        finally:
            it.close()
            snap.close()

    def close(self) -> None:
        self._db.close()


def _prefix_end(prefix: bytes) -> bytes | None:
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return None
