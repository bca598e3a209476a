"""Fuzz block and commit-certificate decoding and checking, as block sync uses them.

The input is ``{"header": header value, "events": [signed event value, ...], "cert":
certificate value}``: a committed block a peer sends (``{"t": "commit", ...}``,
``Replica._on_commit``).  On a fresh node of the four-validator chain (tests/fuzz/_net.py)
the harness runs, in block sync's order:

* :meth:`Header.decode` of the header's bytes and :meth:`Header.from_dict` (allowed:
  :class:`Rejected` ``bad_header``);
* :meth:`CommitCertificate.from_dict` (allowed: :class:`Rejected` ``bad_certificate``),
  :func:`commit_tally` (never raises) and :func:`verify_commit` against the header's
  hash (allowed: :class:`VerificationError`);
* ``NodeApp.value_of`` and ``NodeApp.validate`` (re-execution; they answer, never raise);
* when all of that passes, ``NodeApp.commit``; the store must then give back the very
  header, certificate and leaves (``NodeApp.committed``).

The mutator edits the block structurally, then (mostly) signs the events again with their
actors' genuine keys, builds the header those events make, and has ``v1``-``v3`` sign the
certificate, so mutants get through to execution and commit.

    .venv/bin/python tests/fuzz/fuzz_blocks.py -max_total_time=600 -max_len=65536 /tmp/corpus-blocks
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

with _harness.instrumented():
    import _net
    import _worlds

    from ledger import codec
    from ledger import events as E
    from ledger.blocks.builder import build_block
    from ledger.blocks.certificate import CommitCertificate, commit_tally, sign_commit, verify_commit
    from ledger.blocks.header import Header
    from ledger.errors import DecodeError, Rejected, VerificationError
    from node.consensus import NodeApp


def test_one_input(data: bytes) -> None:
    try:
        value = codec.decode(data, _harness.input_limits(), max_bytes=1 << 22)
    except DecodeError:
        return
    if type(value) is not dict or type(value.get("events")) is not list:
        return
    hv, cv = value.get("header"), value.get("cert")
    leaves = [_worlds.leaf_of(e) for e in value["events"]]
    payload = {"header": hv, "events": leaves}
    g = _net.genesis()

    header: Header | None = None
    try:
        header_bytes = codec.encode(hv)
    except DecodeError:
        header_bytes = None
    if header_bytes is not None:
        try:
            header = Header.decode(header_bytes)
        except Rejected as exc:
            if exc.code != "bad_header":
                raise _harness.Finding(f"Header.decode refused with code {exc.code!r}") from exc
    try:
        parsed = Header.from_dict(hv)
    except Rejected as exc:
        if exc.code != "bad_header":
            raise _harness.Finding(f"Header.from_dict refused with code {exc.code!r}") from exc
        parsed = None
    if (parsed is None) != (header is None) or (parsed is not None and parsed != header):
        raise _harness.Finding("Header.decode and Header.from_dict disagree")

    cert: CommitCertificate | None = None
    try:
        cert = CommitCertificate.from_dict(cv)
    except Rejected as exc:
        if exc.code != "bad_certificate":
            raise _harness.Finding(f"CommitCertificate.from_dict refused with code {exc.code!r}") from exc
    if cert is not None:
        if CommitCertificate.from_dict(codec.decode(cert.encode())) != cert:
            raise _harness.Finding("a certificate does not survive its own encoding")
        commit_tally(cert, g.chain, g.validators)

    node = _net.new_node()
    app = NodeApp(node)
    claimed = app.value_of(payload)
    if (claimed is None) != (header is None):
        raise _harness.Finding("NodeApp.value_of and Header.from_dict disagree")
    if cert is None or claimed is None:
        return
    try:
        verify_commit(cert, g.chain, 1, claimed, g.validators)
    except VerificationError:
        return
    got, valid = app.validate(1, payload, "", _net.NOW)
    if got != claimed or not valid:
        return
    app.commit(1, payload, cert)
    back = app.committed(1)
    if back is None or back[1] != cert or back[0]["events"] != leaves or Header.from_dict(back[0]["header"]) != header:
        raise _harness.Finding("the store does not give back the block it committed")


# --------------------------------------------------------------------------- mutation


def _reseal(value: Any, rng: random.Random) -> Any:
    """Sign the events again, make the header they build, certify it (each mostly)."""
    if type(value) is not dict or type(value.get("events")) is not list:
        return value
    evs = value["events"]
    if rng.random() < 0.9:
        for i, ev in enumerate(evs):
            env = ev.get("event") if type(ev) is dict else None
            actor = env.get("actor") if type(env) is dict else None
            if type(actor) is str and rng.random() < 0.95:
                try:
                    evs[i] = {**ev, "sigs": E.sign(env, _net.actor_signer(actor))["sigs"]}  # type: ignore[arg-type]
                except Exception:  # no canonical form: leave it
                    pass
    if rng.random() < 0.7:
        node = _net.new_node()
        parsed = []
        for ev in evs:
            try:
                parsed.append(E.parse_leaf(_worlds.leaf_of(ev)))
            except Rejected:
                continue
        old = value.get("header")
        t: int = old["time"] if type(old) is dict and type(old.get("time")) is int else _net.T0 + 500
        try:
            built = build_block(node.store, node.store.frontier, node.genesis, height=1, prev=node.store.last_hash,
                                time_ms=t, proposer=_net.proposer_of(1, 0), candidates=parsed,
                                max_events=len(parsed) + 1, max_bytes=1 << 24)
        except Exception:  # a header value build_block cannot take: leave the block as it is
            return value
        if rng.random() < 0.8:
            value["events"] = [codec.decode(ev.leaf) for ev in built.events]
        value["header"] = built.header.to_dict()
    if rng.random() < 0.8:
        try:
            h = Header.from_dict(value.get("header"))
            c = value.get("cert")
            rnd: int = c["round"] if type(c) is dict and type(c.get("round")) is int else 0
            names = rng.choice([("v1", "v2", "v3"), ("v1", "v2"), ("league", "v1", "v2", "v3"), ("v3", "v1", "v2")])
            cert = sign_commit(_net.CHAIN, 1, rnd, h.hash, [(n, _net.signer(n)) for n in names])
            value["cert"] = cert.to_dict()
        except (Rejected, ValueError, TypeError, DecodeError):
            pass
    return value


def seeds() -> list[bytes]:
    value, payload = _net.block_one()
    all_leaves = list(_net.enrol_leaves()) + list(_net.season_leaves())
    rng = random.Random(0)
    out = []
    cert = sign_commit(_net.CHAIN, 1, 0, value, [(n, _net.signer(n)) for n in ("v1", "v2", "v3")]).to_dict()
    out.append({"header": payload["header"], "events": [codec.decode(x) for x in payload["events"]], "cert": cert})
    big = {"header": payload["header"], "events": [codec.decode(x) for x in all_leaves], "cert": cert}
    out.append(_reseal(big, random.Random(1)))
    out.append({"header": payload["header"], "events": [], "cert": cert})
    return [codec.encode(x) for x in out] + [codec.encode(_reseal(x, rng)) for x in out]


def _dictionary() -> list[Any]:
    value, payload = _net.block_one()
    return [*_net.NAMES, _net.CHAIN, value, payload["header"], _net.genesis().hash, _net.genesis().validators_hash,
            _net.T0, _net.T0 + 500, 0, 1, 2, 2**31, 2**63 - 1, "coop-1", "plant-1", "agent-1", _net.OFFICE,
            "315252300000001", "c-1", "l-1", "shp-1", *E.KINDS]


MUTATOR = _harness.Mutator(dictionary=_dictionary(), post=_reseal, canonical_share=1.0, byte_share=0.03)


if __name__ == "__main__":
    _harness.run(test_one_input, seeds, MUTATOR)
