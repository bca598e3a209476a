"""Running one node process: open the store, start consensus, serve the API.

With one validator in genesis the node commits blocks itself; with several (or as an
observer) it runs the Tendermint replica over the authenticated TCP transport.  The
process stops cleanly on SIGINT/SIGTERM; because every block is one synced write
batch, a SIGKILL loses nothing that was committed either.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError
from node.kv import LevelKV
from node.node import Node
from node.store import ChainStore

from .config import NodeConfig, load_genesis

log = logging.getLogger("lambtrace.runner")


def open_node(cfg: NodeConfig, *, passphrase: str | None = None) -> Node:
    """Open (or create) the node's store and load its key; nothing is started."""
    from signer import load_signer

    genesis = load_genesis(cfg.genesis)
    if cfg.role == "validator" and genesis.validator(cfg.name) is None:
        raise LedgerError(f"this node's config says it is validator {cfg.name!r}, which genesis does not name (its "
                          f"validators: {', '.join(v.name for v in genesis.validators)}); a node that only follows "
                          "the chain has \"role\": \"observer\"", code="bad_config")
    cfg.data.mkdir(parents=True, exist_ok=True)
    store = ChainStore(LevelKV(str(cfg.data / "chain.ldb")), genesis)
    node_signer = None
    if cfg.key is not None:
        node_signer = load_signer(str(cfg.key), passphrase=passphrase)
    return Node(store, genesis, name=cfg.name, signer=node_signer, limits=cfg.limits,
                verify_threads=0 if cfg.verify_processes else 2, verify_processes=cfg.verify_processes)


class Consensus:
    """The replica, its driver and the transport of a multi-validator node."""

    def __init__(self, cfg: NodeConfig, node: Node, *, fresh_sign_guard: bool = False) -> None:
        from ledger.consensus.replica import Replica
        from node.consensus import (
            ConsensusDriver,
            FileGuard,
            FileWAL,
            GuardStart,
            NodeApp,
            validator_start,
        )
        from node.transport import TransportThread

        g = node.genesis
        if node.signer is None:
            raise LedgerError("a node in a multi-validator network needs its node key (config 'key')",
                              code="bad_config")
        wal = FileWAL(cfg.data / "wal", cfg.limits)
        wal.own_name = cfg.name
        validator_signer = node.signer if g.validator(cfg.name) is not None else None
        guard_path = cfg.data / "sign-guard.json"
        self.guard = FileGuard(guard_path)
        start = (validator_start(guard_path, wal, node, fresh=fresh_sign_guard) if validator_signer is not None
                 else GuardStart(None, None))
        self.replica = Replica(name=cfg.name, genesis=g, app=NodeApp(node), wal=wal, signer=validator_signer,
                               guard=self.guard, paused_until_ms=start.paused_until_ms,
                               watch_until_ms=start.watch_until_ms,
                               min_block_interval_ms=cfg.min_block_interval_ms)
        self._start_pause = start.paused_because
        known = {v.name: (v.alg, v.pub) for v in g.validators}
        for o in cfg.observers:
            known[o["name"]] = (o["alg"], bytes.fromhex(o["pub"]))
        holder: dict[str, Any] = {}
        self.driver = ConsensusDriver(
            node, self.replica,
            send=lambda to, msg: holder["t"].send(to, msg),
            broadcast=lambda msg: holder["t"].broadcast(msg),
        )
        self.transport = TransportThread(
            cfg.name, node.signer, cfg.peer_addresses(), known,
            chain=g.chain, genesis_hash=g.hash, listen=cfg.p2p_address(), limits=cfg.limits,
            on_message=self.driver.deliver,
        )
        holder["t"] = self.transport
        node.admission_listeners.append(self.driver.relay_events)
        self.wal = wal

    def start(self) -> None:
        self.transport.start()
        self.driver.start()

    def stop(self) -> None:
        self.driver.stop()
        self.transport.close()
        self.wal.close()

    def status(self) -> dict[str, Any]:
        m = self.replica.machine
        state = m.state()
        if self.replica.idle:
            # nothing to decide yet: the next height waits for events, with no round, lock or value
            state = {"height": self.replica.height, "round": 0, "step": "idle", "locked_round": -1,
                     "valid_round": -1, "decided": None}
        return {"consensus": state, "connected": sorted(self.transport.connected()),
                "transport": self.transport.stats, "dial_failures": self.transport.dial_failures(),
                "replica": {"decided": self.replica.stats.decided,
                            "late_rounds": self.replica.stats.late_rounds,
                            "synced": self.replica.stats.synced,
                            "dropped": self.replica.stats.dropped,
                            "refused_to_sign": self.replica.stats.refused_to_sign,
                            "equivocations": m.equivocations_seen},
                "sign_guard": ({"height": self.guard.last[0], "round": self.guard.last[1], "step": self.guard.last[2],
                                "paused_until": self.replica.paused_until_ms,
                                "paused_because": self._paused_because()}
                               if self.replica.signer is not None else None)}

    def _paused_because(self) -> str | None:
        """Why the validator signs nothing now (``None``: it signs)."""
        if self.replica.paused_until_ms is None:
            return None
        by = self.replica.stats.paused_by
        return f"earlier_run_seen ({by})" if by else self._start_pause or "paused"


def _server(cfg: NodeConfig, app: Any) -> Any:
    import waitress

    if os.environ.get("LAMBTRACE_SERVER") == "werkzeug":
        from werkzeug.serving import make_server

        wz = make_server(cfg.host, cfg.port, app, threaded=True)

        class _Wz:
            def run(self) -> None:
                wz.serve_forever()

            def close(self) -> None:
                threading.Thread(target=wz.shutdown, daemon=True).start()

        return _Wz()
    # the proxy headers are ours to read (_behind_proxy): waitress must not clear them first
    server = waitress.create_server(_behind_proxy(app, cfg.trusted_proxy), host=cfg.host, port=cfg.port, threads=8,
                                    ident="lambtrace", recv_bytes=256 * 1024, clear_untrusted_proxy_headers=False)
    server.channel_class = _json_error_channel()
    return server


def _behind_proxy(app: Any, trusted_proxy: str) -> Any:
    """The WSGI app as the server runs it.

    Behind a reverse proxy, the client is the one its ``X-Forwarded-For`` names (the scan
    and wrong-code limits are per client); from anyone else the header is dropped.
    ``environ["lambtrace.via_proxy"]`` says whether the request came through the proxy (from
    its address, carrying the header): what only local operators may ask for (backups) is
    refused through it, whatever address the header names.
    """
    from waitress.proxy_headers import proxy_headers_middleware

    inner = (proxy_headers_middleware(app, trusted_proxy=trusted_proxy, trusted_proxy_count=1,
                                      trusted_proxy_headers={"x-forwarded-for"}, clear_untrusted=True)
             if trusted_proxy else app)

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        # read before the proxy middleware puts the client's address in REMOTE_ADDR
        environ["lambtrace.via_proxy"] = bool(trusted_proxy) and environ.get("REMOTE_ADDR") == trusted_proxy and \
            "HTTP_X_FORWARDED_FOR" in environ
        return inner(environ, start_response)

    return wsgi


HTTP_SERVER_CODES = {400: "bad_http", 413: "too_large", 431: "headers_too_large", 500: "internal",
                     501: "not_implemented"}
"""Stable codes for what the HTTP server itself refuses before the API sees a request."""


def _json_error_channel() -> type:
    """waitress's connection class, answering what waitress refuses on its own (a request
    that is not valid HTTP) in the API's JSON error shape instead of plain text."""
    import json

    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            e = self.request.error
            code = HTTP_SERVER_CODES.get(e.code, "bad_http")
            message = f"{e.reason}: {e.body}" if e.body else e.reason
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
            self.status = f"{e.code} {e.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    return JsonErrorChannel


def _quiet_after_close(server: Any, stop: threading.Event) -> None:
    """A request a worker thread finishes after SIGTERM closed the server wakes a loop that
    is gone: waitress's wake-up pipe is closed (``EBADF``), and it logged each such request
    as a traceback. Once the node is stopping that is expected, and the answer goes nowhere
    anyway (the connection closes with the process)."""
    pull = getattr(server, "pull_trigger", None)
    if pull is None:
        return

    def pull_trigger() -> None:
        try:
            pull()
        except OSError:
            if not stop.is_set():
                raise

    server.pull_trigger = pull_trigger


def serve(cfg: NodeConfig, *, ready: threading.Event | None = None, fresh_sign_guard: bool = False) -> int:
    """Run the node until SIGINT/SIGTERM.  Returns the process exit code.

    ``fresh_sign_guard``: a validator whose sign guard was lost signs at once instead of
    waiting for its peers to commit a block after its start (:func:`node.consensus.lost_guard_pause`)."""
    from api import create_app

    from .tuning import tune_process

    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        format=f"%(asctime)s {cfg.name} %(levelname)s %(name)s: %(message)s",
    )
    try:
        node = open_node(cfg)
        consensus = (Consensus(cfg, node, fresh_sign_guard=fresh_sign_guard)
                     if len(node.genesis.validators) > 1 or cfg.role == "observer" else None)
    except LedgerError as exc:
        log.error("cannot start: %s (%s)", exc.message, exc.code)
        return 2
    except (ValueError, OSError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    peers = [p.split("@", 1)[0] for p in cfg.peers]
    app = create_app(node, config={"role": cfg.role, "peers": peers,
                                   "consensus_status": consensus.status if consensus else None, **cfg.checks})
    server = _server(cfg, app)
    tune_process()
    stop = threading.Event()
    _quiet_after_close(server, stop)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping", signum)
        stop.set()
        server.close()
        # Every committed block is one synced batch, so a hard exit loses nothing
        # committed; it only bounds how long a stuck request can delay shutdown.
        hard_exit = threading.Timer(10.0, lambda: os._exit(0))
        hard_exit.daemon = True
        hard_exit.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if consensus is not None:
            consensus.start()
        else:
            node.start()
    except (OSError, TimeoutError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    pidfile = cfg.data / "node.pid"
    pidfile.write_text(str(os.getpid()))
    log.info(
        "node %s serving http://%s:%d chain %s height %d%s",
        cfg.name, cfg.host, cfg.port, node.genesis.chain, node.store.height,
        f", p2p {cfg.p2p_listen}" if consensus else "",
    )
    if ready is not None:
        ready.set()
    try:
        server.run()
    except OSError:
        if not stop.is_set():
            raise
    finally:
        if consensus is not None:
            consensus.stop()
        node.stop()
        node.store.close()
        try:
            Path(pidfile).unlink()
        except OSError:
            pass
    return 0
