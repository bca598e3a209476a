"""Fuzz ``verify.verify_label(bundle, genesis)`` with mutants of genuine bundles.

Seeds: the genuine bundle of the seasoned chain as served (``v3`` msgpack, with and
without the embedded genesis, and as JSON text) and, from the same season on a chain
whose genesis predates the recall map, ``v2`` and the archived ``v1``.  The mutator
edits the decoded bundle (msgpack or JSON) structurally.  Every input is checked
against both trusted geneses.

Allowed: :class:`ledger.errors.VerificationError` with a precise reason.  A
:class:`verify.errors.MalformedBundle` that comes from the verifier's safety net
("bundle does not hold together: KeyError ...") is a finding too: an input no shape
check foresaw.

    .venv/bin/python tests/fuzz/fuzz_verify_label.py -max_total_time=600 -max_len=65536 /tmp/corpus-label
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

with _harness.instrumented():
    import _worlds

    from helpers_api import ApiWorld, as_v1
    from ledger import codec
    from ledger.errors import VerificationError
    from verify import verify_label

SAFETY_NET = "bundle does not hold together"


@functools.cache
def legacy() -> ApiWorld:
    """The season on a chain whose genesis has no recall map (its bundles are v2)."""
    return _worlds.make_world("legacy", recall_map=False)


def check(bundle: Any, genesis: Any, label: str | None = None) -> None:
    """``verify_label`` must return or raise a precise VerificationError."""
    try:
        verify_label(bundle, genesis, label=label)
    except VerificationError as exc:
        if not (isinstance(exc.code, str) and exc.code):
            raise _harness.Finding("a VerificationError without a code") from exc
        if exc.message.startswith(SAFETY_NET):
            raise _harness.Finding(f"imprecise refusal (safety net): {exc.message}") from exc


def test_one_input(data: bytes) -> None:
    for w in (_worlds.seasoned(), legacy()):
        check(data, w.genesis)


def _proof(w: ApiWorld, query: str = "", *, accept_msgpack: bool = True) -> bytes:
    headers = {"Accept": "application/msgpack"} if accept_msgpack else {}
    r = w.http.get(f"/v1/labels/{_worlds.LABEL}/proof{query}", headers=headers)
    assert r.status_code == 200, r.status_code
    return r.get_data()


def seeds() -> list[bytes]:
    w, old = _worlds.seasoned(), legacy()
    v2 = _proof(old)
    return [_proof(w), _proof(w, "?genesis=1"), _proof(w, accept_msgpack=False), v2, _proof(old, "?genesis=1"),
            codec.encode(as_v1(old, codec.decode(v2)))]


def _dictionary() -> list[Any]:
    w = _worlds.seasoned()
    h = w.store.last_header
    assert h is not None
    return [*_worlds.dictionary(), w.genesis.hash, legacy().genesis.hash, h.hash, h.log_root, h.prev,
            "lambtrace-label-proof/v1", "lambtrace-label-proof/v2", "lambtrace-label-proof/v3", h.log_size,
            h.height, *_worlds.leaves(w)[:8]]


MUTATOR = _harness.Mutator(dictionary=_dictionary(), canonical_share=0.95, byte_share=0.1)


if __name__ == "__main__":
    _harness.run(test_one_input, seeds, MUTATOR)
