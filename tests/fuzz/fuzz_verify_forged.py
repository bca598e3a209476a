"""Fuzz the deep checks of ``verify.verify_label``: bundles a test validator re-certifies.

Editing a certified bundle fails at its Merkle proof or certificate, long before the
story, membership, key validity and event-signature checks (tests/test_verify_label.py
says as much).  So this harness's input is a *log*, not a bundle:
``{"form": 0|1, "label": str, "events": [signed event value, ...], "picks": [int, ...]}``.
It encodes each event as a leaf, builds the Merkle log, the header, the recall map
(form 0, a ``v3`` bundle; form 1 is the chain without one, ``v2``) and a certificate
signed by the world's validator, and asks ``verify_label`` about the picked leaves.
The mutator edits the events structurally and then (usually) signs each one again with
a genuine key of its actor, so the signature check at the end passes too.

Allowed: :class:`ledger.errors.VerificationError` with a precise reason (not the
safety net's "bundle does not hold together").

    .venv/bin/python tests/fuzz/fuzz_verify_forged.py -max_total_time=600 -max_len=65536 /tmp/corpus-forged
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

with _harness.instrumented():
    import _worlds
    from fuzz_verify_label import check, legacy

    from helpers_api import ApiWorld, forge_bundle
    from ledger import codec
    from ledger import events as E
    from ledger.errors import DecodeError
    from verify.label import MAX_EVENTS


def _world(form: Any) -> ApiWorld:
    return legacy() if form == 1 else _worlds.seasoned()


def test_one_input(data: bytes) -> None:
    try:
        value = codec.decode(data, _harness.input_limits())
    except DecodeError:
        return
    if type(value) is not dict:
        return
    evs, picks, label = value.get("events"), value.get("picks"), value.get("label")
    if type(evs) is not list or not evs or len(evs) > 64 or type(picks) is not list or type(label) is not str:
        return
    leaves = [_worlds.leaf_of(e) for e in evs]
    chosen = sorted({p for p in picks if type(p) is int and 0 <= p < len(leaves)})
    if not chosen or len(chosen) > MAX_EVENTS or not 0 < len(label) <= 64:
        return
    w = _world(value.get("form"))
    check(forge_bundle(w, leaves, chosen, label=label), w.genesis, label)


def _signers(w: ApiWorld) -> dict[str, list[Any]]:
    """Each actor's genuine signers in ``w`` (its enrolled keys, terminals and rotated-in keys)."""
    out: dict[str, list[Any]] = {}
    for name, s in w.keys.items():
        out.setdefault("agent-1" if name == "term-1" else name, []).append(s)
    return out


_SIGNERS: dict[int, dict[str, list[Any]]] = {}


def _resign(value: Any, rng: random.Random) -> Any:
    """Sign every event again with a genuine key of its envelope's actor (mostly)."""
    if type(value) is not dict or type(value.get("events")) is not list or rng.random() < 0.15:
        return value
    form = 1 if value.get("form") == 1 else 0
    if form not in _SIGNERS:
        _SIGNERS[form] = _signers(_world(form))
    signers = _SIGNERS[form]
    out = []
    for ev in value["events"]:
        env = ev.get("event") if type(ev) is dict else None
        actor = env.get("actor") if type(env) is dict else None
        if type(actor) is str and actor in signers and rng.random() < 0.95:
            try:
                ev = {**ev, "sigs": E.sign(env, rng.choice(signers[actor]))["sigs"]}  # type: ignore[arg-type]
            except Exception:  # an envelope with no canonical form: leave it as it is
                pass
        out.append(ev)
    value["events"] = out
    return value


def seeds() -> list[bytes]:
    out = []
    for form in (0, 1):
        w = _world(form)
        leaves = _worlds.leaves(w)
        evs = [codec.decode(leaf) for leaf in leaves]
        picks = [i for i, _ in _bundle_entries(w)]
        out.append(codec.encode({"form": form, "label": _worlds.LABEL, "events": evs, "picks": picks}))
        extra = [codec.decode(x) for x in _worlds.extra_events()] if form == 0 else []
        n = len(evs)
        out.append(codec.encode({"form": form, "label": _worlds.LABEL, "events": evs + extra,
                                 "picks": picks + list(range(n, n + len(extra)))}))
        out.append(codec.encode({"form": form, "label": "l-0002", "events": evs, "picks": picks}))
    return out


def _bundle_entries(w: ApiWorld) -> list[tuple[int, bytes]]:
    r = w.http.get(f"/v1/labels/{_worlds.LABEL}/proof", headers={"Accept": "application/msgpack"})
    b = codec.decode(r.get_data())
    return [(e[0], e[1]) if type(e) is list else (e["index"], e["leaf"]) for e in b["events"]]


MUTATOR = _harness.Mutator(dictionary=_worlds.dictionary(), post=_resign, canonical_share=1.0, byte_share=0.02)


if __name__ == "__main__":
    _harness.run(test_one_input, seeds, MUTATOR)
