"""The chain store: blocks, certificates, log leaves, Merkle nodes, state, indexes.

Key layout (one byte of prefix, big-endian integers so keys sort by number)::

    G                     genesis (canonical bytes)
    F                     store format (one byte: :data:`STORE_FORMAT`)
    M h                   height of the last committed block
    H <height:8>          header            C <height:8>  commit certificate
    L <index:8>           log leaf          N <level:1><index:8>  Merkle node
    E <event id:32>       [height, leaf index]
    S <state key>         state value (canonical)
    T <tag> <index:8>     the tag's events  (index, not state)

Every block is committed with one synced write batch holding its header, certificate,
leaves, Merkle nodes, event index, tag index and state writes, so a crash at any
instant leaves exactly the committed chain.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from typing import Any

from ledger import codec, merkle
from ledger.blocks.builder import BuiltBlock
from ledger.blocks.certificate import CommitCertificate
from ledger.blocks.header import Header
from ledger.errors import StorageError
from ledger.genesis import Genesis
from ledger.state import genesis_writes, state_hash

from .kv import KV

STORE_FORMAT = 1
"""The layout above. A store written by a later version with another layout says so under
``F``, and this version refuses to open it (``store_too_new``) instead of misreading it; a
store from before the marker existed is format 1 and gets the marker when opened."""


def check_store_format(kv: KV) -> bytes | None:
    """The store's format marker (None for a store from before the marker), or
    :class:`StorageError` ``store_too_new`` for a later version's layout (``corrupt_store``
    for a marker no version wrote). Every reader of the layout asks this first."""
    fmt = kv.get(b"F")
    if fmt is None or fmt == bytes([STORE_FORMAT]):
        return fmt
    if len(fmt) == 1 and fmt[0] > STORE_FORMAT:
        raise StorageError(
            f"this data directory was written by a newer LambTrace (store format {fmt[0]}; this version "
            f"reads format {STORE_FORMAT}): run that version, or restore a backup with it",
            code="store_too_new")
    raise StorageError(f"this data directory's store format marker {fmt.hex()} is not one LambTrace writes",
                       code="corrupt_store")


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


class ChainStore:
    """Committed chain over a :class:`~node.kv.KV`; also the rules' state backend."""

    CACHE_MAX = 200_000

    def __init__(self, kv: KV, genesis: Genesis) -> None:
        self.kv = kv
        self.genesis = genesis
        self._lock = threading.RLock()
        self._cache: dict[str, Any] = {}
        self._absent: dict[bytes, None] = {}
        """Event ids recently looked up and not in the log (admission asks twice per event)."""
        stored = kv.get(b"G")
        fmt = check_store_format(kv)
        if stored is None:
            puts = {b"G": genesis.encode(), b"Mh": _u64(0), b"F": bytes([STORE_FORMAT])}
            for k, v in genesis_writes(genesis).items():
                puts[b"S" + k.encode()] = codec.encode(v)
            kv.write(puts, sync=True)
        elif stored != genesis.encode():
            raise StorageError(
                "this data directory holds another chain's genesis", code="genesis_mismatch"
            )
        elif fmt is None:
            kv.write({b"F": bytes([STORE_FORMAT])}, sync=True)
        self.height = int.from_bytes(kv.get(b"Mh") or _u64(0), "big")
        self.last_header: Header | None = self.header(self.height) if self.height else None
        size = self.last_header.log_size if self.last_header else 0
        self.frontier = merkle.CompactRange.from_store(size, self.get_node)
        # Ear-tag ranges are few (one per issuance) and every tagging looks one up with a
        # floor query: keep their keys sorted in memory.
        self._range_keys: list[str] = [k[1:].decode() for k, _v in kv.scan(b"Sr/")]
        if self.last_header and self.frontier.root() != self.last_header.log_root:
            raise StorageError("stored Merkle nodes do not match the last header", code="corrupt_store")

    # -- chain ------------------------------------------------------------------------
    @property
    def log_size(self) -> int:
        return self.frontier.size

    @property
    def last_hash(self) -> bytes:
        return self.last_header.hash if self.last_header else self.genesis.hash

    def header(self, height: int) -> Header | None:
        raw = self.kv.get(b"H" + _u64(height))
        return Header.decode(raw) if raw is not None else None

    def certificate(self, height: int) -> CommitCertificate | None:
        raw = self.kv.get(b"C" + _u64(height))
        return CommitCertificate.from_dict(codec.decode(raw)) if raw is not None else None

    def leaf(self, index: int) -> bytes | None:
        return self.kv.get(b"L" + _u64(index))

    def leaves(self, begin: int, end: int) -> Iterator[tuple[int, bytes]]:
        for k, v in self.kv.scan(b"L", b"L" + _u64(begin)):
            i = int.from_bytes(k[1:], "big")
            if i >= end:
                break
            yield i, v

    def block_range(self, height: int) -> tuple[int, int]:
        """The leaf indexes ``[begin, end)`` of block ``height``."""
        h = self.header(height)
        if h is None:
            raise StorageError(f"no block at height {height}", code="not_found")
        prev = self.header(height - 1) if height > 1 else None
        return (prev.log_size if prev else 0), h.log_size

    def event_location(self, event_id: bytes, *, remember_absent: bool = False) -> tuple[int, int] | None:
        """``(height, leaf index)`` of a committed event, or None.

        ``remember_absent`` caches a miss; only callers that hold the node's lock (so no
        block commits meanwhile) may ask for it: a commit forgets the ids it writes.
        """
        if event_id in self._absent:
            return None
        raw = self.kv.get(b"E" + event_id)
        if raw is None:
            if remember_absent:
                if len(self._absent) >= self.CACHE_MAX:
                    self._absent.clear()
                self._absent[event_id] = None
            return None
        height, index = codec.decode_trusted(raw)
        return int(height), int(index)

    def tag_event_indexes(self, tag: str, limit: int = 1000) -> list[int]:
        prefix = b"T" + tag.encode() + b"/"
        out = []
        for k, _v in self.kv.scan(prefix):
            out.append(int.from_bytes(k[len(prefix) :], "big"))
            if len(out) >= limit:
                break
        return out

    def get_node(self, level: int, index: int) -> bytes:
        raw = self.kv.get(b"N" + bytes([level]) + _u64(index))
        if raw is None:
            raise StorageError(f"missing Merkle node {level}/{index}", code="corrupt_store")
        return raw

    # -- StateBackend -----------------------------------------------------------------
    def state_get(self, key: str) -> Any | None:
        try:
            return self._cache[key]
        except KeyError:
            pass
        raw = self.kv.get(b"S" + key.encode())
        value = codec.decode_trusted(raw) if raw is not None else None
        if len(self._cache) >= self.CACHE_MAX:
            self._cache.clear()
        self._cache[key] = value
        return value

    def state_floor(self, prefix: str, key: str) -> tuple[str, Any] | None:
        if prefix == "r/":
            i = bisect.bisect_right(self._range_keys, key)
            if i == 0:
                return None
            k = self._range_keys[i - 1]
            return k, self.state_get(k)
        found = self.kv.floor(b"S" + prefix.encode(), b"S" + key.encode())
        if found is None:
            return None
        return found[0][1:].decode(), codec.decode_trusted(found[1])

    def has_event(self, event_id: bytes) -> bool:
        """For the rules, which run under the node's lock (see :meth:`event_location`)."""
        return self.event_location(event_id, remember_absent=True) is not None

    def state_items(self) -> Iterator[tuple[str, Any]]:
        for k, v in self.kv.scan(b"S"):
            yield k[1:].decode(), codec.decode_trusted(v)

    def state_hash(self) -> bytes:
        return state_hash(self.state_items())

    # -- writing ----------------------------------------------------------------------
    @property
    def fault(self) -> StorageError | None:
        """The write failure after which the store takes no more writes (disk full, I/O
        error), or None.  Reads still answer with the chain as committed before it."""
        return self.kv.write_fault

    def commit(self, built: BuiltBlock, cert: CommitCertificate) -> None:
        """Write ``built`` and its certificate in one synced batch, then advance."""
        h = built.header
        with self._lock:
            if h.height != self.height + 1 or h.prev != self.last_hash:
                raise StorageError(
                    f"block {h.height} does not extend the chain at {self.height}", code="not_next_block"
                )
            if built.frontier is None:
                raise RuntimeError("built block lacks its Merkle frontier")
            puts: dict[bytes, bytes] = {
                b"H" + _u64(h.height): h.encode(),
                b"C" + _u64(h.height): cert.encode(),
                b"Mh": _u64(h.height),
            }
            first = self.frontier.size
            for i, ev in enumerate(built.events):
                idx = first + i
                puts[b"L" + _u64(idx)] = ev.leaf
                puts[b"E" + ev.id] = codec.encode_canonical_value([h.height, idx])  # ints only: canonical as packed
                for tag in built.applied[i].tags:
                    puts[b"T" + tag.encode() + b"/" + _u64(idx)] = b""
            for level, index, node in built.new_nodes:
                puts[b"N" + bytes([level]) + _u64(index)] = node
            writes = built.view.writes
            for k, v in writes.items():
                puts[b"S" + k.encode()] = codec.encode(v)
            self.kv.write(puts, sync=True)  # raises (and nothing below runs) if the block is not stored
            if len(self._cache) + len(writes) >= self.CACHE_MAX:
                self._cache.clear()
            self._cache.update(writes)
            for ev in built.events:
                self._absent.pop(ev.id, None)
            for k in writes:
                if k.startswith("r/"):
                    i = bisect.bisect_left(self._range_keys, k)
                    if i == len(self._range_keys) or self._range_keys[i] != k:
                        self._range_keys.insert(i, k)
            self.height = h.height
            self.last_header = h
            self.frontier = built.frontier

    def close(self) -> None:
        self.kv.close()
