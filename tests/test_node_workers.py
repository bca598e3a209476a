"""Signature-check worker processes never outlive their node, even after a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from helpers import pid_alive, wait_until

CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from helpers import World
    from test_rejections_http import base
    from node.node import Node
    from node.store import ChainStore
    from node.kv import MemoryKV
    w = World()
    node = Node(ChainStore(MemoryKV(), w.genesis), w.genesis, name="league", signer=w.validator,
                clock=lambda: w.now + 1000, verify_threads=0, verify_processes=1)
    node.submit(base(w)); node.produce_block()
    node.submit([w.tag("agent", f"3152523000000{{i:02d}}") for i in range(10, 60)])
    workers = [p.pid for p in node._pool._processes.values()]
    print(" ".join(map(str, workers)), flush=True)
    time.sleep(600)
""")


def test_workers_exit_when_the_node_is_killed() -> None:
    tests = str(Path(__file__).parent)
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=tests)], stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline() if child.stdout else ""
        workers = [int(x) for x in line.split()]
        assert workers and all(pid_alive(p) for p in workers)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert wait_until(lambda: not any(pid_alive(p) for p in workers), 15), "a worker outlived its node"
    finally:
        if child.poll() is None:
            child.kill()
    time.sleep(0.1)


def test_a_dead_worker_is_replaced_and_nothing_goes_unchecked() -> None:
    """Regression: a verification worker killed (the OOM killer, a stray kill) broke the
    pool for good: every later submission and every peer's block failed until a restart."""
    from helpers import World
    from node.kv import MemoryKV
    from node.node import Node
    from node.store import ChainStore
    from test_rejections_http import base

    w = World()
    node = Node(ChainStore(MemoryKV(), w.genesis), w.genesis, name="league", signer=w.validator,
                clock=lambda: w.now + 1000, verify_threads=0, verify_processes=1)
    try:
        node.submit([*base(w), w.issue("coop", "315252300000101", 100)])
        node.produce_block()
        assert all(r["status"] == "accepted" for r in node.submit([w.tag("agent", f"3152523000000{i:02d}")
                                                                     for i in range(10, 50)]))
        for p in list(node._pool._processes.values()):  # type: ignore[union-attr]
            os.kill(p.pid, signal.SIGKILL)
        assert wait_until(lambda: node._pool._broken, 10)  # type: ignore[union-attr]
        forged = w.tag("agent", "315252300000099")
        sig = forged["sigs"][0]["sig"]
        forged["sigs"][0]["sig"] = bytes([sig[0] ^ 1]) + sig[1:]  # the agent's key, a signature it never made
        batch = [w.tag("agent", f"3152523000000{i:02d}") for i in range(50, 90)] + [forged]
        results = node.submit(batch)
        assert [r["status"] for r in results[:-1]] == ["accepted"] * 40
        assert results[-1]["status"] == "rejected" and results[-1]["code"] == "bad_signature", results[-1]
        assert node.pool_renewals == 1
        # the new workers do the work again
        before = node.metrics.sig_jobs
        more = node.submit([w.tag("agent", f"3152523000001{i:02d}") for i in range(10, 50)])
        assert all(r["status"] == "accepted" for r in more) and node.metrics.sig_jobs >= before + 40
        node.produce_block()
        assert node.store.log_size == 11 + 40 + 40 + 40
    finally:
        node.stop()
