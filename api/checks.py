"""Scan counts and check-code verifications: a node's own records, never ledger events.

A label carries a public id (in its QR link) and a scratch-off check code.  Its
``label.issue`` entry commits to the code (:func:`check_commitment`); the ledger holds no
preimage.  When a consumer opens the page the node counts a scan; when they enter the
code the node compares its commitment with the ledger's (in constant time) and records
the first success with its time and the coarse place the consumer chose to give (a
region or city string, at most 64 characters; never an IP address).  Later checkers see
"first verified at ...".  A label scanned more than a threshold of times, or verified
from more than one distinct place, is flagged ``suspect_clone`` with its reasons.

These records are high-volume, anonymous and need no consensus (docs/adr/0008), so each
node keeps them in its own key-value store under the prefix ``V`` — beside the chain's
keys (``node.store``), never touching them::

    V <label> 0x00 n            scans (u64)
    V <label> 0x00 k            successful verifications (u64)
    V <label> 0x00 f            first verification: canonical {"at", "place"}
    V <label> 0x00 p <place>    a distinct place (normalised) of a successful check: {"at"}

A client's scans of one label count once per ``scan_window_ms`` (an hour), so reloading
the page, or a script posting scans in a loop, cannot flag a genuine label: the count is
of scanners, as a clone's many buyers would be.  Wrong codes are rate-limited in memory
per (client key, label) and per label.  Both are bounded LRU maps.  The client key is a
keyed hash of the remote address (an IPv6 address's /64 network, which one subscriber
holds whole) with a key made at start-up, so it is not even stable across restarts and
never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import threading
import unicodedata
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from ledger import codec
from node.kv import KV

from .errors import ApiError

PREFIX = b"V"
CHECK_TAG = b"lambtrace/check/v1"
CHECK_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_LEN = 12
PLACE_MAX = 64
MAX_PLACES = 32
"""Distinct places kept per label (two are enough to flag; the cap bounds storage)."""

_READ_AS = {"O": "0", "I": "1", "L": "1"}
_SEPARATORS = " -\t\u2010\u2011\u2012\u2013\u2014\u2212"  # spaces and the dashes phones type


def check_commitment(label: str, code: str) -> bytes:
    """``sha256("lambtrace/check/v1" 0x00 label 0x00 code)`` for a canonical code; the same
    function as :func:`lambtrace.season.check_commitment` (a test keeps them equal)."""
    return hashlib.sha256(CHECK_TAG + b"\x00" + label.encode() + b"\x00" + code.encode()).digest()


def normalize_code(text: str) -> str | None:
    """The canonical form of a typed code (upper case, no spaces or dashes, O read as 0,
    I and L as 1), or ``None`` when it cannot be a check code.  Full-width letters, digits,
    dashes and spaces (a Chinese input method's) read as their ASCII forms (NFKC)."""
    if len(text) > 64:
        return None
    out = []
    for ch in unicodedata.normalize("NFKC", text).upper():
        if ch in _SEPARATORS:
            continue
        ch = _READ_AS.get(ch, ch)
        if ch not in CHECK_ALPHABET:
            return None
        out.append(ch)
    return "".join(out) if len(out) == CHECK_LEN else None


def normalize_place(text: object) -> str | None:
    """A coarse place as given (trimmed, inner whitespace collapsed, NFC), ``None`` for
    none; raises ``bad_place`` for anything but a string of at most 64 printable characters."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ApiError("bad_place", "place is a string (a region or city)")
    place = " ".join(unicodedata.normalize("NFC", text).split())
    if len(place) > PLACE_MAX or any(unicodedata.category(c)[0] == "C" for c in place):
        raise ApiError("bad_place", f"place is at most {PLACE_MAX} printable characters (a region or city)")
    return place or None


_REGION_SUFFIXES = sorted(("特别行政区", "维吾尔自治区", "壮族自治区", "回族自治区", "自治区", "自治州", "自治县",
                           "地区", "省", "市", "盟", "县", "区", "旗"), key=len, reverse=True)


def place_key(place: str) -> str:
    """How places are compared: full-width forms, case and spaces aside, and without one
    administrative suffix, so "北京" and "北京市", "锡林郭勒" and "锡林郭勒盟" are one place
    (checks of one pack by one household must not look like a clone in two cities)."""
    text = "".join(unicodedata.normalize("NFKC", place).casefold().split())
    for suffix in _REGION_SUFFIXES:
        if text.endswith(suffix) and len(text) - len(suffix) >= 2:
            return text[: -len(suffix)]
    return text


@dataclass(frozen=True)
class CheckConfig:
    scan_threshold: int = 50
    """More scans than this flag the label."""
    wrong_per_client: int = 5
    """Wrong codes one client may send for one label per window."""
    wrong_per_label: int = 50
    """Wrong codes all clients together may send for one label per window."""
    window_ms: int = 600_000
    scan_window_ms: int = 3_600_000
    """A client's scans of one label count once per this window."""
    max_tracked: int = 100_000
    """Entries each in-memory limiter keeps (least recently used go first)."""

    @classmethod
    def from_config(cls, config: Any) -> CheckConfig:
        d = cls()
        return cls(
            scan_threshold=int(config.get("check_scan_threshold", d.scan_threshold)),
            wrong_per_client=int(config.get("check_wrong_per_client", d.wrong_per_client)),
            wrong_per_label=int(config.get("check_wrong_per_label", d.wrong_per_label)),
            window_ms=int(config.get("check_window_ms", d.window_ms)),
            scan_window_ms=int(config.get("check_scan_window_ms", d.scan_window_ms)),
            max_tracked=int(config.get("check_max_tracked", d.max_tracked)),
        )


class WrongCodeLimiter:
    """Counts wrong codes per key in a sliding window; bounded LRU of keys."""

    def __init__(self, limit: int, window_ms: int, max_keys: int) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self.max_keys = max_keys
        self._hits: OrderedDict[Any, deque[int]] = OrderedDict()

    def _live(self, key: Any, now_ms: int) -> deque[int] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= now_ms - self.window_ms:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        self._hits.move_to_end(key)
        return hits

    def retry_after_ms(self, key: Any, now_ms: int) -> int:
        """0 when ``key`` may try again now, else how long until it may."""
        hits = self._live(key, now_ms)
        if hits is None or len(hits) < self.limit:
            return 0
        return max(1, hits[-self.limit] + self.window_ms - now_ms)

    def add(self, key: Any, now_ms: int) -> int:
        """Record a wrong code; returns the attempts ``key`` has left in the window."""
        hits = self._live(key, now_ms)
        if hits is None:
            hits = self._hits[key] = deque(maxlen=self.limit)
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
        hits.append(now_ms)
        return max(0, self.limit - len(hits))


def client_key(remote_addr: str | None, secret: bytes) -> bytes:
    """A keyed hash of the remote address: 16 bytes, kept only in memory.  An IPv6
    address counts by its /64 network (an IPv4-mapped one as the IPv4 address): a home or
    phone subscriber is given a whole /64 and could otherwise be a new client per request."""
    text = remote_addr or ""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv6Address):
        text = str(ip.ipv4_mapped) if ip.ipv4_mapped else str(ipaddress.IPv6Network((ip, 64), strict=False))
    return hmac.new(secret, text.encode(), hashlib.sha256).digest()[:16]


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


class LabelChecks:
    """The node-local scan and verification records over the node's KV."""

    def __init__(self, kv: KV, config: CheckConfig | None = None) -> None:
        self.kv = kv
        self.config = config or CheckConfig()
        self.secret = os.urandom(32)
        self._lock = threading.Lock()
        self._per_client = WrongCodeLimiter(self.config.wrong_per_client, self.config.window_ms,
                                            self.config.max_tracked)
        self._per_label = WrongCodeLimiter(self.config.wrong_per_label, self.config.window_ms,
                                           self.config.max_tracked)
        self._scanned: OrderedDict[tuple[bytes, str], int] = OrderedDict()
        """(client, label) -> when that client's scan of the label last counted (monotonic ms)."""

    @staticmethod
    def _key(label: str, part: bytes) -> bytes:
        return PREFIX + label.encode() + b"\x00" + part

    def _count(self, label: str, part: bytes) -> int:
        raw = self.kv.get(self._key(label, part))
        return int.from_bytes(raw, "big") if raw else 0

    def client_key(self, remote_addr: str | None) -> bytes:
        return client_key(remote_addr, self.secret)

    def stats(self, label: str) -> dict[str, Any]:
        """Scan count, verifications, first verification and clone flags of ``label``."""
        first_raw = self.kv.get(self._key(label, b"f"))
        first = codec.decode(first_raw) if first_raw else None
        scans = self._count(label, b"n")
        places = sum(1 for _ in self.kv.scan(self._key(label, b"p")))
        reasons = []
        if scans > self.config.scan_threshold:
            reasons.append("scans_over_threshold")
        if places > 1:
            reasons.append("verified_in_several_places")
        return {
            "label": label,
            "scans": scans,
            "scan_threshold": self.config.scan_threshold,
            "verifications": self._count(label, b"k"),
            "first_verified_at": first["at"] if first else None,
            "first_place": first["place"] if first else None,
            "places": places,
            "suspect_clone": bool(reasons),
            "reasons": reasons,
        }

    def record_scan(self, label: str, now_ms: int, place: str | None = None, client: bytes | None = None, *,
                    mono_ms: int | None = None) -> dict[str, Any]:
        """Count one scan of ``label`` unless ``client`` had one counted within the scan
        window (``mono_ms``, a monotonic clock, runs the window; ``now_ms`` when not
        given).  ``place`` is accepted for symmetry and not stored: scans come from anyone
        and prove nothing about where the label is."""
        del place
        t = now_ms if mono_ms is None else mono_ms
        with self._lock:
            if client is None or self._new_scanner(client, label, t):
                n = self._count(label, b"n") + 1
                self.kv.write({self._key(label, b"n"): _u64(n)}, sync=False)
        return self.stats(label)

    def _new_scanner(self, client: bytes, label: str, t: int) -> bool:
        """Whether ``client``'s scan of ``label`` at ``t`` counts (none counted within the
        scan window); remembers it if so.  Called under ``_lock``."""
        key = (client, label)
        last = self._scanned.get(key)
        counts = last is None or t - last >= self.config.scan_window_ms
        if counts:
            self._scanned[key] = t
        self._scanned.move_to_end(key)
        while len(self._scanned) > self.config.max_tracked:
            self._scanned.popitem(last=False)
        return counts

    def check_code(self, label: str, commitment: bytes, code: str, now_ms: int, place: str | None,
                   client: bytes, *, mono_ms: int | None = None) -> dict[str, Any]:
        """Check ``code`` against ``label``'s ``commitment`` from the ledger.

        ``now_ms`` (wall clock) stamps what is recorded; the wrong-code windows run on
        ``mono_ms`` (a monotonic clock; ``now_ms`` when not given), so a wall clock
        stepped back does not lock clients out until it catches up.

        Raises ``too_many_attempts`` (429) while this client or the label is over its
        wrong-code limit, ``bad_code`` (400) for a malformed or wrong code (a wrong one
        counts against both limits).  On success records the first verification (time,
        place) and the place, and answers ``{"ok": true, "first": ..., **stats}``.
        """
        t = now_ms if mono_ms is None else mono_ms
        with self._lock:
            wait = max(self._per_client.retry_after_ms((client, label), t),
                       self._per_label.retry_after_ms(label, t))
            if wait:
                raise ApiError("too_many_attempts", "too many wrong codes for this label; try again later",
                               status=429, retry_after_s=-(-wait // 1000))
            canonical = normalize_code(code)
            if canonical is None:
                raise ApiError("bad_code", f"a check code is {CHECK_LEN} letters and digits (as printed, "
                               "in three groups of four)", reason="format")
            if not hmac.compare_digest(check_commitment(label, canonical), commitment):
                left = self._per_client.add((client, label), t)
                self._per_label.add(label, t)
                raise ApiError("bad_code", "the check code does not match this label", reason="mismatch",
                               attempts_left=left)
            first = self.kv.get(self._key(label, b"f")) is None
            puts = {self._key(label, b"k"): _u64(self._count(label, b"k") + 1)}
            if first:
                puts[self._key(label, b"f")] = codec.encode({"at": now_ms, "place": place})
            if place is not None:
                pkey = self._key(label, b"p" + place_key(place).encode())
                known = self.kv.get(pkey) is not None
                if not known and sum(1 for _ in self.kv.scan(self._key(label, b"p"))) < MAX_PLACES:
                    puts[pkey] = codec.encode({"at": now_ms})
            self.kv.write(puts, sync=True)
        return {"ok": True, "first": first, **self.stats(label)}
