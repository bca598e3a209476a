"""Fuzz event admission from raw leaf bytes: ``ledger.events.parse_leaf`` then the rules.

A node turns untrusted leaf bytes (relayed by a peer, proposed in a block, read from a
bundle) into an event with :func:`ledger.events.parse_leaf` (allowed: :class:`Rejected`
with a snake_case code) and checks it against state with
:func:`ledger.rules.try_event` (allowed: :class:`Rejected`).  The rules run here on the
seasoned chain's state with a signature check that accepts everything, so mutants reach
every kind's own rules as if an enrolled actor had signed them; the mutator re-points
``sigs`` at the keys of the envelope's actor for the same reason.

Invariants of a leaf that parses: its canonical bytes are the leaf, its id is the hash
of its envelope bytes, and its JSON form (the API's) parses back to the same event.

    .venv/bin/python tests/fuzz/fuzz_events.py -max_total_time=600 /tmp/corpus-events
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

with _harness.instrumented():
    import _worlds

    from ledger import events, rules
    from ledger.errors import Rejected
    from ledger.hashing import TAG_EVENT, H
    from ledger.state import StateView

_CODE = re.compile(r"^[a-z][a-z0-9_]*\Z")


def _always(alg: str, pub: bytes, msg: bytes, sig: bytes) -> bool:
    return True


def test_one_input(data: bytes) -> None:
    w = _worlds.seasoned()
    try:
        ev = events.parse_leaf(data)
    except Rejected as exc:
        if not _CODE.match(exc.code):
            raise _harness.Finding(f"rejection code {exc.code!r} is not a stable snake_case code") from exc
        return
    if ev.leaf != data or ev.id != H(TAG_EVENT, ev.envelope_bytes):
        raise _harness.Finding("a parsed event's leaf or id does not match its bytes")
    again = events.parse_unverified(events.from_json(json.loads(json.dumps(events.to_json(ev)))))
    if again.leaf != ev.leaf or again.id != ev.id:
        raise _harness.Finding("the JSON form of an event parses to another event")
    ctx = rules.Context(w.genesis, max(ev.time, w.genesis.time), _always)
    try:
        rules.try_event(StateView(w.store), ev, ctx)
    except Rejected as exc:
        if not _CODE.match(exc.code):
            raise _harness.Finding(f"rejection code {exc.code!r} is not a stable snake_case code") from exc


def _resign(value: Any, rng: random.Random) -> Any:
    """Point ``sigs`` at keys of the envelope's actor (signatures pass in this harness)."""
    if rng.random() < 0.3 or type(value) is not dict or type(value.get("event")) is not dict:
        return value
    actor = value["event"].get("actor")
    kids = _worlds.key_of_actor().get(actor) if type(actor) is str else None
    if kids:
        value["sigs"] = [{"key": rng.choice(kids), "sig": bytes(64)}]
    return value


def seeds() -> list[bytes]:
    return _worlds.leaves(_worlds.seasoned()) + _worlds.extra_events()


MUTATOR = _harness.Mutator(dictionary=_worlds.dictionary(), post=_resign, canonical_share=0.95, byte_share=0.1)


if __name__ == "__main__":
    _harness.run(test_one_input, seeds, MUTATOR)
