"""Files on disk: genesis JSON and node configuration.

Genesis is kept as JSON (bytes as lowercase hex) for people to read; its hash is taken
over the canonical msgpack of the parsed value, so whitespace in the file never matters.
A node config is a small JSON file::

    {"name": "league", "genesis": "genesis.json", "data": "data/league",
     "listen": "127.0.0.1:8700", "key": "keys/node-league.json", "peers": []}

Relative paths are relative to the config file.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ledger import schema
from ledger.errors import LedgerError, Rejected
from ledger.genesis import Genesis
from ledger.limits import Limits
from signer.software import fsync_directory

_GENESIS_BYTES_FIELDS = ("pub",)


def _hex_to_bytes(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: (bytes.fromhex(x) if k in _GENESIS_BYTES_FIELDS and isinstance(x, str) else _hex_to_bytes(x))
                for k, x in v.items()}
    if isinstance(v, list):
        return [_hex_to_bytes(x) for x in v]
    return v


def genesis_to_json(g: Genesis) -> str:
    return json.dumps(schema.to_json(g.to_dict()), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def genesis_from_json(text: str | bytes) -> Genesis:
    """Parse genesis JSON; raises :class:`Rejected` (``bad_genesis``) with a clear message."""
    try:
        raw = json.loads(text)
        return Genesis.from_dict(_hex_to_bytes(raw))
    except Rejected:
        raise
    except (ValueError, TypeError) as exc:
        raise Rejected("bad_genesis", f"genesis is not valid JSON: {exc}") from exc


TRACE_OFFICE_NAME = "锡林郭勒盟农牧局追溯办公室"
"""The league trace office, as ``lambtrace genesis``, ``network init`` and the demo name it."""


def load_genesis(path: str | os.PathLike[str]) -> Genesis:
    try:
        return genesis_from_json(Path(path).read_bytes())
    except OSError as exc:
        raise LedgerError(f"cannot read genesis {path}: {exc.strerror or exc}", code="genesis_missing") from exc


def write_json(path: str | os.PathLike[str], value: Any, mode: int = 0o644) -> None:
    """Write JSON atomically and durably (temporary file, fsync, rename, fsync of the
    directory): after a crash or a power loss the file holds the old document or the
    new one, never an empty or partial one (a witness's trusted checkpoint lives so)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, p)
    fsync_directory(p.parent)


CHECK_SETTINGS = ("check_scan_threshold", "check_scan_window_ms", "check_wrong_per_client", "check_wrong_per_label",
                  "check_window_ms", "check_max_tracked")
"""Node-config keys for label scans and check codes (``api.checks.CheckConfig``, docs/node-config.md)."""

KNOWN_KEYS = frozenset({"name", "genesis", "data", "listen", "key", "peers", "role", "limits", "log_level",
                        "verify_processes", "p2p_listen", "min_block_interval_ms", "observers", "trusted_proxy",
                        *CHECK_SETTINGS})
"""Every key a node config may hold; any other is refused (a misspelt setting would
otherwise be ignored without a word)."""


@dataclass
class NodeConfig:
    name: str
    genesis: Path
    data: Path
    listen: str = "127.0.0.1:8700"
    key: Path | str | None = None
    """The node key: a key file, or a ``pkcs11:`` spec (the key stays in the HSM; the
    double-sign guard stays in the data directory, outside the token)."""
    peers: list[str] = field(default_factory=list)
    role: str = "validator"
    limits: Limits = field(default_factory=Limits)
    log_level: str = "INFO"
    verify_processes: int = 2
    """Worker processes that check signatures of large submissions (0: threads)."""
    min_block_interval_ms: int = 100
    """Wait this long after a commit before proposing the next height (batches events)."""
    p2p_listen: str = ""
    """Where peers connect (``host:port``); empty for a single-validator chain."""
    observers: list[dict[str, str]] = field(default_factory=list)
    """Non-validator nodes allowed to connect: ``{name, alg, pub (hex)}``."""
    trusted_proxy: str = ""
    """The address of a reverse proxy in front of the API whose ``X-Forwarded-For`` names
    the client (one hop); empty: clients connect directly and the header is ignored."""
    checks: dict[str, int] = field(default_factory=dict)
    """Label scan and check-code settings (:data:`CHECK_SETTINGS`), as given."""
    path: Path | None = None

    def p2p_address(self) -> tuple[str, int] | None:
        if not self.p2p_listen:
            return None
        host, _, port = self.p2p_listen.rpartition(":")
        return host, int(port)

    def peer_addresses(self) -> dict[str, tuple[str, int]]:
        """``peers`` entries are ``name@host:port``."""
        out = {}
        for p in self.peers:
            name, _, addr = p.partition("@")
            host, _, port = addr.rpartition(":")
            if not name or not host or not port.isdigit():
                raise LedgerError(f"peer {p!r} is not name@host:port", code="bad_config")
            out[name] = (host, int(port))
        return out

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def to_dict(self) -> dict[str, Any]:
        base = self.path.parent if self.path else Path(".")

        def rel(p: Path | None) -> str | None:
            # relative to the config file, so a network directory can move (or be mounted)
            return None if p is None else os.path.relpath(p.resolve(), base.resolve())

        return {
            "name": self.name,
            "genesis": rel(self.genesis),
            "data": rel(self.data),
            "listen": self.listen,
            "key": self.key if isinstance(self.key, str) else rel(self.key),
            "peers": self.peers,
            "role": self.role,
            "log_level": self.log_level,
            "verify_processes": self.verify_processes,
            "p2p_listen": self.p2p_listen,
            "min_block_interval_ms": self.min_block_interval_ms,
            "observers": self.observers,
            **({"trusted_proxy": self.trusted_proxy} if self.trusted_proxy else {}),
            **self.checks,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        write_json(self.path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodeConfig:
        p = Path(path).resolve()
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LedgerError(f"cannot read node config {path}: {exc}", code="bad_config") from exc
        if not isinstance(d, dict):
            raise LedgerError(f"node config {path} is not a JSON object (got {type(d).__name__})", code="bad_config")
        base = p.parent

        def path_of(v: Any) -> Path | None:
            if v is None:
                return None
            q = Path(v)
            return q if q.is_absolute() else (base / q)

        try:
            limits = _limits(path, d.get("limits", {}))
            genesis = path_of(d["genesis"])
            data = path_of(d["data"])
            if genesis is None or data is None:
                raise KeyError("genesis/data")
            cfg = cls(
                name=d["name"],
                genesis=genesis,
                data=data,
                listen=d.get("listen", "127.0.0.1:8700"),
                key=d["key"] if str(d.get("key") or "").startswith("pkcs11:") else path_of(d.get("key")),
                peers=list(d.get("peers", [])),
                role=d.get("role", "validator"),
                limits=limits,
                log_level=d.get("log_level", "INFO"),
                verify_processes=int(d.get("verify_processes", 2)),
                p2p_listen=d.get("p2p_listen", ""),
                min_block_interval_ms=int(d.get("min_block_interval_ms", 100)),
                observers=list(d.get("observers", [])),
                trusted_proxy=str(d.get("trusted_proxy") or ""),
                checks={k: d[k] for k in CHECK_SETTINGS if k in d},
                path=p,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"node config {path} lacks or mistypes {exc}", code="bad_config") from exc
        unknown = sorted(set(d) - KNOWN_KEYS)
        if unknown:
            raise LedgerError(f"node config {path}: unknown setting(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(KNOWN_KEYS))})", code="bad_config")
        for k, v in cfg.checks.items():
            if type(v) is not int or v < 1:
                raise LedgerError(f"node config {path}: {k} is a positive integer, not {v!r}", code="bad_config")
        if cfg.trusted_proxy:
            try:
                ipaddress.ip_address(cfg.trusted_proxy)
            except ValueError as exc:
                raise LedgerError(f"node config {path}: trusted_proxy {cfg.trusted_proxy!r} is not an IP address",
                                  code="bad_config") from exc
        for name, value in (("listen", cfg.listen), ("p2p_listen", cfg.p2p_listen)):
            if value or name == "listen":
                check_host_port(value, f"node config {path}: {name}", code="bad_config")
        return cfg


RETIRED_LIMITS = frozenset({"max_proof_nodes"})
"""Limits a node no longer reads, accepted in old configs and ignored: a proof path's length
is bounded by the verifier (``verify.label.MAX_PROOF_HASHES``), not by a node."""


def _limits(path: str | os.PathLike[str], d: Any) -> Limits:
    if not isinstance(d, dict):
        raise LedgerError(f"node config {path}: limits is a JSON object, not {d!r}", code="bad_config")
    known = {f.name for f in fields(Limits)}
    unknown = sorted(set(d) - known - RETIRED_LIMITS)
    if unknown:
        raise LedgerError(f"node config {path}: unknown limit(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})", code="bad_config")
    for k, v in d.items():
        if k in known and (type(v) is not int or v < 1):
            raise LedgerError(f"node config {path}: limits.{k} is a positive integer, not {v!r}", code="bad_config")
    return Limits(**{k: v for k, v in d.items() if k in known})


@contextmanager
def answer_of(url: str) -> Iterator[None]:
    """Read a node's answers inside this block: a missing or ill-typed field (``KeyError``,
    ``TypeError``, ``ValueError``, ``AttributeError`` while picking the answer apart)
    becomes ``LedgerError`` ``bad_response`` naming the server, not a traceback."""
    try:
        yield
    except LedgerError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        what = f"no field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise LedgerError(f"{url} gave an answer a LambTrace node does not give ({what}); is it a LambTrace node?",
                          code="bad_response") from exc


def check_port(port: int, what: str, *, code: str = "bad_argument", lowest: int = 1) -> None:
    """Raise ``LedgerError`` unless ``port`` is a TCP port (``lowest`` to 65535)."""
    if not lowest <= port <= 65535:
        raise LedgerError(f"{what} must be a TCP port from {lowest} to 65535, not {port}", code=code)


def check_host_port(value: Any, what: str, *, code: str = "bad_argument") -> None:
    """Raise ``LedgerError`` unless ``value`` is ``host:port`` with a port from 0 (any free
    port) to 65535."""
    host, _, port = str(value).rpartition(":")
    if not isinstance(value, str) or not host or not port.isdigit():
        raise LedgerError(f"{what} must be host:port, not {value!r}", code=code)
    check_port(int(port), what, code=code, lowest=0)


def open_stopped_store(data: str | Path, verb: str) -> tuple[Any, Path]:
    """A stopped node's LevelDB (``data`` itself or ``data/chain.ldb``), opened without
    creating anything; returns ``(kv, path)``.

    Raises ``LedgerError`` ``no_data`` when there is no store there and ``store_locked``
    when a running node holds it (the message says to ``verb`` over HTTP instead).
    """
    from ledger.errors import StorageError
    from node.kv import LevelKV

    root = Path(data)
    path = root / "chain.ldb" if (root / "chain.ldb").is_dir() else root
    if not (path / "CURRENT").exists():
        raise LedgerError(f"no LevelDB chain store at {path}", code="no_data")
    try:
        kv = LevelKV(str(path), create=False)
    except StorageError as exc:
        if exc.code == "storage_unavailable" and "permission denied" in exc.message.lower():
            # LevelDB takes its LOCK file even to read: not a running node, a permission
            raise LedgerError(f"no permission to open {path} (LevelDB needs write access to its LOCK file, "
                              f"even to read): {exc.message}", code="storage_unavailable") from exc
        if exc.code == "storage_unavailable" and "lock" in exc.message.lower():
            raise LedgerError(f"a running node holds the LevelDB lock of {path}; stop it, or {verb} over HTTP "
                              "with --url <its API>", code="store_locked") from exc
        raise
    from node.store import check_store_format

    try:
        check_store_format(kv)
    except StorageError:
        kv.close()
        raise
    return kv, path
