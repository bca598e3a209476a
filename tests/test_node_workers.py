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
