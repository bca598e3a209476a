"""Fixtures for the API tests: a one-validator chain served by ``create_app`` in-process.

:class:`ApiWorld` makes the genesis (one ed25519 validator, a trace office with its own
ed25519 key), a :class:`ChainStore` over the given KV, a :class:`Node` whose clock the
test controls (its block thread is never started: :meth:`ApiWorld.commit` produces a
block), and ``app.test_client()``.  Every event it signs gets a fresh instant, so no two
events share an id by accident.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from api import create_app
from ledger import codec, merkle, recallmap
from ledger import events as E
from ledger.blocks.certificate import sign_commit
from ledger.blocks.header import Header
from ledger.errors import Rejected
from ledger.genesis import Genesis, Params, Validator
from ledger.limits import DEFAULT_LIMITS, Limits
from ledger.recallmap import KIND as RECALLS
from node.kv import KV, MemoryKV
from node.node import Node
from node.store import ChainStore
from signer import SoftwareSigner, generate

CHAIN = "api-test"
OFFICE = "xl-trace-office"
VALIDATOR = "league"
T0 = 1_790_000_000_000
MSGPACK = "application/msgpack"

COOP = "coop-1"
AGENT = "agent-1"
PLANT = "plant-1"
BANNER_OFFICE = "bo-152523"
TAG_A = "315252300000001"
TAG_B = "315252300000002"
FIRST = "315252300000001"


class ApiWorld:
    def __init__(self, kv: KV | None = None, *, limits: Limits = DEFAULT_LIMITS, recall_map: bool = True) -> None:
        self.now = T0
        self.validator = generate("ed25519")
        self.keys: dict[str, SoftwareSigner] = {OFFICE: generate("ed25519")}
        office = self.keys[OFFICE]
        self.genesis = Genesis(
            chain=CHAIN,
            time=T0 - 60_000,
            validators=(Validator(VALIDATOR, "152500", "ed25519", self.validator.public_key),),
            trace_office={
                "id": OFFICE,
                "banner": "152500",
                "name": "锡林郭勒盟追溯办",
                "keys": [{"alg": office.alg, "pub": office.public_key, "storage": "software"}],
            },
            params=Params(state_root=RECALLS if recall_map else ""),
        )
        self.store = ChainStore(kv if kv is not None else MemoryKV(), self.genesis)
        self.node = Node(
            self.store,
            self.genesis,
            name=VALIDATOR,
            signer=self.validator,
            limits=limits,
            clock=lambda: self.now + 1000,
            verify_threads=0,
        )
        self.app = create_app(self.node)
        self.http: FlaskClient = self.app.test_client()

    # -- events ------------------------------------------------------------------------
    def ev(self, kind: str, actor: str, body: dict[str, Any], *, signer: Any = None) -> dict[str, Any]:
        self.now += 1
        s = signer if signer is not None else self.keys[actor]
        return E.sign(E.envelope(CHAIN, kind, actor, self.now, body), s)

    def enroll(self, aid: str, role: str, banner: str, *, parent: str | None = None, name: str = "") -> dict[str, Any]:
        key = generate("ed25519")
        self.keys[aid] = key
        body: dict[str, Any] = {
            "id": aid,
            "role": role,
            "banner": banner,
            "keys": [{"alg": key.alg, "pub": key.public_key, "storage": "software"}],
        }
        if parent:
            body["parent"] = parent
        if name:
            body["name"] = name
        return self.ev("actor.enroll", OFFICE, body)

    def lamb_tag(self, actor: str, tag: str, *, signer: Any = None, chip: str | None = None) -> dict[str, Any]:
        body = {"tag": tag, "herder": "h-secret-0001", "born": "2026-03-10", "breed": "苏尼特羊", "sex": "male",
                "sumu": "满都拉图镇"}
        if chip:
            body["chip"] = chip
        return self.ev("lamb.tag", actor, body, signer=signer)

    def slaughter(self, tag: str, carcass: str) -> dict[str, Any]:
        return self.ev("lamb.slaughter", PLANT, {
            "tag": tag, "carcass": carcass, "carcass_mass_g": 18_000, "quarantine_cert": "QC-2026-0001",
            "price_fen_per_kg": 6600, "market_price_fen_per_kg": 6500, "date": "2026-10-01"})

    def label(self, carcass: str, labels: list[tuple[str, int]], *, signer: Any = None) -> dict[str, Any]:
        return self.ev("label.issue", PLANT, {"carcass": carcass, "labels": [
            {"label": lid, "cut": "羊腿", "net_mass_g": m, "packed": "2026-10-02",
             "check": hashlib.sha256(b"salt" + lid.encode()).digest()} for lid, m in labels]}, signer=signer)

    # -- HTTP --------------------------------------------------------------------------
    def post(self, events: Any, *, msgpack: bool = True, query: str = "") -> TestResponse:
        if msgpack:
            return self.http.post("/v1/events" + query, data=codec.encode(events), content_type=MSGPACK)
        body = E.to_json(events) if isinstance(events, dict) else [E.to_json(e) for e in events]
        return self.http.post("/v1/events" + query, json=body)

    def submit(self, events: list[dict[str, Any]], *, msgpack: bool = True) -> list[dict[str, Any]]:
        r = self.post(events, msgpack=msgpack)
        assert r.status_code == 200, r.get_data(as_text=True)
        results: list[dict[str, Any]] = r.get_json()["results"]
        assert all(x["status"] == "accepted" for x in results), results
        return results

    def commit(self) -> Header:
        header = self.node.produce_block()
        assert header is not None
        return header

    def get(self, path: str) -> Any:
        r = self.http.get(path)
        assert r.status_code == 200, (path, r.status_code, r.get_data(as_text=True))
        return r.get_json()

    def get_msgpack(self, path: str) -> Any:
        r = self.http.get(path, headers={"Accept": MSGPACK})
        assert r.status_code == 200, (path, r.status_code)
        assert r.mimetype == MSGPACK
        return codec.decode(r.get_data())

    # -- a season ------------------------------------------------------------------------
    def season(self) -> dict[str, Any]:
        """Enrol, issue, tag, ship, receive, slaughter, rotate a key, label: several blocks.

        Returns the ids submitted per step and the block headers.
        """
        ids: dict[str, Any] = {}
        heads = []
        r = self.submit([
            self.enroll(BANNER_OFFICE, "banner_office", "152523", name="苏尼特左旗农牧局"),
            self.enroll(COOP, "cooperative", "152523", name="满都拉图合作社"),
            self.enroll(PLANT, "plant", "152502", name="锡林浩特肉联厂"),
        ])
        ids["enroll"] = [x["id"] for x in r]
        heads.append(self.commit())
        r = self.submit([
            self.enroll(AGENT, "herder_agent", "152523", parent=COOP),
            self.ev("tags.issue", OFFICE, {"to": COOP, "first": FIRST, "count": 10, "year": 2026}),
        ])
        ids["agent"], ids["issue"] = r[0]["id"], r[1]["id"]
        heads.append(self.commit())
        # a handheld terminal for the herder agent, filed by the banner office
        self.keys["term-1"] = generate("ed25519")
        t = self.keys["term-1"]
        r = self.submit([self.ev("device.register", BANNER_OFFICE, {
            "device": "term-1", "owner": AGENT,
            "key": {"alg": t.alg, "pub": t.public_key, "storage": "software"}, "model": "HT-100"})])
        ids["device"] = r[0]["id"]
        heads.append(self.commit())
        r = self.submit([
            self.lamb_tag(AGENT, TAG_A, signer=t, chip="156000000000001"),
            self.lamb_tag(AGENT, TAG_B),
        ])
        ids["tag"] = [x["id"] for x in r]
        heads.append(self.commit())
        r = self.submit([self.ev("custody.ship", AGENT, {"shipment": "shp-1", "to": PLANT, "lambs": [TAG_A]})])
        ids["ship"] = r[0]["id"]
        heads.append(self.commit())
        r = self.submit([self.ev("custody.receive", PLANT, {"shipment": "shp-1"}), self.slaughter(TAG_A, "c-1")])
        ids["receive"], ids["slaughter"] = r[0]["id"], r[1]["id"]
        heads.append(self.commit())
        new_key = generate("ed25519")
        r = self.submit([self.ev("key.rotate", OFFICE, {
            "id": PLANT, "add": [{"alg": new_key.alg, "pub": new_key.public_key, "storage": "software"}]})])
        ids["rotate"] = r[0]["id"]
        heads.append(self.commit())
        r = self.submit([self.label("c-1", [("l-0001", 3000), ("l-0002", 2500)], signer=new_key)])
        ids["label"] = r[0]["id"]
        heads.append(self.commit())
        ids["headers"] = heads
        return ids


def error_of(r: Any, status: int, code: str) -> dict[str, Any]:
    """The error of an answer that must be ``status`` with ``code`` in the API's error shape."""
    assert r.status_code == status, (r.status_code, r.get_data(as_text=True))
    body = r.get_json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    err: dict[str, Any] = body["error"]
    return err


def forge_bundle(w: ApiWorld, leaves: list[bytes], picks: list[int], *, label: str,
          signers: list[tuple[str, Any]] | None = None, genesis: Genesis | None = None) -> bytes:
    """A label proof bundle over a log of ``leaves`` (any bytes), certified by ``signers``
    (default: the world's validator), proving the leaves at ``picks``: what a forger who
    holds validator keys can make (tests/test_verify_label.py, tests/fuzz/)."""
    g = genesis or w.genesis
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
        # the forger certifies a recall map holding exactly the recalls the story will report
        value = recallmap.chain_of([leaves[i] for i in story_recalls(leaves, indexes, label)])
        tree = recallmap.RecallTree({label: value} if value is not None else {})
        header = dataclasses.replace(header, state_root=tree.root)
        proof = tree.prove(label)
    cert = sign_commit(g.chain, header.height, 0, header.hash, signers or [(VALIDATOR, w.validator)])
    out: dict[str, Any] = {
        "format": "lambtrace-label-proof/v3" if proof is not None else "lambtrace-label-proof/v2",
        "genesis_hash": g.hash,
        "label": label,
        "checkpoint": {"header": header.to_dict(), "certificate": cert.to_dict()},
        "events": [{"leaf": leaves[i], "index": i} for i in indexes],
        "proof": merkle.multiproof(indexes, cr.size, lambda lv, ix: nodes[(lv, ix)]),
        "gaps": [],
    }
    if proof is not None:  # v3's compact form
        out["events"] = [[i, leaves[i]] for i in indexes]
        out["proof"] = b"".join(out["proof"])
        out["checkpoint"]["certificate"] = {"round": cert.round, "precommits": cert.to_dict()["precommits"]}
        out["recalls"] = proof.to_value()
    return codec.encode(out)


def story_recalls(leaves: list[bytes], indexes: list[int], label: str) -> list[int]:
    """The picked recalls of ``label``, its carcass or its lamb, as the verifier's story finds them."""
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


def as_v1(w: ApiWorld, b: dict[str, Any]) -> dict[str, Any]:
    """The archived v1 form of a v2 bundle: an inclusion proof per event, genesis embedded."""
    size = b["checkpoint"]["header"]["log_size"]
    out = {k: v for k, v in b.items() if k != "proof"}
    out["format"] = "lambtrace-label-proof/v1"
    out["genesis"] = w.genesis.to_dict()
    out["events"] = [{**e, "proof": merkle.inclusion_proof(e["index"], size, w.store.get_node)} for e in b["events"]]
    return out
