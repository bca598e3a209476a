"""Refusals kept in lists (a request's results, a block's rejected events) carry no
traceback: with one, the catching frame and the list form a cycle that pins the request's
values until the cyclic collector runs, which a node does rarely (lambtrace.tuning)."""

from __future__ import annotations

import gc
import weakref

from ledger.errors import Rejected


def test_untraced_drops_the_traceback_and_the_chain() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError:
            raise Rejected("malformed", "outer") from None
    except Rejected as exc:
        kept = exc.untraced()
    assert kept.__traceback__ is None and kept.__cause__ is None and kept.__context__ is None
    assert (kept.code, str(kept)) == ("malformed", "outer")


class _Big:
    """Stands for a request's megabytes; weakly referenceable."""


def _collect_refusals(payload: _Big, untrace: bool) -> list[Rejected]:
    out: list[Rejected] = []
    try:
        raise Rejected("malformed", "junk")
    except Rejected as exc:
        out.append(exc.untraced() if untrace else exc)
    return out


def test_a_kept_refusal_does_not_pin_the_frame_that_caught_it() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        for untrace, pinned in ((False, True), (True, False)):
            payload = _Big()
            ref = weakref.ref(payload)
            kept = _collect_refusals(payload, untrace)
            del payload
            assert (ref() is not None) == pinned, untrace  # without the cyclic collector
            del kept
            gc.collect()
    finally:
        if was:
            gc.enable()
