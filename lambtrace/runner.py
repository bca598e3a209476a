"""Running one node process: open the store, start block production, serve the API.

The process stops cleanly on SIGINT/SIGTERM; because every block is one synced write
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
    cfg.data.mkdir(parents=True, exist_ok=True)
    store = ChainStore(LevelKV(str(cfg.data / "chain.ldb")), genesis)
    node_signer = None
    if cfg.key is not None:
        node_signer = load_signer(str(cfg.key), passphrase=passphrase)
    return Node(store, genesis, name=cfg.name, signer=node_signer, limits=cfg.limits,
                verify_threads=0 if cfg.verify_processes else 2, verify_processes=cfg.verify_processes)


def serve(cfg: NodeConfig, *, ready: threading.Event | None = None) -> int:
    import sys

    sys.setswitchinterval(float(os.environ.get("LAMBTRACE_SWITCH_S", "0.005")))
    """Run the node until SIGINT/SIGTERM.  Returns the process exit code."""
    import waitress

    from api import create_app

    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        format=f"%(asctime)s {cfg.name} %(levelname)s %(name)s: %(message)s",
    )
    try:
        node = open_node(cfg)
    except LedgerError as exc:
        log.error("cannot start: %s (%s)", exc.message, exc.code)
        return 2
    app = create_app(node, config={"role": cfg.role, "peers": cfg.peers})
    if os.environ.get("LAMBTRACE_SERVER") == "werkzeug":
        from werkzeug.serving import make_server

        wz = make_server(cfg.host, cfg.port, app, threaded=True)

        class _Wz:
            def run(self) -> None:
                wz.serve_forever()

            def close(self) -> None:
                threading.Thread(target=wz.shutdown, daemon=True).start()

        server: Any = _Wz()
    else:
        server = waitress.create_server(
            app, host=cfg.host, port=cfg.port, threads=8, ident="lambtrace", recv_bytes=256 * 1024
        )
    stop = threading.Event()

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
    node.start()
    pidfile = cfg.data / "node.pid"
    pidfile.write_text(str(os.getpid()))
    log.info(
        "node %s serving http://%s:%d chain %s height %d",
        cfg.name, cfg.host, cfg.port, node.genesis.chain, node.store.height,
    )
    if ready is not None:
        ready.set()
    try:
        server.run()
    except OSError:
        if not stop.is_set():
            raise
    finally:
        node.stop()
        node.store.close()
        try:
            Path(pidfile).unlink()
        except OSError:
            pass
    return 0
