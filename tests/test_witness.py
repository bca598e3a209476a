"""``lambtrace witness``: keep the last trusted checkpoint, demand consistency proofs, alarm on forks.

Against a real node (``Served``) that advances, the witness initialises, advances and
stays put.  Then a small Flask proxy serves, under the same URL, a node whose chain was
rewritten from the same genesis and validator key (a fork after a common prefix): the
witness raises the alarm (exit 3, a JSON line on stdout, a message on stderr) whether
the rewritten chain is ahead of, level with, or behind the trusted checkpoint, and keeps
its state.  A checkpoint whose certificate does not verify is refused (exit 1) without
an alarm, and the state is kept too.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request
from werkzeug.serving import make_server

from helpers import Served
from helpers_api import AGENT, CHAIN, COOP, VALIDATOR, ApiWorld
from lambtrace.cli import main
from lambtrace.config import genesis_to_json
from ledger.blocks.builder import build_block
from ledger.blocks.certificate import sign_commit
from ledger.events import parse_unverified
from node.kv import LevelKV
from node.node import Node
from node.store import ChainStore
from verify.witness import check_extension, verify_checkpoint


class Proxy:
    """A Flask app forwarding every request to the app of the node it currently fronts;
    ``rewrite`` may edit a JSON answer on its way out."""

    def __init__(self, node: Node) -> None:
        from api import create_app

        self.backend = create_app(node)
        self.rewrite: Callable[[str, Any], Any] | None = None
        app = Flask("proxy")

        @app.route("/", defaults={"path": ""}, methods=["GET", "POST"])
        @app.route("/<path:path>", methods=["GET", "POST"])
        def forward(path: str) -> Response:
            client = self.backend.test_client()
            r = client.open("/" + path, method=request.method, query_string=request.query_string.decode(),
                            headers={k: v for k, v in request.headers if k.lower() != "host"}, data=request.get_data())
            body = r.get_data()
            if self.rewrite is not None and r.mimetype == "application/json":
                body = json.dumps(self.rewrite("/" + path, json.loads(body))).encode()
            return Response(body, status=r.status_code, mimetype=r.mimetype)

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def swap(self, node: Node) -> None:
        from api import create_app

        self.backend = create_app(node)

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


def extend(store: ChainStore, w: ApiWorld, events: list[dict[str, Any]]) -> None:
    w.now += 1000
    built = build_block(store, store.frontier, w.genesis, height=store.height + 1, prev=store.last_hash,
                        time_ms=w.now, proposer=VALIDATOR, candidates=[parse_unverified(e) for e in events],
                        max_events=100, max_bytes=1 << 20)
    assert not built.rejected
    store.commit(built, sign_commit(CHAIN, built.header.height, 0, built.header.hash, [(VALIDATOR, w.validator)]))


class Forked:
    """Chain A (an ApiWorld season in LevelDB) and chain B, a copy of A's first 8 blocks."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "a").mkdir()
        self.w = w = ApiWorld(LevelKV(str(tmp / "a" / "chain.ldb")))
        w.season()
        w.node.stop()
        w.store.close()
        shutil.copytree(tmp / "a", tmp / "b")
        self.a = ChainStore(LevelKV(str(tmp / "a" / "chain.ldb")), w.genesis)
        self.b = ChainStore(LevelKV(str(tmp / "b" / "chain.ldb")), w.genesis)
        self.node_a = self.node(self.a)
        self.node_b = self.node(self.b)
        self.gpath = tmp / "genesis.json"
        self.gpath.write_text(genesis_to_json(w.genesis))
        self.state = tmp / "witness.json"
        self.serial = 3

    def node(self, store: ChainStore) -> Node:
        return Node(store, self.w.genesis, name=VALIDATOR, signer=self.w.validator,
                    clock=lambda: self.w.now + 1000, verify_threads=0)

    def grow(self, store: ChainStore, actor: str = AGENT) -> None:
        extend(store, self.w, [self.w.lamb_tag(actor, f"3152523{self.serial:08d}")])
        self.serial += 1

    def close(self) -> None:
        self.a.close()
        self.b.close()


@pytest.fixture
def forked(tmp_path: Path) -> Iterator[Forked]:
    f = Forked(tmp_path)
    yield f
    f.close()


def witness(capsys: pytest.CaptureFixture[str], url: str, f: Forked, *extra: str) -> tuple[int, dict[str, Any], str]:
    rc = main(["witness", "--url", url, "--state", str(f.state), "--genesis", str(f.gpath), *extra])
    cap = capsys.readouterr()
    lines = [ln for ln in cap.out.splitlines() if ln.strip()]
    return rc, json.loads(lines[-1]), cap.err


def test_real_node_advancing(forked: Forked, capsys: pytest.CaptureFixture[str]) -> None:
    f = forked
    served = Served(f.node_a)
    try:
        rc, out, _ = witness(capsys, served.url, f)
        assert rc == 0 and out["status"] == "initialised" and out["height"] == 8
        for _ in range(3):
            f.grow(f.a)
        rc, out, _ = witness(capsys, served.url, f)
        assert rc == 0 and (out["status"], out["from"], out["to"]) == ("advanced", 8, 11)
        assert json.loads(f.state.read_text())["checkpoint"]["height"] == 11
        rc, out, _ = witness(capsys, served.url, f)
        assert rc == 0 and out["status"] == "unchanged"
        # keep watching: a few looks, the node advancing in between
        f.grow(f.a)
        rc, out, _ = witness(capsys, served.url, f, "--every", "0.01", "--count", "3")
        assert rc == 0 and out["to"] == 12
    finally:
        served.close()


@pytest.mark.parametrize("b_blocks", [3, 1, 0], ids=["rewrite-ahead", "rewrite-level", "rollback"])
def test_rewritten_history_raises_the_alarm(forked: Forked, capsys: pytest.CaptureFixture[str], b_blocks: int) -> None:
    f = forked
    f.grow(f.a)  # A: block 9 (the trusted one)
    for _ in range(b_blocks):
        f.grow(f.b, actor=COOP)  # B: other blocks from 9 on
    proxy = Proxy(f.node_a)
    try:
        rc, out, _ = witness(capsys, proxy.url, f)
        assert rc == 0 and out["height"] == 9
        trusted = f.state.read_text()
        proxy.swap(f.node_b)  # the same URL now serves the rewritten chain
        rc, out, err = witness(capsys, proxy.url, f)
        assert rc == 3, out
        want = "rollback" if b_blocks == 0 else "fork"
        assert out["alarm"] == want and out["trusted_height"] == 9, out
        assert err.startswith(f"ALARM: {want}: ")
        assert f.state.read_text() == trusted  # the trusted checkpoint is kept
        # swapping back: consistent again
        proxy.swap(f.node_a)
        f.grow(f.a)
        rc, out, _ = witness(capsys, proxy.url, f)
        assert rc == 0 and out["status"] == "advanced"
    finally:
        proxy.close()


def test_a_server_hiding_the_fork_behind_its_answers(forked: Forked, capsys: pytest.CaptureFixture[str]) -> None:
    """The rewritten node also lies about the trusted height's header (serving the old hash):
    the consistency proof still gives it away."""
    f = forked
    f.grow(f.a)
    f.grow(f.b, actor=COOP)
    f.grow(f.b, actor=COOP)
    proxy = Proxy(f.node_a)
    try:
        assert witness(capsys, proxy.url, f)[0] == 0
        old_hash = json.loads(f.state.read_text())["checkpoint"]["hash"]
        proxy.swap(f.node_b)

        def lie(path: str, body: Any) -> Any:
            if path == "/v1/blocks/9":
                body["hash"] = old_hash
            return body

        proxy.rewrite = lie
        rc, out, _ = witness(capsys, proxy.url, f)
        assert rc == 3 and out["alarm"] == "fork" and "extend" in out["message"]
    finally:
        proxy.close()


def test_a_checkpoint_that_does_not_verify_is_refused(forked: Forked, capsys: pytest.CaptureFixture[str]) -> None:
    f = forked
    proxy = Proxy(f.node_a)
    try:
        assert witness(capsys, proxy.url, f)[0] == 0
        trusted = f.state.read_text()
        f.grow(f.a)

        def forge(path: str, body: Any) -> Any:
            if path == "/v1/blocks/latest":
                sig = body["certificate"]["precommits"][0]["sig"]
                body["certificate"]["precommits"][0]["sig"] = ("0" if sig[0] != "0" else "1") + sig[1:]
            return body

        proxy.rewrite = forge
        rc, out, err = witness(capsys, proxy.url, f)
        assert rc == 1 and out["code"] == "bad_certificate" and "error: bad_certificate" in err
        assert f.state.read_text() == trusted
    finally:
        proxy.close()


def test_usage_errors(forked: Forked, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = forked
    f.state.write_text("{not json")
    assert main(["witness", "--url", "http://127.0.0.1:9", "--state", str(f.state), "--genesis", str(f.gpath)]) == 2
    f.state.unlink()
    assert main(["witness", "--url", "http://127.0.0.1:9", "--state", str(f.state), "--genesis", str(f.gpath)]) == 2
    assert "transport_error" in capsys.readouterr().err


def test_pure_checks(forked: Forked) -> None:
    f = forked
    g = f.w.genesis

    def cp(store: ChainStore, h: int) -> Any:
        header, cert = store.header(h), store.certificate(h)
        assert header is not None and cert is not None
        return verify_checkpoint(header.to_dict(), cert.to_dict(), g)

    from ledger import merkle

    f.grow(f.a)
    f.grow(f.a)
    f.grow(f.b, actor=COOP)
    t8, t10, b9 = cp(f.a, 8), cp(f.a, 10), cp(f.b, 9)
    proof = merkle.consistency_proof(t8.log_size, t10.log_size, f.a.get_node)
    assert check_extension(t8, t10, proof) == "advanced"
    assert check_extension(t10, t10, []) == "unchanged"
    from verify.errors import ForkDetected, Rollback

    with pytest.raises(Rollback):
        check_extension(t10, t8, [])
    with pytest.raises(ForkDetected):
        check_extension(cp(f.a, 9), b9, [])
    with pytest.raises(ForkDetected):  # a proof for another pair of sizes
        check_extension(t8, t10, proof[:-1])


# -- several nodes ------------------------------------------------------------------------------


def block_hash(store: ChainStore, height: int) -> str:
    header = store.header(height)
    assert header is not None
    return header.hash.hex()


def witness_many(capsys: pytest.CaptureFixture[str], urls: list[str], f: Forked) -> tuple[int, dict[str, Any], str]:
    rc = main(["witness", *[a for u in urls for a in ("--url", u)], "--state", str(f.state), "--genesis",
               str(f.gpath)])
    cap = capsys.readouterr()
    lines = [ln for ln in cap.out.splitlines() if ln.strip()]
    return rc, json.loads(lines[-1]), cap.err


def test_several_nodes_on_one_chain_advance_together(forked: Forked, capsys: pytest.CaptureFixture[str]) -> None:
    """Node B holds a prefix of node A's chain (it lags): consistent, the witness trusts
    A's latest, and a node that cannot be reached is reported, not an alarm."""
    f = forked
    f.grow(f.a)
    f.grow(f.a)
    a, b = Served(f.node_a), Served(f.node_b)
    try:
        rc, out, _ = witness_many(capsys, [b.url, a.url], f)
        assert rc == 0 and out["status"] == "initialised" and out["height"] == 10, out
        assert out["nodes"] == {a.url: {"height": 10, "hash": block_hash(f.a, 10)},
                                b.url: {"height": 8, "hash": block_hash(f.b, 8)}}
        f.grow(f.a)
        dead = "http://127.0.0.1:9"
        rc, out, _ = witness_many(capsys, [a.url, b.url, dead], f)
        assert rc == 0 and (out["status"], out["from"], out["to"]) == ("advanced", 10, 11), out
        assert out["nodes"][dead]["error"] == "transport_error"
        assert json.loads(f.state.read_text())["checkpoint"]["height"] == 11
        # every node that answers lags behind the trusted checkpoint (its node is down):
        # nothing to check against it yet, and nothing to alarm about
        rc, out, err = witness_many(capsys, [b.url, dead], f)
        assert rc == 0 and (out["status"], out["trusted"], out["height"]) == ("behind", 11, 8), out
        # but a node that now serves less than it served before has rolled back
        proxy = Proxy(f.node_a)
        try:
            assert witness_many(capsys, [proxy.url, b.url], f)[0] == 0
            proxy.swap(f.node_b)
            rc, out, err = witness_many(capsys, [proxy.url, b.url], f)
            assert rc == 3 and out["alarm"] == "rollback" and out["urls"] == [proxy.url], out
            assert (out["trusted_height"], out["served_height"]) == (11, 8) and "ALARM: rollback" in err
        finally:
            proxy.close()
        # none reachable: exit 2, state kept
        assert main(["witness", "--url", dead, "--url", "http://127.0.0.1:7", "--state", str(f.state),
                     "--genesis", str(f.gpath)]) == 2
        assert "transport_error" in capsys.readouterr().err
        assert json.loads(f.state.read_text())["checkpoint"]["height"] == 11
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("trusted_first", [False, True], ids=["first-look", "after-trusting-A"])
def test_two_nodes_showing_two_histories_raise_the_alarm_and_name_the_signers(
        forked: Forked, capsys: pytest.CaptureFixture[str], trusted_first: bool) -> None:
    """A split view: node A and node B each serve a certified chain, different from block 9
    on. Watching either alone, a witness sees a consistent chain; watching both, it raises
    the alarm with both headers at the first height they differ and the validators that
    signed both (here the one validator, in round 0 both times: equivocation)."""
    f = forked
    f.grow(f.a)
    f.grow(f.b, actor=COOP)
    f.grow(f.b, actor=COOP)
    a, b = Served(f.node_a), Served(f.node_b)
    try:
        if trusted_first:
            assert witness(capsys, a.url, f)[0] == 0
        trusted = f.state.read_text() if f.state.exists() else None
        rc, out, err = witness_many(capsys, [a.url, b.url], f)
        assert rc == 3 and out["alarm"] == "fork", out
        if trusted_first:  # A's block 9, trusted, is not on B's chain
            assert out["urls"] == [b.url] and out["message"].startswith("the trusted checkpoint and"), out
        else:  # A's latest (9) is not on the chain of B's (10)
            assert out["urls"] == [a.url, b.url] and out["message"].startswith(f"{a.url} and {b.url}"), out
        ev = out["evidence"]
        assert ev["height"] == 9 and ev["hashes"] == sorted([block_hash(f.a, 9), block_hash(f.b, 9)])
        assert ev["signed_both"] == [VALIDATOR] and ev["equivocation"] is True and ev["rounds"] == [0]
        assert f"signed both: {VALIDATOR}" in err
        assert (f.state.read_text() if f.state.exists() else None) == trusted
    finally:
        a.close()
        b.close()


def test_conflict_evidence_in_other_rounds_is_not_called_equivocation(forked: Forked) -> None:
    from ledger.blocks.certificate import sign_commit
    from verify.witness import Checkpoint, conflict_evidence

    f = forked
    f.grow(f.a)
    f.grow(f.b, actor=COOP)
    ha, hb = f.a.header(9), f.b.header(9)
    assert ha is not None and hb is not None
    ca = Checkpoint(ha, sign_commit(CHAIN, 9, 0, ha.hash, [(VALIDATOR, f.w.validator)]))
    cb = Checkpoint(hb, sign_commit(CHAIN, 9, 2, hb.hash, [(VALIDATOR, f.w.validator)]))
    ev = conflict_evidence(ca, cb)
    assert ev["signed_both"] == [VALIDATOR] and ev["rounds"] == [0, 2] and ev["equivocation"] is False
    with pytest.raises(ValueError):
        conflict_evidence(ca, ca)


def test_a_state_file_edited_by_hand_is_refused_before_any_node_is_asked(
        forked: Forked, capsys: pytest.CaptureFixture[str]) -> None:
    """The state file is the witness's memory: a checkpoint in it must still verify
    against genesis when it is read back, or whoever can write the file could re-anchor
    the witness on a history of their choosing."""
    f = forked
    served = Served(f.node_a)
    try:
        rc, out, _ = witness(capsys, served.url, f)
        assert rc == 0 and out["status"] == "initialised"
        genuine = json.loads(f.state.read_text())
        cp = genuine["checkpoint"]
        other_header = dict(cp["header"], time=cp["header"]["time"] + 1)  # its certificate no longer covers it
        edits: dict[str, tuple[Any, str]] = {
            "a header its certificate does not sign": ({**genuine, "checkpoint": {**cp, "header": other_header}},
                                                       "holds a checkpoint that does not verify"),
            "another genesis": ({**genuine, "genesis_hash": "00" * 32}, "not a witness state file of this genesis"),
            "another format": ({**genuine, "format": "lambtrace-witness/v0"}, "not a witness state file"),
            "no checkpoint": ({k: v for k, v in genuine.items() if k != "checkpoint"}, "checkpoint"),
            "a list": ([genuine], "not a JSON object"),
        }
        for what, (doc, why) in edits.items():
            f.state.write_text(json.dumps(doc))
            rc = main(["witness", "--url", served.url, "--state", str(f.state), "--genesis", str(f.gpath)])
            err = capsys.readouterr().err
            assert rc == 2 and "bad_state_file" in err and why in err, (what, rc, err)
            assert json.loads(f.state.read_text()) == doc, what  # left for the operator to look at
        f.state.write_text(json.dumps(genuine))
        rc, out, _ = witness(capsys, served.url, f)
        assert rc == 0 and out["status"] == "unchanged"
    finally:
        served.close()
