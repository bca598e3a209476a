"""Shared fixtures: a small world of actors and keys, and a node served over real HTTP."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LAMBTRACE_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow: run with LAMBTRACE_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
