"""Process settings applied by a node and an audit, and put back by the returned function."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pytest

from lambtrace.tuning import GC_THRESHOLD, tune_process


@pytest.fixture
def saved_gc() -> Iterator[None]:
    threshold, enabled, switch = gc.get_threshold(), gc.isenabled(), sys.getswitchinterval()
    yield
    gc.set_threshold(*threshold)
    gc.enable() if enabled else gc.disable()
    gc.unfreeze()
    sys.setswitchinterval(switch)


def test_raises_the_young_threshold_freezes_startup_objects_and_restores(saved_gc: None,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAMBTRACE_GC_THRESHOLD", raising=False)
    before = gc.get_threshold()
    restore = tune_process()
    assert gc.get_threshold() == (GC_THRESHOLD, *before[1:])
    assert gc.get_freeze_count() > 0
    restore()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert gc.isenabled()


@pytest.mark.parametrize(("raw", "expect"), [("20000", (20000,)), ("bogus", (GC_THRESHOLD,)), ("", (GC_THRESHOLD,))])
def test_threshold_from_the_environment(saved_gc: None, monkeypatch: pytest.MonkeyPatch, raw: str,
                                        expect: tuple[int]) -> None:
    monkeypatch.setenv("LAMBTRACE_GC_THRESHOLD", raw)
    restore = tune_process()
    assert gc.get_threshold()[:1] == expect
    restore()


def test_zero_turns_the_collector_off_until_restored(saved_gc: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBTRACE_GC_THRESHOLD", "0")
    restore = tune_process()
    assert not gc.isenabled()
    restore()
    assert gc.isenabled()


def test_a_bad_switch_interval_falls_back(saved_gc: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMBTRACE_SWITCH_S", "soon")
    restore = tune_process()
    assert sys.getswitchinterval() == pytest.approx(0.005)
    restore()
