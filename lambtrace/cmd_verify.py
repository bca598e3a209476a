"""``lambtrace verify-label``, ``lambtrace audit`` and ``lambtrace witness`` (docs/verify.md).

The shell around :mod:`verify`: it reads files, LevelDB and the HTTP API, keeps the
witness's state file, shows progress, and maps outcomes to exit codes.  Every decision
is made by the pure code in :mod:`verify`.

Exit codes:

============ ===============================================================
0            verified / intact / consistent
1            not verified / broken (the reason and its code are printed)
2            usage, file, network or storage errors (nothing was decided)
3            ``witness`` only: ALARM, a fork or a rewrite of history
============ ===============================================================
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgpack

from ledger import codec, merkle
from ledger.errors import LedgerError, StorageError, VerificationError
from ledger.genesis import FINGERPRINT_HEX, FINGERPRINT_MAX_HEX, Genesis
from ledger.state import STATE_HASH_TAG

from .config import answer_of, load_genesis, write_json

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ALARM = 0, 1, 2, 3

_LABEL_PATH = re.compile(r"^(?P<prefix>.*?)/(?:l|v1/labels)/(?P<label>[A-Za-z0-9][A-Za-z0-9._-]{0,63})(?:/proof)?/?$")


def register(sub: Any) -> None:
    """Add ``verify-label``, ``audit`` and ``witness`` to the ``lambtrace`` parser."""
    s = sub.add_parser("verify-label", help="verify a label's proof bundle offline against genesis")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--bundle", help="bundle file (canonical msgpack or JSON)")
    src.add_argument("--url", help="a node (with --label), or a label link: <node>/l/<label>[#g=<fingerprint>]")
    s.add_argument("--label", help="the label id (required with a node URL; checked against a --bundle)")
    s.add_argument("--genesis", required=True, help="the genesis JSON you trust")
    s.add_argument("--max-age-s", type=float, help="refuse a checkpoint older than this many seconds")
    s.add_argument("--save", help="also write the fetched bundle (msgpack) to this file")
    s.set_defaults(func=cmd_verify_label)

    s = sub.add_parser("audit", help="replay the whole chain from genesis and check everything")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--url", help="a node's API")
    src.add_argument("--data", help="a node's data directory (holding chain.ldb); the node must be stopped")
    s.add_argument("--genesis", required=True, help="the genesis JSON you trust")
    s.add_argument("--json", dest="json_out", help="write the JSON report to this file too")
    s.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes that parse leaves and check signatures "
                        "(default: one per core; 0 checks inline)")
    s.add_argument("--trusted", help="a witness state file: the chain must pass through its checkpoint")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_audit)

    s = sub.add_parser("witness", help="follow a node's checkpoints; alarm (exit 3) on a fork or rewrite")
    s.add_argument("--url", required=True, action="append",
                   help="a node's API; repeat it to watch several nodes and hold them to one chain (a node "
                        "showing a different history than its peers is a fork too)")
    s.add_argument("--state", required=True, help="file keeping the last trusted checkpoint")
    s.add_argument("--genesis", required=True, help="the genesis JSON you trust")
    s.add_argument("--every", type=float, help="keep watching, looking again every this many seconds")
    s.add_argument("--count", type=int, help="with --every: stop after this many looks")
    s.set_defaults(func=cmd_witness)


def _fail(exc: VerificationError, out: dict[str, Any] | None = None) -> int:
    line = {"verified": False, "code": exc.code, "message": exc.message, **_hex(exc.details), **(out or {})}
    print(json.dumps(line, ensure_ascii=False))
    print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
    return EXIT_FAILED


def _hex(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in d.items()}


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------- verify-label


def parse_label_url(url: str, label: str | None) -> tuple[str, str | None, str | None]:
    """``(node base URL, label, genesis fingerprint)`` from ``--url`` (and ``--label``).

    Accepts a node URL, or a label link ``<node>/l/<label>`` or
    ``<node>/v1/labels/<label>[/proof]``, optionally with ``#g=<fingerprint>`` (a hex
    prefix of the genesis hash).  ``--label``, if also given, must agree.
    """
    parts = urlsplit(url)
    frag = dict(p.split("=", 1) for p in parts.fragment.split("&") if "=" in p)
    fingerprint = frag.get("g")
    m = _LABEL_PATH.match(parts.path)
    if m is None:
        return url.split("#", 1)[0].rstrip("/"), label, fingerprint
    if label is not None and label != m["label"]:
        raise LedgerError(f"--label {label} differs from the link's label {m['label']}", code="bad_argument")
    base = urlunsplit((parts.scheme, parts.netloc, m["prefix"], "", ""))
    return base.rstrip("/"), m["label"], fingerprint


def cmd_verify_label(args: argparse.Namespace) -> int:
    """Verify one bundle; exit 0 when it verifies, 1 when not (saying why), 2 on usage/IO."""
    from verify import verify_label
    from verify.errors import WrongGenesis

    if args.max_age_s is not None and not 0 <= args.max_age_s <= 10 * 365 * 86_400:
        raise LedgerError(f"--max-age-s takes 0 to {10 * 365 * 86_400} seconds, not {args.max_age_s}",
                          code="bad_argument")
    genesis = load_genesis(args.genesis)
    label: str | None = args.label
    fingerprint: str | None = None
    if args.bundle:
        try:
            raw = Path(args.bundle).read_bytes()
        except OSError as exc:
            raise LedgerError(f"cannot read {args.bundle}: {exc}", code="bundle_missing") from exc
    else:
        from api.client import Client

        base, label, fingerprint = parse_label_url(args.url, label)
        if label is None:
            raise LedgerError("--url needs --label, or a label link <node>/l/<label>", code="bad_argument")
        raw = Client(base).label_proof(label, raw=True)
        if args.save:
            Path(args.save).write_bytes(raw)
    if fingerprint is not None:
        fp = fingerprint.lower()
        if not re.fullmatch(rf"[0-9a-f]{{{FINGERPRINT_HEX},{FINGERPRINT_MAX_HEX}}}", fp):
            return _fail(WrongGenesis(f"the link's genesis fingerprint {fingerprint!r} is not {FINGERPRINT_HEX} to "
                                      f"{FINGERPRINT_MAX_HEX} hex characters"))
        if not genesis.hash.hex().startswith(fp):
            return _fail(WrongGenesis(f"the link's genesis fingerprint {fingerprint} is not the trusted genesis "
                                      f"{genesis.hash.hex()[:16]}…"))
    max_age = int(args.max_age_s * 1000) if args.max_age_s is not None else None
    try:
        report = verify_label(raw, genesis, now_ms=_now_ms(), label=label, max_age_ms=max_age)
    except VerificationError as exc:
        return _fail(exc, {"label": label})
    print(json.dumps(report.to_dict(), ensure_ascii=False))
    recall = f"; RECALLED ({', '.join(r.reason for r in report.recalls)})" if report.recalled else ""
    if report.recalls_complete:  # v3: the recall map proves the list complete
        recall += "; recalls proven complete" if report.recalled else "; no recall (proven)"
    print(
        f"verified: label {report.label} ({report.cut}, {report.net_mass_g} g, packed {report.packed}) — ear tag "
        f"{report.tag}, {report.banner_name or report.banner} {report.sumu}, cooperative {report.cooperative}, "
        f"plant {report.plant}, slaughtered {report.slaughter_date}; checkpoint block {report.checkpoint_height}"
        f"{recall}",
        file=sys.stderr,
    )
    return EXIT_OK


# --------------------------------------------------------------------------- audit sources


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


class StoreSource:
    """Blocks read straight from a stopped node's LevelDB (the layout of ``node/store.py``).

    Raw bytes are handed to the auditor undecoded: a corrupted store must not stop the
    reader before the auditor can say where it broke.  Raises ``LedgerError``
    ``store_locked`` when a running node holds the database, ``no_data`` when there is
    none, and :class:`~verify.errors.WrongGenesis` when it holds another chain.
    """

    def __init__(self, data: str, genesis: Genesis) -> None:
        from verify.errors import WrongGenesis

        from .config import open_stopped_store

        self.kv, path = open_stopped_store(data, "audit it")
        self.path = path
        if self.kv.get(b"G") != genesis.encode():
            self.kv.close()
            raise WrongGenesis(f"{path} holds another chain than the trusted genesis", height=0)
        self.tip = int.from_bytes(self.kv.get(b"Mh") or _u64(0), "big")

    def blocks(self) -> Iterator[Any]:
        from verify.audit import RawBlock

        leaves = self.kv.scan(b"L")
        pending: tuple[int, bytes] | None = None
        expected = 0
        for h in range(1, self.tip + 1):
            raw_h = self.kv.get(b"H" + _u64(h))
            raw_c = self.kv.get(b"C" + _u64(h))
            try:
                size = int(codec.decode_trusted(raw_h)["log_size"]) if raw_h is not None else -1
            except Exception:  # a corrupted header: the auditor says so
                size = -1
            if size < 0:
                yield RawBlock(h, raw_h, raw_c, None)
                return
            out: list[bytes] = []
            while expected < size:
                if pending is None:
                    nxt = next(leaves, None)
                    if nxt is None:
                        break
                    pending = (int.from_bytes(nxt[0][1:], "big"), nxt[1])
                if pending[0] != expected:
                    break  # a missing leaf: the block comes out short and the auditor says so
                out.append(pending[1])
                pending = None
                expected += 1
            try:
                stored: bytes | None = merkle.root_from_store(size, self._node) if size else merkle.EMPTY_ROOT
            except (StorageError, ValueError):
                stored = None
            yield RawBlock(h, raw_h, raw_c, out, stored, True)

    def _node(self, level: int, index: int) -> bytes:
        raw = self.kv.get(b"N" + bytes([level]) + _u64(index))
        if raw is None:
            raise StorageError(f"missing Merkle node {level}/{index}")
        return raw

    def state_hash(self, height: int) -> bytes | None:
        """The stored state's hash if the audit reached the store's tip.

        It is ``ChainStore.state_hash`` (:func:`ledger.state.state_hash`) computed from
        the stored bytes as they are: each entry adds ``canonical([key, value])``, which
        for the canonical value bytes the node writes is ``0x92 || pack(key) || bytes``.
        That needs no decoding, and a stored value that is not the canonical encoding of
        what the rules wrote changes the hash (so the audit notices it) instead of being
        normalised away.
        """
        if height != self.tip:
            return None
        h = hashlib.sha256(STATE_HASH_TAG + b"\x00")
        for k, v in self.kv.scan(b"S"):
            try:
                key: str | bytes = k[1:].decode("utf-8")
            except UnicodeDecodeError:
                key = k[1:]  # a corrupted key: packed as bytes, so the hash cannot match
            h.update(b"\x92" + msgpack.packb(key, use_bin_type=True) + v)
        return h.digest()

    def close(self) -> None:
        self.kv.close()


class ApiSource:
    """Blocks read over HTTP (``GET /v1/blocks/<h>/leaves``), a few requests ahead.

    Raises :class:`~verify.errors.WrongGenesis` if the node serves another genesis.
    """

    AHEAD = 8

    def __init__(self, url: str, genesis: Genesis) -> None:
        from api.client import Client
        from verify.errors import WrongGenesis

        self.client = Client(url, timeout=60)
        self.url = url
        st = self.client.status()
        if st.get("genesis_hash") != genesis.hash.hex():
            raise WrongGenesis(f"{url} serves a chain of another genesis ({st.get('genesis_hash')})", height=0)
        with answer_of(url):
            self.tip = int(st["height"])
        self._node_hash: tuple[int, bytes] | None = None

    def blocks(self) -> Iterator[Any]:
        from verify.audit import RawBlock

        with ThreadPoolExecutor(4) as pool:
            h = 1
            queue: list[Future[dict[str, Any]]] = []
            top = self.tip
            while True:
                while len(queue) < self.AHEAD and h + len(queue) <= top:
                    queue.append(pool.submit(self.client.block_leaves, h + len(queue)))
                if not queue:
                    if self._node_hash is not None:
                        return
                    # The tip is reached: ask for the state hash, and follow the chain to the
                    # height it belongs to (the node may have committed more meanwhile).
                    d = self.client.state_hash()
                    with answer_of(self.url):
                        self._node_hash = (int(d["height"]), bytes.fromhex(d["state_hash"]))
                    top = max(top, self._node_hash[0])
                    self.tip = top
                    continue
                d = queue.pop(0).result()
                with answer_of(self.url):
                    raw = RawBlock(h, d["header"], d["certificate"], list(d["leaves"]))
                yield raw
                h += 1

    def state_hash(self, height: int) -> bytes | None:
        if self._node_hash is None or self._node_hash[0] != height:
            return None
        return self._node_hash[1]

    def close(self) -> None:
        self.client.session.close()


# --------------------------------------------------------------------------- audit


def _trusted_checkpoints(path: str | None) -> list[tuple[int, bytes]]:
    if not path:
        return []
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        cp = doc["checkpoint"]
        return [(int(cp["height"]), bytes.fromhex(cp["hash"]))]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LedgerError(f"cannot read the trusted checkpoint in {path}: {exc}", code="bad_state_file") from exc


def _worth_workers(source: StoreSource | ApiSource) -> bool:
    """Whether the chain is long enough for worker processes to pay off: more than 16
    blocks, or a store whose tip already holds a few thousand leaves (big blocks)."""
    if source.tip > 16:
        return True
    if isinstance(source, StoreSource) and source.tip > 0:
        try:
            raw = source.kv.get(b"H" + _u64(source.tip))
            return raw is not None and int(codec.decode_trusted(raw)["log_size"]) > 2000
        except Exception:  # a corrupted header: the audit will say so, inline is fine
            return False
    return False


def _check_writable(path: Path, what: str) -> None:
    """Refuse an output file that cannot be written before a long run, not after it."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise LedgerError(f"{what} {path} is a directory", code="bad_argument")
    if not parent.is_dir():
        raise LedgerError(f"{what} {path}: no directory {parent}", code="bad_argument")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise LedgerError(f"{what} {path} cannot be written (permission denied)", code="bad_argument")


def cmd_audit(args: argparse.Namespace) -> int:
    """Replay the chain; exit 0 intact, 1 broken (where and why), 2 usage/IO."""
    from tqdm import tqdm

    from verify.audit import audit_chain
    from verify.errors import WrongGenesis

    from .tuning import tune_process

    genesis = load_genesis(args.genesis)
    trusted = _trusted_checkpoints(args.trusted)
    if args.json_out:
        _check_writable(Path(args.json_out), "--json")
    source: StoreSource | ApiSource
    try:
        source = StoreSource(args.data, genesis) if args.data else ApiSource(args.url, genesis)
    except WrongGenesis as exc:
        failure = {"code": exc.code, "message": exc.message, "height": 0, "index": None}
        print(json.dumps({"intact": False, "chain": genesis.chain, "failure": failure}, ensure_ascii=False, indent=2))
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    # Worker processes (forkserver: this process has threads) pay off only beyond a few
    # thousand signatures; audit_chain starts them and stops them before it returns.
    workers = args.workers if args.workers > 0 and _worth_workers(source) else 0
    bar = tqdm(total=source.tip, unit="block", file=sys.stderr, disable=args.quiet, dynamic_ncols=True,
               desc="audit")
    events = 0

    def progress(blocks: int, n: int) -> None:
        nonlocal events
        events += n
        if bar.total is not None and bar.n + blocks > bar.total:
            bar.total = source.tip
        bar.update(blocks)
        bar.set_postfix(events=events, refresh=False)

    restore = tune_process()
    try:
        report = audit_chain(source.blocks(), genesis, workers=workers, node_state_hash=source.state_hash,
                             trusted=trusted, progress=progress)
    finally:
        restore()
        bar.close()
        source.close()
    out = report.to_dict()
    out["source"] = f"data:{args.data}" if args.data else f"url:{args.url}"
    out["workers"] = workers
    text = json.dumps(out, ensure_ascii=False, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n", encoding="utf-8")
    if not report.intact:
        f = report.failure or {}
        print(f"error: {f.get('code')}: chain broken at height {f.get('height')}"
              f"{'' if f.get('index') is None else ', leaf ' + str(f.get('index'))}: {f.get('message')}",
              file=sys.stderr)
        return EXIT_FAILED
    recalls = ("" if report.recalled_labels is None
               else f"; {report.recalled_labels} recalled label(s), the recall map checked at every block")
    print(f"intact: {report.height} blocks, {report.events} events replayed from genesis; state hash "
          f"{(report.state_hash or b'').hex()[:16]}…{recalls}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- witness


def _values(block: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JSON block answer's header and certificate with real bytes."""
    hdr = dict(block["header"])
    for k in ("prev", "log_root", "validators", "state_root"):
        if isinstance(hdr.get(k), str):
            hdr[k] = bytes.fromhex(hdr[k])
    cert = dict(block["certificate"] or {})
    if isinstance(cert.get("block"), str):
        cert["block"] = bytes.fromhex(cert["block"])
    cert["precommits"] = [
        {**p, "sig": bytes.fromhex(p["sig"]) if isinstance(p.get("sig"), str) else p.get("sig")}
        for p in cert.get("precommits", [])
    ]
    return hdr, cert


def _load_state(path: Path, genesis: Genesis) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The trusted checkpoint of a witness state file (None: there is none yet), and what
    each node served at the last look over several (``{url: {height, hash}}``; empty for
    a state file without them)."""
    from verify.witness import STATE_FORMAT, verify_checkpoint

    if not path.exists():
        return None, {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"not a JSON object (got {type(doc).__name__})")
        if doc.get("format") != STATE_FORMAT or doc.get("genesis_hash") != genesis.hash.hex():
            raise ValueError("not a witness state file of this genesis")
        hdr, cert = _values(doc["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LedgerError(f"cannot read the witness state {path}: {exc}", code="bad_state_file") from exc
    try:
        trusted = verify_checkpoint(hdr, cert, genesis)
    except VerificationError as exc:
        raise LedgerError(f"the witness state {path} holds a checkpoint that does not verify: {exc.message}",
                          code="bad_state_file") from exc
    nodes = doc.get("nodes")
    seen = {u: {"height": v["height"], "hash": v["hash"]} for u, v in nodes.items()
            if isinstance(v, dict) and type(v.get("height")) is int and isinstance(v.get("hash"), str)
            } if isinstance(nodes, dict) else {}
    return trusted, seen


def _save_state(path: Path, genesis: Genesis, cp: Any, url: str,
                nodes: dict[str, dict[str, Any]] | None = None) -> None:
    from ledger import schema
    from verify.witness import STATE_FORMAT

    write_json(path, {
        "format": STATE_FORMAT,
        "chain": genesis.chain,
        "genesis_hash": genesis.hash.hex(),
        "url": url,
        "checkpoint": schema.to_json(cp.to_dict()),
        "trusted_at": _now_ms(),
        **({"nodes": nodes} if nodes is not None else {}),
    })


def _alarm(exc: VerificationError, urls: str | list[str], evidence: dict[str, Any] | None) -> int:
    """Print the alarm (a JSON line; ``url`` for one node watched, ``urls`` for the nodes
    that disagree when several are) and answer :data:`EXIT_ALARM`."""
    alarm = {"alarm": exc.code, "message": exc.message, **_hex(exc.details),
             **({"url": urls} if isinstance(urls, str) else {"urls": urls}),
             **({"evidence": evidence} if evidence else {}), "time": _now_ms()}
    print(json.dumps(alarm, ensure_ascii=False))
    signers = f"; signed both: {', '.join(evidence['signed_both'])}" if evidence and evidence["signed_both"] else ""
    print(f"ALARM: {exc.code}: {exc.message}{signers}", file=sys.stderr)
    return EXIT_ALARM


def _evidence(client: Any, url: str, cp: Any, genesis: Genesis) -> dict[str, Any] | None:
    """The certified header ``client`` serves at ``cp``'s height, if it is another one:
    who signed both (:func:`verify.witness.conflict_evidence`); None when there is none to
    be had (the server does not serve one, or it does not verify)."""
    from verify.witness import conflict_evidence, verify_checkpoint

    try:
        with answer_of(url):
            other = verify_checkpoint(*_values(client.block(cp.height)), genesis)
    except (LedgerError, VerificationError):
        return None
    return conflict_evidence(cp, other) if other.hash != cp.hash else None


def _on_chain(client: Any, url: str, cp: Any, top: Any) -> str:
    """Check that ``cp`` (verified) lies on the chain of ``top`` (verified, served by
    ``client``): the header ``client`` serves at ``cp``'s height is ``cp``, and an RFC 9162
    consistency proof from it takes ``cp``'s log to ``top``'s.  Raises what
    :func:`verify.witness.check_extension` raises."""
    from api.client import ClientError
    from verify.witness import check_extension

    proof: list[bytes] = []
    if top.log_size > cp.log_size:
        answer = client.consistency(cp.log_size, top.log_size)
        with answer_of(url):
            proof = [bytes.fromhex(x) for x in answer["proof"]] if isinstance(answer.get("proof"), list) else []
    served: bytes | None = None
    if top.height >= cp.height:
        try:
            with answer_of(url):
                served = bytes.fromhex(client.block(cp.height)["hash"])
        except ClientError as exc:
            if exc.code != "not_found":
                raise
            served = b""  # the height is gone: history was cut
    return check_extension(cp, top, proof, served_at_trusted_height=served)


def _witness_many(urls: list[str], genesis: Genesis, state: Path) -> int:
    """Several nodes at once: every node's latest checkpoint, and the trusted one, must lie
    on the chain of the highest of them (each checked with proofs from the node serving
    that one).  A node that cannot be reached, or answers with a checkpoint that does not
    verify, is reported and left out; all of them failing is a failure (exit 1, or 2
    when none could be reached)."""
    from api.client import Client
    from verify.witness import verify_checkpoint

    trusted, seen = _load_state(state, genesis)
    clients = {u: Client(u) for u in urls}
    latest: dict[str, Any] = {}
    nodes: dict[str, dict[str, Any]] = {}
    unreachable: LedgerError | None = None
    for u, client in clients.items():
        try:
            with answer_of(u):
                cp = verify_checkpoint(*_values(client.block("latest")), genesis)
        except VerificationError as exc:
            nodes[u] = {"error": exc.code, "message": exc.message}
            continue
        except LedgerError as exc:
            nodes[u] = {"error": exc.code, "message": exc.message}
            unreachable = unreachable or exc
            continue
        latest[u] = cp
        nodes[u] = {"height": cp.height, "hash": cp.hash.hex()}
    if not latest:
        print(json.dumps({"status": "untrusted", "nodes": nodes}, ensure_ascii=False))
        if unreachable is not None and all(n["error"] == unreachable.code for n in nodes.values()):
            raise unreachable
        print("error: no node answered with a checkpoint that verifies", file=sys.stderr)
        return EXIT_FAILED
    from verify.errors import Rollback

    for u, cp in latest.items():  # a node that went back on what it served
        if u in seen and cp.height < seen[u]["height"]:
            return _alarm(Rollback(f"{u} now serves block {cp.height}, behind block {seen[u]['height']} it served "
                                   "before", trusted_height=seen[u]["height"], trusted_hash=seen[u]["hash"],
                                   served_height=cp.height, served_hash=cp.hash.hex()), [u], None)
    top_url = max(latest, key=lambda u: (latest[u].height, u == urls[0]))
    top = latest[top_url]
    if trusted is not None and trusted.height > top.height:
        # every node that answered lags behind the trusted checkpoint (the one that served
        # it may be down): nothing here can be checked against it until one catches up
        print(json.dumps({"status": "behind", "trusted": trusted.height, "height": top.height, "nodes": nodes},
                         ensure_ascii=False))
        return EXIT_OK
    others = ([("the trusted checkpoint", None, trusted)] if trusted is not None else []) + [
        (u, u, cp) for u, cp in latest.items() if u != top_url]
    for who, url, cp in others:
        try:
            _on_chain(clients[top_url], top_url, cp, top)
        except VerificationError as exc:
            evidence = _evidence(clients[top_url], top_url, cp, genesis)
            return _alarm(type(exc)(f"{who} and {top_url} disagree: {exc.message}", **exc.details),
                          [x for x in (url, top_url) if x is not None], evidence)
    # (what each node served before lies at or below the trusted checkpoint, which was just
    # shown to be on this chain: the headers below it are fixed by their prev links)
    verdict = "initialised" if trusted is None else "unchanged" if top.hash == trusted.hash else "advanced"
    last = {**{u: v for u, v in seen.items() if u in clients}, **{u: nodes[u] for u in latest}}
    if verdict != "unchanged" or last != seen:
        _save_state(state, genesis, top, ",".join(urls), last)
    out = {"status": verdict, **({"from": trusted.height} if trusted is not None else {}), "to": top.height,
           "height": top.height, "hash": top.hash.hex(), "log_size": top.log_size, "nodes": nodes}
    print(json.dumps(out, ensure_ascii=False))
    return EXIT_OK


def _witness_once(args: argparse.Namespace, genesis: Genesis, state: Path) -> int:
    """One look at one node (several: :func:`_witness_many`)."""
    from api.client import Client
    from verify.witness import check_extension, verify_checkpoint

    if len(args.url) > 1:
        return _witness_many(args.url, genesis, state)
    url = args.url[0]
    trusted, _seen = _load_state(state, genesis)
    client = Client(url)
    with answer_of(url):
        latest = _values(client.block("latest"))
    try:
        new = verify_checkpoint(*latest, genesis)
    except VerificationError as exc:
        return _fail(exc, {"status": "untrusted"})
    if trusted is None:
        _save_state(state, genesis, new, url)
        print(json.dumps({"status": "initialised", "height": new.height, "hash": new.hash.hex(),
                          "log_size": new.log_size}))
        return EXIT_OK
    try:
        if new.height < trusted.height:
            verdict = check_extension(trusted, new, [])  # raises Rollback
        else:
            verdict = _on_chain(client, url, trusted, new)
    except VerificationError as exc:
        return _alarm(exc, url, _evidence(client, url, trusted, genesis))
    if verdict == "advanced":
        _save_state(state, genesis, new, url)
    print(json.dumps({"status": verdict, "from": trusted.height, "to": new.height, "hash": new.hash.hex(),
                      "log_size": new.log_size}))
    return EXIT_OK


def cmd_witness(args: argparse.Namespace) -> int:
    """Check the node's latest checkpoint against the trusted one; exit 0 consistent,
    1 the new checkpoint does not verify (state kept), 2 usage/IO, 3 ALARM."""
    if args.every is not None and not 0 <= args.every <= 86_400:
        raise LedgerError(f"--every takes 0 to 86400 seconds, not {args.every}", code="bad_argument")
    genesis = load_genesis(args.genesis)
    state = Path(args.state)
    looks = 0
    while True:
        rc = _witness_once(args, genesis, state)
        looks += 1
        if rc == EXIT_ALARM or args.every is None or (args.count is not None and looks >= args.count):
            return rc
        time.sleep(max(0.0, args.every))
