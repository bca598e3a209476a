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

import dataclasses
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

with _harness.instrumented():
    import _worlds
    import msgpack
    from fuzz_verify_label import check, legacy

    from helpers_api import VALIDATOR, ApiWorld
    from ledger import codec, merkle, recallmap
    from ledger import events as E
    from ledger.blocks.certificate import sign_commit
    from ledger.blocks.header import Header
    from ledger.errors import DecodeError, Rejected
    from verify.label import MAX_EVENTS


def _world(form: Any) -> ApiWorld:
    return legacy() if form == 1 else _worlds.seasoned()


def _leaf(ev: Any) -> bytes:
    try:
        return codec.encode(ev)
    except DecodeError:
        return msgpack.packb(ev, use_bin_type=True)


def _recalls(leaves: list[bytes], indexes: list[int], label: str) -> list[int]:
    """The picked recalls of ``label``, its carcass or its lamb (what the story will report)."""
    evs = {}
    for i in indexes:
        try:
            evs[i] = E.parse_leaf(leaves[i])
        except Rejected:
            continue
    mine = {("label", label)}
    for ev in evs.values():
        if ev.kind == "label.issue" and any(x.get("label") == label for x in ev.body["labels"]):
            mine.add(("carcass", ev.body["carcass"]))
    for ev in evs.values():
        if ev.kind == "lamb.slaughter" and ("carcass", ev.body["carcass"]) in mine:
            mine.add(("lamb", ev.body["tag"]))
    return [i for i, ev in sorted(evs.items())
            if ev.kind == "recall" and any((t["type"], t["id"]) in mine for t in ev.body["targets"])]


def forge(w: ApiWorld, leaves: list[bytes], picks: list[int], label: str) -> bytes:
    """A bundle over the log ``leaves`` proving ``picks``, certified by the world's validator
    (as tests/test_verify_label.py's ``forge``)."""
    g = w.genesis
    cr = merkle.CompactRange()
    nodes: dict[tuple[int, int], bytes] = {}
    for leaf in leaves:
        for level, index, h in cr.append(merkle.leaf_hash(leaf)):
            nodes[(level, index)] = h
    last = w.store.last_header
    assert last is not None
    header = Header(chain=g.chain, height=last.height + 1, time=last.time + 1000, prev=last.hash,
                    log_size=cr.size, log_root=cr.root(), validators=g.validators_hash, proposer=g.validators[0].name)
    indexes = sorted(picks)
    proof = None
    if recallmap.enabled(g):
        value = recallmap.chain_of([leaves[i] for i in _recalls(leaves, indexes, label)])
        tree = recallmap.RecallTree({label: value} if value is not None else {})
        header = dataclasses.replace(header, state_root=tree.root)
        proof = tree.prove(label)
    cert = sign_commit(g.chain, header.height, 0, header.hash, [(VALIDATOR, w.validator)])
    out: dict[str, Any] = {
        "format": "lambtrace-label-proof/v2",
        "genesis_hash": g.hash,
        "label": label,
        "checkpoint": {"header": header.to_dict(), "certificate": cert.to_dict()},
        "events": [{"leaf": leaves[i], "index": i} for i in indexes],
        "proof": merkle.multiproof(indexes, cr.size, lambda lv, ix: nodes[(lv, ix)]),
        "gaps": [],
    }
    if proof is not None:  # v3's compact form
        out["format"] = "lambtrace-label-proof/v3"
        out["events"] = [[i, leaves[i]] for i in indexes]
        out["proof"] = b"".join(out["proof"])
        out["checkpoint"]["certificate"] = {"round": cert.round, "precommits": cert.to_dict()["precommits"]}
        out["recalls"] = proof.to_value()
    return codec.encode(out)


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
    leaves = [_leaf(e) for e in evs]
    chosen = sorted({p for p in picks if type(p) is int and 0 <= p < len(leaves)})
    if not chosen or len(chosen) > MAX_EVENTS or not 0 < len(label) <= 64:
        return
    w = _world(value.get("form"))
    check(forge(w, leaves, chosen, label), w.genesis, label)


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
