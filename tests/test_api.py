"""The HTTP API surface, in-process (``app.test_client()``) over a real ChainStore.

Every route's answer, content negotiation, the error shape of every kind of bad input,
the OpenAPI coverage of the URL map, the Prometheus text, the label proof bundle (each
inclusion proof verified against the checkpoint), consistency proofs, ``?wait=1``, and
the client over real HTTP.  Per-rejection-code tests live in test_rejections_http.py.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import requests
from werkzeug.serving import make_server

from api import queries
from api.client import Client, ClientError, WaitTimeout
from helpers_api import (
    AGENT,
    CHAIN,
    COOP,
    FIRST,
    MSGPACK,
    OFFICE,
    PLANT,
    TAG_A,
    TAG_B,
    VALIDATOR,
    ApiWorld,
    error_of,
)
from ledger import codec, merkle, schema
from ledger import events as E
from ledger.blocks.certificate import CommitCertificate, verify_commit
from ledger.blocks.header import Header
from ledger.errors import TransportError
from ledger.events import KINDS, parse_leaf
from ledger.limits import Limits
from node.kv import LevelKV, MemoryKV
from verify import verify_label


@pytest.fixture(params=["leveldb", "memory"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiWorld]:
    kv = LevelKV(str(tmp_path / "db")) if request.param == "leveldb" else MemoryKV()
    w = ApiWorld(kv)
    yield w
    w.node.stop()
    w.store.close()


@pytest.fixture(scope="module")
def seasoned() -> tuple[ApiWorld, dict[str, Any]]:
    """One world through a whole season (memory KV), shared by read-only tests."""
    w = ApiWorld(MemoryKV())
    return w, w.season()


# -- status, submission, events ---------------------------------------------------------


def test_status_before_and_after_a_block(world: ApiWorld) -> None:
    st = world.get("/v1/status")
    assert st["chain"] == CHAIN and st["node"] == VALIDATOR and st["role"] == "validator"
    assert st["height"] == 0 and st["log_size"] == 0 and st["peers"] == []
    assert st["log_root"] == merkle.EMPTY_ROOT.hex() and st["last_block_hash"] is None
    assert st["genesis_hash"] == world.genesis.hash.hex()
    world.submit([world.enroll(COOP, "cooperative", "152523")])
    assert world.get("/v1/status")["mempool_size"] == 1
    head = world.commit()
    st = world.get("/v1/status")
    assert st["height"] == 1 and st["log_size"] == 1 and st["mempool_size"] == 0
    assert st["log_root"] == head.log_root.hex() and st["last_block_hash"] == head.hash.hex()
    assert isinstance(st["time"], int)
    assert world.get("/healthz") == {"ok": True, "height": 1}


def test_submit_json_and_msgpack_single_and_list(world: ApiWorld) -> None:
    one = world.enroll(COOP, "cooperative", "152523")
    r = world.post(one, msgpack=False)
    assert r.status_code == 200
    body = r.get_json()
    assert body["accepted"] == 1 and body["rejected"] == 0 and body["duplicate"] == 0
    (res,) = body["results"]
    assert res["status"] == "accepted" and re.fullmatch(r"[0-9a-f]{64}", res["id"])
    # the same event again, as msgpack, is a duplicate with the same id
    again = world.post([one]).get_json()
    assert again["results"][0] == {"id": res["id"], "status": "duplicate", "code": "duplicate", "state": "pending"}
    assert again["duplicate"] == 1
    # a batch mixing good and bad events: well-formed request, per-event verdicts
    bad_sig = world.enroll(PLANT, "plant", "152502")
    bad_sig["sigs"][0]["sig"] = bytes(64)
    batch = [world.enroll(AGENT, "herder_agent", "152523", parent=COOP), bad_sig, {"event": {}, "sigs": []}]
    r = world.post(batch)
    assert r.status_code == 200
    body = r.get_json()
    assert [x["status"] for x in body["results"]] == ["accepted", "rejected", "rejected"]
    assert body["results"][1]["code"] == "bad_signature"
    assert body["results"][2]["id"] is None and body["results"][2]["code"] in ("missing_field", "malformed")
    assert (body["accepted"], body["rejected"]) == (1, 2)
    world.commit()
    committed = world.post(one, msgpack=False).get_json()["results"][0]
    assert committed["status"] == "duplicate" and committed["state"] == "committed" and committed["height"] == 1


def test_json_hex_that_does_not_convert_rejects_only_that_event(world: ApiWorld) -> None:
    good = world.enroll(COOP, "cooperative", "152523")
    bad = world.enroll(PLANT, "plant", "152502")
    bad_json = json.loads(json.dumps([schema.to_json(good), schema.to_json(bad)]))
    bad_json[1]["sigs"][0]["sig"] = "XYZ"
    r = world.http.post("/v1/events", json=bad_json)
    assert r.status_code == 200
    results = r.get_json()["results"]
    assert results[0]["status"] == "accepted"
    assert results[1]["status"] == "rejected" and results[1]["code"] == "bad_field"


def test_event_by_id_pending_then_committed(world: ApiWorld) -> None:
    (res,) = world.submit([world.enroll(COOP, "cooperative", "152523")])
    eid = res["id"]
    pending = world.get(f"/v1/events/{eid}")
    assert pending["state"] == "pending" and pending["height"] is None
    assert pending["kind"] == "actor.enroll" and pending["actor"] == OFFICE
    assert pending["event"]["event"]["body"]["id"] == COOP
    world.commit()
    done = world.get(f"/v1/events/{eid}")
    assert done["state"] == "committed" and done["height"] == 1 and done["index"] == 0
    assert done["event"] == pending["event"]
    # upper-case hex is accepted, junk is not, unknown ids are 404
    assert world.get(f"/v1/events/{eid.upper()}")["id"] == eid
    error_of(world.http.get("/v1/events/xyz"), 400, "bad_id")
    error_of(world.http.get(f"/v1/events/{eid[:-1]}"), 400, "bad_id")
    error_of(world.http.get(f"/v1/events/{'0' * 64}"), 404, "not_found")


def test_event_dropped_at_block_time_reports_rejected(world: ApiWorld) -> None:
    (ok,) = world.submit([world.enroll(COOP, "cooperative", "152523")])
    world.now += 31 * 86_400_000  # the block comes after the accepted lateness
    assert world.node.produce_block() is None
    rec = world.get(f"/v1/events/{ok['id']}")
    assert rec == {"id": ok["id"], "state": "rejected", "code": "too_late", "message": rec["message"]}
    # ?wait=1 reports such a drop too, without waiting for the timeout

    def late_block() -> None:
        world.now += 31 * 86_400_000
        world.node.produce_block()

    timer = threading.Timer(0.2, late_block)
    timer.start()
    try:
        t0 = time.monotonic()
        body = world.post([world.enroll(PLANT, "plant", "152502")], query="?wait=1&timeout_ms=5000").get_json()
    finally:
        timer.join()
    (res,) = body["results"]
    assert res["status"] == "accepted" and res["state"] == "rejected" and res["code"] == "too_late"
    assert body["timed_out"] is False and time.monotonic() - t0 < 4


# -- the season: tags, labels, actors, stats, blocks --------------------------------------


def test_full_season_over_every_read_route(world: ApiWorld) -> None:
    ids = world.season()
    heads: list[Header] = ids["headers"]

    tag = world.get(f"/v1/tags/{TAG_A}")
    assert tag["status"] == "labelled" and tag["banner"] == "152523" and tag["banner_name"] == "苏尼特左旗"
    assert [e["kind"] for e in tag["events"]] == [
        "lamb.tag", "custody.ship", "custody.receive", "lamb.slaughter", "label.issue"]
    assert [e["id"] for e in tag["events"]] == [
        ids["tag"][0], ids["ship"], ids["receive"], ids["slaughter"], ids["label"]]
    assert all(e["height"] >= 1 and e["index"] >= 0 for e in tag["events"])
    assert tag["carcass"]["carcass"] == "c-1" and {x["label"] for x in tag["labels"]} == {"l-0001", "l-0002"}
    assert tag["owner"] == COOP and tag["range"]["first"] == FIRST and tag["recalled"] is False
    assert tag["lamb"]["chip"] == "156000000000001"

    held = world.get(f"/v1/tags/{TAG_B}")
    assert held["status"] == "held" and held["holder"] == AGENT and held["carcass"] is None
    issued = world.get("/v1/tags/315252300000005")
    assert issued["status"] == "issued" and issued["owner"] == COOP and issued["events"] == []
    error_of(world.http.get("/v1/tags/315252300000011"), 404, "not_found")  # past the range
    error_of(world.http.get("/v1/tags/3152523"), 400, "bad_tag")
    error_of(world.http.get("/v1/tags/399999900000001"), 400, "bad_tag")  # not a county of the league

    label = world.get("/v1/labels/l-0001")
    assert label["cut"] == "羊腿" and label["net_mass_g"] == 3000 and label["packed"] == "2026-10-02"
    assert label["tag"] == TAG_A and label["carcass"] == "c-1"
    assert label["lamb"] == {"banner": "152523", "banner_name": "苏尼特左旗", "sumu": "满都拉图镇",
                             "born": "2026-03-10", "breed": "苏尼特羊", "sex": "male", "cooperative": COOP,
                             "tagged_at": label["lamb"]["tagged_at"]}
    assert label["plant"] == {"id": PLANT, "name": "锡林浩特肉联厂", "banner": "152502", "banner_name": "锡林浩特市"}
    assert label["slaughter"]["date"] == "2026-10-01" and label["slaughter"]["quarantine_cert"] == "QC-2026-0001"
    assert label["issued"]["event"] == ids["label"]
    assert re.fullmatch(r"[0-9a-f]{64}", label["check_commitment"])
    assert "h-secret-0001" not in json.dumps(label)  # the herder pseudonym stays off the label
    error_of(world.http.get("/v1/labels/l-9999"), 404, "not_found")
    error_of(world.http.get("/v1/labels/-not-an-id"), 400, "bad_label")

    actor = world.get(f"/v1/actors/{AGENT}")
    assert actor["role"] == "herder_agent" and actor["parent"] == COOP and actor["banner_name"] == "苏尼特左旗"
    assert len(actor["keys"]) == 1 and actor["keys"][0]["kid"] == world.keys[AGENT].key_id
    assert actor["keys"][0]["pub"] == world.keys[AGENT].public_key.hex()
    (dev,) = actor["devices"]
    assert dev["device"] == "term-1" and dev["key"] == world.keys["term-1"].key_id
    plant = world.get(f"/v1/actors/{PLANT}")
    assert len(plant["keys"]) == 2 and plant["devices"] == []
    assert world.get(f"/v1/actors/{OFFICE}")["root"] is True
    error_of(world.http.get("/v1/actors/nobody"), 404, "not_found")
    error_of(world.http.get("/v1/actors/bad%20id"), 400, "bad_id")

    stats = world.get("/v1/stats")
    assert stats["banners"]["152523"]["name"] == "苏尼特左旗"
    assert stats["banners"]["152523"]["tags_issued"] == 10 and stats["banners"]["152523"]["tagged"] == 2
    assert stats["cooperatives"][COOP]["tagged"] == 2 and stats["cooperatives"][COOP]["slaughtered"] == 1
    assert stats["plants"][PLANT] == {"received": 1, "slaughtered": 1, "carcass_mass_g": 18_000, "labelled": 2}
    assert stats["totals"]["tagged"] == 2 and stats["totals"]["slaughtered"] == 1
    assert stats["totals"]["labelled"] == 2 and stats["height"] == len(heads)

    for h, head in enumerate(heads, start=1):
        blk = world.get(f"/v1/blocks/{h}")
        assert blk["hash"] == head.hash.hex() and blk["header"]["log_root"] == head.log_root.hex()
        assert Header.from_dict(_unhex_header(blk["header"])).hash == head.hash
        assert blk["certificate"]["block"] == head.hash.hex() and blk["certificate"]["height"] == h
        begin, end = blk["log_range"]
        assert end == head.log_size and len(blk["events"]) == end - begin
    assert world.get("/v1/blocks/1")["events"] == ids["enroll"]
    assert world.get("/v1/blocks/latest") == world.get(f"/v1/blocks/{len(heads)}")
    error_of(world.http.get(f"/v1/blocks/{len(heads) + 1}"), 404, "not_found")
    for junk in ("abc", "0", "-1", "1.5", "99999999999999999999999"):
        error_of(world.http.get(f"/v1/blocks/{junk}"), 400, "bad_height")
    # the leaves route has no 'latest', and its message does not offer one
    assert "latest" not in error_of(world.http.get("/v1/blocks/latest/leaves"), 400, "bad_height")["message"]


def _unhex_header(d: dict[str, Any]) -> dict[str, Any]:
    return {k: bytes.fromhex(v) if k in ("prev", "log_root", "validators", "state_root") else v for k, v in d.items()}


def test_empty_chain_answers(world: ApiWorld) -> None:
    error_of(world.http.get("/v1/blocks/latest"), 404, "not_found")
    error_of(world.http.get("/v1/blocks/1"), 404, "not_found")
    error_of(world.http.get("/v1/log/consistency?first=1&second=1"), 400, "bad_range")
    assert world.get("/v1/stats")["totals"] == {}


def test_recall_shows_on_tag_and_label() -> None:
    w = ApiWorld(MemoryKV())
    w.season()
    w.submit([w.ev("recall", OFFICE, {"targets": [{"type": "label", "id": "l-0002"}], "reason": "抽检不合格"})])
    w.commit()
    lab = w.get("/v1/labels/l-0002")
    assert lab["recalled"] is True and lab["recalls"][0]["reason"] == "抽检不合格"
    assert w.get("/v1/labels/l-0001")["recalled"] is False
    tag = w.get(f"/v1/tags/{TAG_A}")
    assert tag["recalled"] is True and tag["recalls"][0]["type"] == "label"
    assert tag["events"][-1]["kind"] == "recall"


def test_recalls_of_the_lamb_and_of_its_carcass_show_on_tag_and_label() -> None:
    """A recall of the lamb itself or of its carcass reaches every label cut from it, and
    the tag lists each recall with what it targeted: the lamb's, then the carcass's."""
    w = ApiWorld(MemoryKV())
    w.season()
    carcass = w.get("/v1/labels/l-0001")["carcass"]
    w.submit([w.ev("recall", OFFICE, {"targets": [{"type": "carcass", "id": carcass}], "reason": "兽药残留"})])
    w.commit()
    w.submit([w.ev("recall", OFFICE, {"targets": [{"type": "lamb", "id": TAG_A}], "reason": "来源不明"})])
    w.commit()
    tag = w.get(f"/v1/tags/{TAG_A}")
    assert tag["recalled"] is True
    assert [(r["type"], r["id"], r["reason"]) for r in tag["recalls"]] == [
        ("lamb", TAG_A, "来源不明"), ("carcass", carcass, "兽药残留")]
    for lid in ("l-0001", "l-0002"):
        lab = w.get(f"/v1/labels/{lid}")
        assert lab["recalled"] is True, lid
        assert {r["type"] for r in lab["recalls"]} == {"lamb", "carcass"}, lab["recalls"]


# -- proofs ----------------------------------------------------------------------------


def test_label_proof_bundle_verifies(world: ApiWorld) -> None:
    ids = world.season()
    b = world.get("/v1/labels/l-0001/proof")
    assert b["format"] == "lambtrace-label-proof/v3" and b["label"] == "l-0001"
    assert b["genesis_hash"] == world.genesis.hash.hex() and b["gaps"] == []
    assert "genesis" not in b  # referenced by genesis_hash; ?genesis=1 embeds it
    header = Header.from_dict(_unhex_header(b["checkpoint"]["header"]))
    cert_json = b["checkpoint"]["certificate"]
    assert set(cert_json) == {"round", "precommits"}  # v3: height and block hash are the header's
    cert = CommitCertificate.from_dict({
        **cert_json, "height": header.height, "block": header.hash,
        "precommits": [{"validator": p["validator"], "sig": bytes.fromhex(p["sig"])} for p in cert_json["precommits"]],
    })
    assert header == world.store.last_header
    verify_commit(cert, CHAIN, header.height, header.hash, world.genesis.validators)
    seen = {}
    leaf_hashes = {}
    for entry in b["events"]:
        index, leaf_hex = entry  # v3: [index, leaf]
        leaf = bytes.fromhex(leaf_hex)
        leaf_hashes[index] = merkle.leaf_hash(leaf)
        seen[parse_leaf(leaf).id.hex()] = parse_leaf(leaf).kind
    assert [e[0] for e in b["events"]] == sorted({e[0] for e in b["events"]})
    proof = merkle.split_hashes(bytes.fromhex(b["proof"]))  # v3: the hashes in one byte string
    merkle.verify_multiproof(leaf_hashes, header.log_size, proof, header.log_root)
    # the tag's path, where the tags came from, and who signed all that
    want = {ids["tag"][0], ids["ship"], ids["receive"], ids["slaughter"], ids["label"], ids["issue"],
            ids["agent"], ids["device"], ids["rotate"], *ids["enroll"]}
    assert set(seen) == want, {seen.get(i, i) for i in want ^ set(seen)}
    assert ids["tag"][1] not in seen  # the other lamb is not on this label's path
    # msgpack gives the same bundle with real bytes
    raw = world.get_msgpack("/v1/labels/l-0001/proof")
    assert schema.to_json(raw) == b
    assert isinstance(raw["events"][0][1], bytes)
    error_of(world.http.get("/v1/labels/l-0404/proof"), 404, "not_found")
    # ?genesis=1: the same bundle with the genesis document embedded (a self-contained archive)
    full = world.get("/v1/labels/l-0001/proof?genesis=1")
    assert full == {**b, "genesis": world.get("/v1/genesis")}
    assert world.get_msgpack("/v1/labels/l-0001/proof?genesis=1")["genesis"] == world.genesis.to_dict()
    error_of(world.http.get("/v1/labels/l-0001/proof?genesis=maybe"), 400, "bad_param")


def test_genesis_route(world: ApiWorld) -> None:
    g = world.get("/v1/genesis")
    assert g == json.loads(json.dumps(world.genesis.to_dict(), default=bytes.hex))
    assert world.get_msgpack("/v1/genesis") == world.genesis.to_dict()
    r = world.http.get("/v1/genesis")
    assert "max-age" in r.headers["Cache-Control"]


def parse_kind(leaf: bytes) -> str:
    from ledger.events import parse_leaf

    return parse_leaf(leaf).kind


def test_label_proof_needs_no_scan(seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    """Key and tag-range records name the event that created them: no leaf scan is needed."""
    from api.proofs import LabelProver, ProofOptions

    w, _ids = seasoned
    b = LabelProver(w.store, options=ProofOptions(max_scan_leaves=0)).bundle("l-0001")
    assert b["gaps"] == []
    kinds = {parse_kind(leaf) for _index, leaf in b["events"]}
    assert {"tags.issue", "actor.enroll", "lamb.tag", "lamb.slaughter", "label.issue"} <= kinds
    head = b["checkpoint"]["header"]
    assert b["events"]
    proof = merkle.split_hashes(b["proof"])
    merkle.verify_multiproof({i: merkle.leaf_hash(leaf) for i, leaf in b["events"]}, head["log_size"],
                             proof, head["log_root"])


def test_label_proof_scans_for_events_its_index_cannot_place(seasoned: tuple[ApiWorld, dict[str, Any]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the event index does not place the event a key or tag-range record names (an
    index lost or cut short), the prover finds it by scanning the blocks of the record's
    time, and the bundle is the one the index gives; with scanning bounded to nothing it
    names what it could not find in ``gaps`` instead of leaving it out silently."""
    from api.proofs import LabelProver, ProofOptions

    w, _ids = seasoned
    indexed = LabelProver(w.store).bundle("l-0001")
    located: list[bytes] = []

    def unplaced(event_id: bytes, **_kw: Any) -> None:
        located.append(event_id)
        return None

    monkeypatch.setattr(w.store, "event_location", unplaced)
    scanned = LabelProver(w.store).bundle("l-0001")
    assert located  # the index was asked, and placed nothing
    assert scanned == indexed
    blind = LabelProver(w.store, options=ProofOptions(max_scan_leaves=0)).bundle("l-0001")
    kinds = {g["kind"] for g in blind["gaps"]}
    assert {"key", "tags.issue"} <= kinds, blind["gaps"]
    assert len(blind["events"]) < len(indexed["events"])


def test_consistency_and_inclusion_proofs(seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    w, ids = seasoned
    heads: list[Header] = ids["headers"]
    size = heads[-1].log_size
    roots = {h.log_size: h.log_root for h in heads}
    for m in range(1, size + 1):
        for n in range(m, size + 1):
            p = w.get(f"/v1/log/consistency?first={m}&second={n}")
            assert (p["first"], p["second"]) == (m, n)
            r_m, r_n = bytes.fromhex(p["first_root"]), bytes.fromhex(p["second_root"])
            if m in roots:
                assert r_m == roots[m]
            if n in roots:
                assert r_n == roots[n]
            merkle.verify_consistency(m, n, [bytes.fromhex(x) for x in p["proof"]], r_m, r_n)
    for q in ("first=0&second=1", f"first=1&second={size + 1}", "first=3&second=2", "first=a&second=2",
              "first=1", "second=1", "", "first=-1&second=2"):
        error_of(w.http.get(f"/v1/log/consistency?{q}"), 400, "bad_range")
    for i in range(size):
        p = w.get(f"/v1/log/inclusion?index={i}")
        assert p["size"] == size and p["root"] == heads[-1].log_root.hex()
        leaf = bytes.fromhex(p["leaf"])
        assert merkle.leaf_hash(leaf).hex() == p["leaf_hash"] and parse_leaf(leaf).id.hex() == p["id"]
        merkle.verify_inclusion(merkle.leaf_hash(leaf), i, size, [bytes.fromhex(x) for x in p["proof"]],
                                heads[-1].log_root)
    p = w.get("/v1/log/inclusion?index=0&size=3")
    assert p["size"] == 3 and bytes.fromhex(p["root"]) == roots[3]
    for q in (f"index={size}", "index=0&size=0", f"index=0&size={size + 1}", "", "index=x"):
        error_of(w.http.get(f"/v1/log/inclusion?{q}"), 400, "bad_range")


# -- content negotiation ----------------------------------------------------------------


def test_msgpack_answers_are_canonical_and_match_json(seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    w, ids = seasoned
    for path in ("/v1/blocks/2", f"/v1/tags/{TAG_A}", "/v1/labels/l-0001", f"/v1/actors/{PLANT}", "/v1/stats",
                 f"/v1/events/{ids['label']}", "/v1/log/consistency?first=2&second=5", "/healthz"):
        raw = w.get_msgpack(path)  # get_msgpack decodes strictly: canonical or it raises
        assert schema.to_json(raw) == w.get(path), path
    blk = w.get_msgpack("/v1/blocks/1")
    assert isinstance(blk["hash"], bytes) and len(blk["hash"]) == 32
    r = w.http.get("/v1/nowhere", headers={"Accept": MSGPACK})
    assert r.status_code == 404 and codec.decode(r.get_data())["error"]["code"] == "not_found"
    # */* and no Accept mean JSON
    assert w.http.get("/v1/status", headers={"Accept": "*/*"}).mimetype == "application/json"


# -- errors ------------------------------------------------------------------------------


def test_bad_bodies_get_precise_4xx(world: ApiWorld) -> None:
    post = world.http.post
    error_of(post("/v1/events", data=b"{not json", content_type="application/json"), 400, "malformed")
    error_of(post("/v1/events", data=b"", content_type="application/json"), 400, "malformed")
    error_of(post("/v1/events", data=b"\xff\xfe", content_type="application/json"), 400, "malformed")
    error_of(post("/v1/events", data=b'{"a": 1, "a": 2}', content_type="application/json"), 400, "malformed")
    error_of(post("/v1/events", data=b"[NaN]", content_type="application/json"), 400, "malformed")
    error_of(post("/v1/events", data=b"5", content_type="application/json"), 400, "malformed")
    error_of(post("/v1/events", data=b"[]", content_type="application/json"), 400, "malformed")
    error_of(post("/v1/events", data=b"[" * 20 + b"]" * 20, content_type="application/json"), 400, "too_deep")
    error_of(post("/v1/events", data=b"[" * 200_000 + b"]" * 200_000, content_type="application/json"),
             400, "too_deep")
    error_of(post("/v1/events", data=b"\xc1", content_type=MSGPACK), 400, "malformed")
    error_of(post("/v1/events", data=b"", content_type=MSGPACK), 400, "malformed")
    error_of(post("/v1/events", data=b"\xcd\x00\x01", content_type=MSGPACK), 400, "non_canonical")
    unsorted = msgpack.packb([{"sigs": [], "event": {}}], use_bin_type=True)
    error_of(post("/v1/events", data=unsorted, content_type=MSGPACK), 400, "non_canonical")
    error_of(post("/v1/events", data=codec.encode([[[[[[[[[[1]]]]]]]]]]), content_type=MSGPACK), 400, "too_deep")
    error_of(post("/v1/events", data=b"hello", content_type="text/plain"), 415, "unsupported_media_type")
    # events that merely fail the rules are still a well-formed request
    r = post("/v1/events", data=codec.encode([{"event": 1, "sigs": 2}]), content_type=MSGPACK)
    assert r.status_code == 200 and r.get_json()["rejected"] == 1


def test_routing_errors(world: ApiWorld) -> None:
    error_of(world.http.get("/v1/nowhere"), 404, "not_found")
    error_of(world.http.get("/"), 404, "not_found")
    e = world.http.delete("/v1/events")
    error_of(e, 405, "method_not_allowed")
    assert "POST" in e.headers["Allow"]
    error_of(world.http.post("/v1/status"), 405, "method_not_allowed")
    error_of(world.http.post("/v1/events?wait=maybe", json={}), 400, "bad_param")
    error_of(world.http.post("/v1/events?wait=1&timeout_ms=soon", json={}), 400, "bad_param")


def test_limits_too_large_too_many_and_mempool_full(tmp_path: Path) -> None:
    w = ApiWorld(MemoryKV(), limits=Limits(max_request_bytes=4096, max_events_per_request=2, max_mempool_events=3))
    assert w.app.config["MAX_CONTENT_LENGTH"] == 4096
    error_of(w.http.post("/v1/events", data=b"[" + b" " * 5000 + b"]", content_type="application/json"),
             413, "too_large")
    error_of(w.http.post("/v1/events", data=b"\x90" * 5000, content_type=MSGPACK), 413, "too_large")
    three = [w.enroll(f"coop-{i}", "cooperative", "152523") for i in range(3)]
    error_of(w.post(three), 400, "too_many_events")
    w.submit(three[:2])
    r = w.post([*three[2:], w.enroll("coop-9", "cooperative", "152523")])
    error_of(r, 429, "mempool_full")
    assert r.headers["Retry-After"] == "1"
    assert w.node.mempool_size == 2  # nothing of the refused batch was admitted


def test_random_bodies_never_make_a_500(world: ApiWorld) -> None:
    rng = random.Random(20190601)
    good = codec.encode([world.enroll(COOP, "cooperative", "152523")])
    for i in range(300):
        if i % 3 == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        else:  # flip bytes of a valid body
            b = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            body = bytes(b)
        for ctype in (MSGPACK, "application/json"):
            r = world.http.post("/v1/events", data=body, content_type=ctype)
            assert r.status_code < 500, (body, ctype, r.get_data(as_text=True))
            if r.status_code != 200:
                assert set(r.get_json()) == {"error"}


def test_an_internal_error_is_a_500_with_the_error_shape(world: ApiWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(_store: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(queries, "stats", boom)
    r = world.http.get("/v1/stats")
    err = error_of(r, 500, "internal")
    assert "a bug" not in err["message"]


# -- waiting ---------------------------------------------------------------------------------


def test_wait_reports_committed_state(world: ApiWorld) -> None:
    timer = threading.Timer(0.2, world.node.produce_block)
    timer.start()
    try:
        r = world.post([world.enroll(COOP, "cooperative", "152523"), {"event": {}, "sigs": []}],
                       query="?wait=1&timeout_ms=5000")
    finally:
        timer.join()
    body = r.get_json()
    assert r.status_code == 200 and body["timed_out"] is False
    ok, bad = body["results"]
    assert ok["status"] == "accepted" and ok["state"] == "committed" and ok["height"] == 1 and ok["index"] == 0
    assert bad["status"] == "rejected" and bad["state"] == "rejected"


def test_wait_times_out_with_pending_state(world: ApiWorld) -> None:
    t0 = time.monotonic()
    body = world.post([world.enroll(COOP, "cooperative", "152523")], query="?wait=1&timeout_ms=150").get_json()
    assert time.monotonic() - t0 < 5
    assert body["timed_out"] is True and body["results"][0]["state"] == "pending"


# -- openapi and metrics ---------------------------------------------------------------------


def test_openapi_describes_every_route(world: ApiWorld) -> None:
    doc = world.get("/openapi.json")
    assert doc["openapi"].startswith("3.1")
    rules = [r for r in world.app.url_map.iter_rules() if r.endpoint not in ("static", "assets.versioned")]  # files
    assert len(rules) >= 15
    for rule in rules:
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in doc["paths"], path
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                assert method.lower() in doc["paths"][path], (path, method)
        for name in re.findall(r"{([^}]+)}", path):
            params = doc["paths"][path]["get"].get("parameters", [])
            assert any(p["name"] == name and p["in"] == "path" for p in params), (path, name)
    schemas = doc["components"]["schemas"]
    for name, kind in KINDS.items():
        assert schemas[f"Envelope.{name}"]["properties"]["body"] == schema.describe(kind.body)
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(doc))
    assert refs and all(r in schemas for r in refs)


def test_label_proofs_match_their_openapi_schema(seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    """What the node serves is what /openapi.json says: v3 (and with ?genesis=1) here,
    v2 on a chain without the recall map; and the schema is no rubber stamp."""
    import jsonschema

    w, _ids = seasoned
    doc = w.get("/openapi.json")
    validator = jsonschema.Draft202012Validator({**doc, "$ref": "#/components/schemas/LabelProof"})
    legacy = ApiWorld(MemoryKV(), recall_map=False)
    legacy.season()
    served = [w.get("/v1/labels/l-0001/proof"), w.get("/v1/labels/l-0001/proof?genesis=1"),
              legacy.get("/v1/labels/l-0001/proof")]
    assert [b["format"][-2:] for b in served] == ["v3", "v3", "v2"]
    for b in served:
        validator.validate(b)
    v3 = served[0]
    for bad in ({**v3, "recalls": {**v3["recalls"], "siblings": ["00" * 32]}},
                {**v3, "recalls": {**v3["recalls"], "other": "00" * 32}},
                {**v3, "proof": v3["proof"][:-2]},
                {**v3, "checkpoint": {**v3["checkpoint"], "certificate": {"round": 0}}},
                {**v3, "events": [v3["events"][0][::-1]]}):
        assert not validator.is_valid(bad)


def test_every_json_route_answers_as_openapi_says(seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    """Each JSON route of /openapi.json, called for real on a seasoned node, answers with
    a body its documented schema accepts: the success and, where the route documents
    one, an error."""
    import jsonschema

    w, ids = seasoned
    doc = w.get("/openapi.json")

    def check(method: str, route: str, url: str, *, on: ApiWorld = w, **kwargs: Any) -> int:
        r = on.http.open(url, method=method, **kwargs)
        answers = doc["paths"][route][method.lower()]["responses"]
        assert str(r.status_code) in answers, (url, r.status_code, r.get_data(as_text=True)[:300])
        schema_ = answers[str(r.status_code)].get("content", {}).get("application/json", {}).get("schema")
        assert schema_ is not None, (route, r.status_code)
        target = doc["components"]["schemas"][schema_["$ref"].split("/")[-1]] if "$ref" in schema_ else schema_
        assert target.get("required"), (route, "a schema that requires nothing accepts {}")
        jsonschema.Draft202012Validator({**doc, **schema_}).validate(r.get_json())
        return r.status_code

    label, actor, tag, event = "l-0001", COOP, TAG_A, ids["slaughter"]
    successes = {
        "/v1/status": "/v1/status",
        "/v1/events/{event_id}": f"/v1/events/{event}",
        "/v1/tags": f"/v1/tags?to={COOP}",
        "/v1/tags/{tag}": f"/v1/tags/{tag}",
        "/v1/labels/{label}": f"/v1/labels/{label}",
        "/v1/labels/{label}/proof": f"/v1/labels/{label}/proof",
        "/v1/genesis": "/v1/genesis",
        "/v1/labels/{label}/scans": f"/v1/labels/{label}/scans",
        "/v1/labels/{label}/check": f"/v1/labels/{label}/check",
        "/v1/alerts": "/v1/alerts",
        "/v1/reports/premium": "/v1/reports/premium",
        "/v1/blocks/latest": "/v1/blocks/latest",
        "/v1/blocks/{height}": "/v1/blocks/1",
        "/v1/blocks/{height}/leaves": "/v1/blocks/1/leaves",
        "/v1/state/hash": "/v1/state/hash",
        "/v1/log/consistency": "/v1/log/consistency?first=1&second=2",
        "/v1/log/inclusion": "/v1/log/inclusion?index=0",
        "/v1/actors/{actor_id}": f"/v1/actors/{actor}",
        "/v1/stats": "/v1/stats",
        "/l/{label}/verdict": f"/l/{label}/verdict",
        "/dashboard/summary": "/dashboard/summary",
        "/healthz": "/healthz",
    }
    for route, url in successes.items():
        assert check("GET", route, url) == 200, url
    assert check("POST", "/v1/labels/{label}/scans", f"/v1/labels/{label}/scans", json={}) == 200
    fresh = ApiWorld(MemoryKV())  # the seasoned world is shared read-only
    for events in ([E.to_json(fresh.enroll(COOP, "cooperative", "152523"))],  # accepted
                   [E.to_json(fresh.enroll(PLANT, "plant", "999999"))]):  # rejected
        assert check("POST", "/v1/events", "/v1/events", on=fresh, json=events) == 200
    fresh.node.stop()
    failures = {
        "/v1/events/{event_id}": "/v1/events/" + "00" * 32,
        "/v1/tags/{tag}": "/v1/tags/1",
        "/v1/labels/{label}": "/v1/labels/l-0404",
        "/v1/labels/{label}/proof": f"/v1/labels/{label}/proof?genesis=maybe",
        "/v1/blocks/{height}": "/v1/blocks/999999",
        "/v1/log/consistency": "/v1/log/consistency?first=2&second=1",
        "/v1/actors/{actor_id}": "/v1/actors/nobody",
        "/v1/labels/{label}/scans": "/v1/labels/l-0404/scans",
    }
    for route, url in failures.items():
        assert check("GET", route, url) >= 400, url
    assert check("POST", "/v1/events", "/v1/events", data=b"{not json", content_type="application/json") >= 400
    assert check("POST", "/v1/labels/{label}/check", f"/v1/labels/{label}/check", json={"code": "x"}) >= 400
    undocumented = {p for p, ops in doc["paths"].items() for m, op in ops.items()
                    if "application/json" in op.get("responses", {}).get("200", {}).get("content", {})} - {
        *successes, "/v1/events", "/openapi.json"}
    assert not undocumented, undocumented


def test_text_answers_are_compressed_for_clients_that_accept_it(seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    """The consumer page's parts reach a phone compressed (and whole); what is already
    dense, or small, goes as it is; a cached script still revalidates to 304."""
    import gzip
    import zlib

    w, _ids = seasoned
    for url in ("/static/verify.js", "/static/label.js", "/static/label.css", "/l/l-0001", "/v1/labels/l-0001/proof"):
        plain = w.http.get(url)
        assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
        for accept, unpack in (("gzip", gzip.decompress), ("deflate", zlib.decompress)):
            r = w.http.get(url, headers={"Accept-Encoding": accept})
            assert r.status_code == 200 and r.headers["Content-Encoding"] == accept, url
            assert "Accept-Encoding" in r.headers["Vary"]
            assert unpack(r.get_data()) == plain.get_data(), url
            assert len(r.get_data()) < len(plain.get_data()) / 2, (url, len(r.get_data()), len(plain.get_data()))
    r = w.http.get("/static/verify.js", headers={"Accept-Encoding": "gzip"})
    again = w.http.get("/static/verify.js", headers={"Accept-Encoding": "gzip", "If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    for url, headers in (("/v1/labels/l-0001/proof", {"Accept": MSGPACK}), ("/v1/status", {})):
        r = w.http.get(url, headers={**headers, "Accept-Encoding": "gzip"})
        assert r.status_code == 200 and "Content-Encoding" not in r.headers, url  # dense, or under 1 KiB


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def test_metrics_text_parses(world: ApiWorld) -> None:
    world.submit([world.enroll(COOP, "cooperative", "152523")])
    world.post([world.enroll(PLANT, "plant", "999999")])  # rejected: bad_field
    world.commit()
    world.http.get("/v1/nowhere")
    r = world.http.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    for line in r.get_data(as_text=True).splitlines():
        if not line or line.startswith("#"):
            assert not line or re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ", line), line
            continue
        m = _SAMPLE.match(line)
        assert m, line
        float(m.group(4))
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(4))
    assert samples["lambtrace_height"] == 1 and samples["lambtrace_log_size"] == 1
    assert samples["lambtrace_events_submitted_total"] == 2 and samples["lambtrace_events_accepted_total"] == 1
    assert samples['lambtrace_events_rejected_total{code="bad_field"}'] == 1
    assert samples["lambtrace_blocks_total"] == 1 and samples["lambtrace_committed_events_total"] == 1
    assert "lambtrace_sigcache_hits_total" in samples and samples["lambtrace_mempool_events"] == 0
    assert samples['lambtrace_http_requests_total{method="POST",route="/v1/events",status="200"}'] == 2
    assert samples['lambtrace_http_requests_total{method="GET",route="unmatched",status="404"}'] == 1


# -- the client over real HTTP -----------------------------------------------------------------


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[ApiWorld, str]]:
    w = ApiWorld(LevelKV(str(tmp_path / "db")))
    server = make_server("127.0.0.1", 0, w.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    w.node.start()
    yield w, f"http://127.0.0.1:{server.server_port}"
    w.node.stop()
    server.shutdown()
    thread.join(timeout=5)
    w.store.close()


def test_client_round_trip(served: tuple[ApiWorld, str]) -> None:
    w, url = served
    c = Client(url, timeout=10)
    assert c.status()["chain"] == CHAIN and c.health()["ok"] is True
    results = c.submit([w.enroll(COOP, "cooperative", "152523"), w.enroll(PLANT, "plant", "152502")], wait=True)
    assert [r["state"] for r in results] == ["committed", "committed"]
    one = c.submit(w.enroll(AGENT, "herder_agent", "152523", parent=COOP))
    assert one[0]["status"] == "accepted"
    done = c.wait_committed([one[0]["id"]], timeout_s=10)
    assert done[one[0]["id"]]["state"] == "committed"
    st = c.wait_for_height(1, timeout_s=10)
    assert st["height"] >= 1
    assert c.block("latest")["height"] == st["height"] or c.block("latest")["height"] > st["height"]
    assert c.event(one[0]["id"])["kind"] == "actor.enroll"
    assert c.actor(AGENT)["parent"] == COOP and c.stats()["height"] >= 1
    size = c.status()["log_size"]
    p = c.consistency(1, size)
    assert p["second"] == size
    assert c.inclusion(0)["index"] == 0
    with pytest.raises(ClientError) as exc:
        c.tag("315252300000001")
    assert exc.value.code == "not_found" and exc.value.status == 404
    with pytest.raises(ClientError) as exc:
        c.event("nope")
    assert exc.value.code == "bad_id" and exc.value.status == 400
    with pytest.raises(WaitTimeout):
        c.wait_for_height(10_000, timeout_s=0.2)


def test_client_label_proof_raw_and_json(served: tuple[ApiWorld, str]) -> None:
    w, url = served
    w.node.stop()  # the season commits by hand
    w.season()
    c = Client(url)
    raw = c.label_proof("l-0001", raw=True)
    assert isinstance(raw, bytes)
    assert schema.to_json(codec.decode(raw)) == c.label_proof("l-0001")
    full = codec.decode(c.label_proof("l-0001", raw=True, genesis=True))
    assert full == {**codec.decode(raw), "genesis": w.genesis.to_dict()}
    assert schema.to_json(full) == c.label_proof("l-0001", genesis=True)
    assert c.genesis() == schema.to_json(w.genesis.to_dict())
    assert verify_label(raw, c.genesis()).label == "l-0001"  # the fetched genesis, as a verifier would use it
    assert c.label("l-0001")["tag"] == TAG_A and c.tag(TAG_A)["status"] == "labelled"


def test_client_transport_error_and_429_retry() -> None:
    with pytest.raises(TransportError):
        Client("http://127.0.0.1:9", timeout=2).status()

    class FakeSession(requests.Session):
        def __init__(self, statuses: list[int]) -> None:
            super().__init__()
            self.statuses = statuses
            self.calls = 0

        def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
            status = self.statuses[min(self.calls, len(self.statuses) - 1)]
            self.calls += 1
            resp = requests.Response()
            resp.status_code = status
            if status == 429:
                resp._content = json.dumps({"error": {"code": "mempool_full", "message": "full"}}).encode()
            else:
                resp._content = json.dumps({"results": [{"id": "00" * 32, "status": "accepted"}]}).encode()
            resp.headers["Content-Type"] = "application/json"
            return resp

    s = FakeSession([429, 429, 200])
    c = Client("http://example.invalid", session=s, backoff_s=0.001)
    assert c.submit({"event": {}, "sigs": []})[0]["status"] == "accepted" and s.calls == 3
    s = FakeSession([429])
    c = Client("http://example.invalid", session=s, backoff_s=0.001, retries=2)
    with pytest.raises(ClientError) as exc:
        c.submit([{"event": {}, "sigs": []}])
    assert exc.value.code == "mempool_full" and exc.value.status == 429 and s.calls == 3
