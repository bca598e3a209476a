"""Shared fixtures: a small world of actors and keys, and a node served over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LAMBTRACE_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with LAMBTRACE_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def real_node(tmp_path: Path) -> Iterator[tuple[Any, str, Any, Path]]:
    """A one-validator chain for a real ``lambtrace node`` process on 127.0.0.1: yields the
    :class:`helpers.World`, the API's URL, ``launch()`` (start the process, wait until it
    serves) and the directory; every process launched is killed afterwards."""
    from helpers import World, free_port, healthy, start, wait_until
    from lambtrace.config import NodeConfig, genesis_to_json
    from signer import save_key_file

    w = World(now=int(time.time() * 1000))
    (tmp_path / "genesis.json").write_text(genesis_to_json(w.genesis))
    save_key_file(w.validator, tmp_path / "node.json", passphrase=None, insecure_plain=True)
    port = free_port()
    cfg = NodeConfig(name="league", genesis=tmp_path / "genesis.json", data=tmp_path / "data",
                     listen=f"127.0.0.1:{port}", key=tmp_path / "node.json")
    cfg.save(tmp_path / "config.json")
    url = f"http://127.0.0.1:{port}"
    procs: list[subprocess.Popen[bytes]] = []

    def launch() -> subprocess.Popen[bytes]:
        p = start(tmp_path / "config.json", tmp_path / "node.log")
        procs.append(p)
        assert wait_until(lambda: healthy(url), 30), (tmp_path / "node.log").read_text()
        return p

    yield w, url, launch, tmp_path
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
