"""The browser's verifier and ``verify.verify_label`` give every bundle one verdict.

tests/test_consumer_page.py holds verify.js to Python's code on chosen mutations of a
bundle, in Chromium.  Here, in node, every field mutation tests/test_verify_label.py
makes of a genuine JSON bundle (each field deleted, retyped, flipped, truncated,
extended; each list emptied, reversed, reordered, duplicated; an extra key in each map)
and its targeted ones (events' fields swapped, indexes moved, precommits replaced,
multiproof hashes zeroed and moved), of the v3 bundle by reference, the same bundle with
its genesis embedded, and the v2 and the archived v1 form of a chain without the recall
map, goes through both verifiers: the codes must be equal.  ``LAMBTRACE_SLOW=1`` adds
4,000 random deeper mutations (hex flipped at any position of any string, pairs of field
mutations).

Likewise every field mutation of every event of a season, and every byte of it flipped,
deleted or preceded by a msgpack type byte, goes through both event parsers
(``ledger.events.parse_leaf``, verify.js ``parseLeaf``): the same leaves accepted, with
the same ids.  And whatever a node admits of mutated fresh events, the audit and both
parsers read; and every label of a seeded season verifies in both with one story.  Both
know the same event kinds, with the same roles and body schemas.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_audit import raw_blocks
from test_verify_label import LABEL, field_mutations, get_at, set_at, targeted_mutations, walk

from api import create_app
from helpers_api import AGENT, BANNER_OFFICE, COOP, OFFICE, PLANT, ApiWorld, as_v1
from lambtrace.season import PILOT_BANNERS, Season, make_cast, make_trace_office
from ledger import codec
from ledger.errors import LedgerError, Rejected
from ledger.events import KINDS, parse_leaf
from ledger.genesis import Genesis, Params, Validator
from ledger.recallmap import KIND as RECALLS
from ledger.schema import to_json
from node.kv import MemoryKV
from node.node import Node
from node.store import ChainStore
from signer import generate
from signer.software import public_key_record
from verify import VerificationError, verify_label
from verify.audit import audit_chain

NODE = shutil.which("node") or "/usr/bin/node"
VERIFY_JS = Path(__file__).resolve().parents[1] / "api" / "static" / "verify.js"

pytestmark = pytest.mark.skipif(not Path(NODE).exists(), reason="node is not installed")

_HARNESS = r"""
import { readFileSync } from "node:fs";

const V = await import(process.argv[2]);
const vectors = JSON.parse(readFileSync(process.argv[3], "utf8"));
const codes = [];
for (const c of vectors.cases) {
  let code = null;
  try {
    await V.verifyLabelBundle(c.bundle, { label: c.label, fingerprint: null, genesis: vectors.genesis[c.genesis] });
  } catch (e) {
    code = e instanceof V.VerificationError ? e.code : `crash: ${e && e.stack || e}`;
  }
  codes.push(code);
}
process.stdout.write(JSON.stringify(codes));
"""


def python_code(bundle: Any, genesis: Genesis) -> str | None:
    try:
        verify_label(json.dumps(bundle), genesis, label=LABEL)
    except VerificationError as exc:
        return exc.code
    return None


def run_js(tmp_path: Path, harness: str, data: Any = None) -> Any:
    """Run ``harness`` (an ES module) in node with verify.js's URL and, when ``data`` is
    given, the path of a JSON file holding it; its standard output, as JSON."""
    (tmp_path / "harness.mjs").write_text(harness, encoding="utf-8")
    args = [NODE, str(tmp_path / "harness.mjs"), VERIFY_JS.as_uri()]
    if data is not None:
        (tmp_path / "data.json").write_text(json.dumps(data), encoding="utf-8")
        args.append(str(tmp_path / "data.json"))
    run = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout)


def nested(depth: int) -> Any:
    """``1`` inside ``depth`` lists."""
    v: Any = 1
    for _ in range(depth):
        v = [v]
    return v


@pytest.fixture(scope="module")
def forms() -> dict[str, tuple[Any, Genesis, Any]]:
    """Genuine bundles, each in JSON, with the genesis it verifies against, and as values
    with bytes (for tests/test_verify_label.py's targeted mutations)."""
    w = ApiWorld(MemoryKV())
    w.season()
    legacy = ApiWorld(MemoryKV(), recall_map=False)
    legacy.season()

    def proof(world: ApiWorld, query: str = "") -> Any:
        r = world.http.get(f"/v1/labels/{LABEL}/proof{query}", headers={"Accept": "application/msgpack"})
        assert r.status_code == 200
        return codec.decode(r.get_data())

    values = {"v3": (proof(w), w.genesis), "v3+genesis": (proof(w, "?genesis=1"), w.genesis),
              "v2": (proof(legacy), legacy.genesis), "v1": (as_v1(legacy, proof(legacy)), legacy.genesis)}
    return {name: (to_json(b), g, b) for name, (b, g) in values.items()}


def _cases(forms: dict[str, tuple[Any, Genesis, Any]], extra: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    geneses = {name: to_json(g.to_dict()) for name, (_b, g, _v) in forms.items()}
    rng = random.Random(20261205)
    genuine = {json.dumps(b, sort_keys=True) for b, _g, _v in forms.values()}  # deleting the embedded genesis gives v3
    for name, (b, g, value) in forms.items():
        assert python_code(b, g) is None, name
        seen = set(genuine)
        muts = list(field_mutations(b))
        targeted = [(what, to_json(m)) for what, m in targeted_mutations(value)]
        for what, m in [*muts, *targeted]:
            try:
                key = json.dumps(m, sort_keys=True)
            except (TypeError, ValueError):
                continue  # bytes: a JSON bundle cannot hold them
            if key in seen:
                continue
            seen.add(key)
            cases.append({"name": f"{name}: {what}", "bundle": m, "genesis": name, "label": LABEL})
        if name == "v1":  # each event proves itself: drop any two, and more than one part may be missing
            n = len(b["events"])
            for i in range(n):
                for j in range(i + 1, n):
                    kept = [e for k, e in enumerate(b["events"]) if k not in (i, j)]
                    cases.append({"name": f"v1: events {i} and {j} dropped", "bundle": {**b, "events": kept},
                                  "genesis": name, "label": LABEL})
        # JSON's own edges: a fraction, nesting as deep as allowed (64: the bundle and 63
        # lists in its genesis) and deeper; a fraction written as a whole number (1.0) is
        # the one difference left, since JavaScript's JSON.parse reads it as 1
        for what, m in (("a fraction", {**b, "gaps": [0.5]}), ("nested 64 deep", {**b, "genesis": nested(63)}),
                        ("nested 65 deep", {**b, "genesis": nested(64)}),
                        ("nested 200 deep", {**b, "genesis": nested(200)})):
            cases.append({"name": f"{name}: {what}", "bundle": m, "genesis": name, "label": LABEL})
        strings = [(p, v) for p, v in walk(b) if type(v) is str and v]
        for k in range(extra):
            if k % 2:  # one hex digit (or character) changed anywhere in any string
                path, v = rng.choice(strings)
                i = rng.randrange(len(v))
                c = rng.choice([ch for ch in "0123456789abcdefA-" if ch != v[i]])
                what, m = f"{'/'.join(map(str, path))}[{i}] := {c}", set_at(b, path, v[:i] + c + v[i + 1:])
            else:  # two field mutations at once, where the second still applies
                (w1, m1), (w2, m2) = rng.sample(muts, 2)
                path2 = next((p for p, v in walk(m2) if p and v != _get(b, p)), None)
                if path2 is None or _get(m1, path2[:-1]) is None:
                    continue
                try:
                    m = set_at(m1, path2, get_at(m2, path2))
                except (KeyError, IndexError, TypeError):
                    continue
                what = f"{w1} and {w2}"
            try:
                key = json.dumps(m, sort_keys=True)
            except (TypeError, ValueError):
                continue
            if key not in seen:
                seen.add(key)
                cases.append({"name": f"{name}: {what}", "bundle": m, "genesis": name, "label": LABEL})
    return cases, geneses


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path``, or None where the path leads nowhere."""
    try:
        return get_at(value, path)
    except (KeyError, IndexError, TypeError):
        return None


def test_both_verifiers_give_every_mutation_one_code(forms: dict[str, tuple[Any, Genesis, Any]],
                                                      tmp_path: Path) -> None:
    extra = 4_000 if os.environ.get("LAMBTRACE_SLOW") == "1" else 0
    cases, geneses = _cases(forms, extra)
    assert len(cases) > 2_400, len(cases)
    want = [python_code(c["bundle"], forms[c["genesis"]][1]) for c in cases]
    got: list[str | None] = run_js(tmp_path, _HARNESS, {"cases": cases, "genesis": geneses})
    assert len(got) == len(cases)
    differ = [f"{c['name'][:140]}: verify_label {w}, verify.js {g}"
              for c, w, g in zip(cases, want, got) if w != g]
    assert differ == [], f"{len(differ)} of {len(cases)} differ:\n" + "\n".join(differ[:60])
    # every mutation is refused (none is a no-op the walk missed), and for many reasons
    assert [c["name"] for c, w in zip(cases, want) if w is None] == []
    assert len(set(want)) >= 8, sorted(set(want))  # type: ignore[type-var]


# -- one event, two parsers ------------------------------------------------------------------

_LEAF_HARNESS = r"""
import { readFileSync } from "node:fs";

const V = await import(process.argv[2]);
const leaves = JSON.parse(readFileSync(process.argv[3], "utf8"));
const out = [];
for (const hex of leaves) {
  try {
    out.push(V.bytesToHex((await V.parseLeaf(V.hexToBytes(hex))).id));
  } catch (e) {
    out.push(e instanceof V.VerificationError ? "refused" : `crash: ${e && e.stack || e}`);
  }
}
process.stdout.write(JSON.stringify(out));
"""


def python_leaf(leaf: bytes) -> str:
    try:
        return parse_leaf(leaf).id.hex()
    except Rejected:
        return "refused"


def test_both_parsers_read_every_event_alike(tmp_path: Path) -> None:
    """Every field of every event of a season (each kind the season has) deleted, retyped,
    flipped, truncated, extended, an extra key in each map: ``ledger.events.parse_leaf``
    and verify.js's ``parseLeaf`` accept the same leaves, with the same event id, and
    refuse the rest.  (Signatures are checked elsewhere: both parse, neither verifies.)"""
    w = ApiWorld(MemoryKV())
    w.season()
    size = w.store.last_header.log_size if w.store.last_header else 0
    genuine = [leaf for _i, leaf in w.store.leaves(0, size)]
    cases: list[bytes] = []
    seen = set(genuine)
    for leaf in genuine:
        cases.append(leaf)
        for _what, m in field_mutations(codec.decode(leaf)):
            try:
                data = codec.encode(m)
            except Exception:  # a value canonical msgpack cannot hold (2**64 and beyond)
                continue
            if data not in seen:
                seen.add(data)
                cases.append(data)
    # and byte by byte: the canonical decoders (lengths, int widths, key order, str and
    # bin) refuse the same non-canonical encodings
    rng = random.Random(9)
    interesting = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xC3, 0xC4, 0xCC, 0xCD, 0xD0, 0xD9,
                   0xDA, 0xDC, 0xDE, 0xE0, 0xFF]
    for leaf in genuine:
        for i in range(len(leaf)):
            for data in (leaf[:i] + bytes([leaf[i] ^ 0x01]) + leaf[i + 1:], leaf[:i] + leaf[i + 1:],
                         leaf[:i] + bytes([rng.choice(interesting)]) + leaf[i:]):
                if data not in seen:
                    seen.add(data)
                    cases.append(data)
    assert len({parse_leaf(leaf).kind for leaf in genuine}) >= 9
    got: list[str] = run_js(tmp_path, _LEAF_HARNESS, [c.hex() for c in cases])
    want = [python_leaf(c) for c in cases]
    differ = [f"{c.hex()[:200]}: parse_leaf {w_[:16]}, verify.js {g[:200]}"
              for c, w_, g in zip(cases, want, got) if w_ != g]
    assert differ == [], f"{len(differ)} of {len(cases)} differ:\n" + "\n".join(d[:400] for d in differ[:40])
    assert want.count("refused") > len(cases) // 2 and len(cases) > 10_000, (want.count("refused"), len(cases))


# -- what a node accepts, every reader reads -------------------------------------------------


def test_what_a_node_accepts_every_reader_reads(tmp_path: Path) -> None:
    """Fresh events of five kinds (an enrolment, a tag range, a terminal, a tagging, a
    shipment), each mutated field by field as above, each mutation on an event of its own
    (new ids, so the rules do not refuse it as a repeat), signed and submitted,
    alternately as msgpack and as JSON: whatever the node admits and commits, the audit
    replays to the node's state, and both event parsers read with the id the node gave
    it.  A leaf the node commits that a verifier cannot read would break every label and
    audit that touches it."""
    w = ApiWorld(MemoryKV())
    w.season()
    serial = iter(range(1_000, 10**6))

    def enroll() -> tuple[str, str, dict[str, Any]]:
        key = generate("ed25519")
        return "actor.enroll", OFFICE, {"id": f"coop-{next(serial)}", "role": "cooperative", "banner": "152523",
                                        "name": "合作社", "keys": [{"alg": key.alg, "pub": key.public_key,
                                                                  "storage": "software"}]}

    def issue() -> tuple[str, str, dict[str, Any]]:
        return "tags.issue", OFFICE, {"to": COOP, "first": f"3152523{next(serial):08d}", "count": 1, "year": 2026}

    def terminal() -> tuple[str, str, dict[str, Any]]:
        key = generate("ed25519")
        return "device.register", BANNER_OFFICE, {
            "device": f"term-{next(serial)}", "owner": AGENT, "model": "HT-100",
            "key": {"alg": key.alg, "pub": key.public_key, "storage": "software"}}

    def tagging() -> tuple[str, str, dict[str, Any]]:
        kind, actor, body = issue()
        w.submit([w.ev(kind, actor, body)])
        return "lamb.tag", AGENT, {"tag": body["first"], "herder": "h-0001", "born": "2026-03-10",
                                   "breed": "苏尼特羊", "sex": "female", "sumu": "满都拉图镇"}

    def shipment() -> tuple[str, str, dict[str, Any]]:
        kind, actor, body = tagging()
        w.submit([w.ev(kind, actor, body)])
        return "custody.ship", AGENT, {"shipment": f"shp-{next(serial)}", "to": PLANT, "lambs": [body["tag"]]}

    accepted: list[str] = []
    tried = 0
    for fresh in (enroll, issue, terminal, tagging, shipment):
        for k in range(len(list(field_mutations(fresh()[2])))):
            kind, actor, base = fresh()
            _what, body = list(field_mutations(base))[k]
            tried += 1
            try:
                r = w.post([w.ev(kind, actor, body)], msgpack=tried % 2 == 0)
            except (TypeError, ValueError, OverflowError, LedgerError):
                continue  # a value the form cannot carry (2**64 in msgpack, bytes in JSON)
            assert r.status_code in (200, 400, 413, 422), (r.status_code, r.get_data(as_text=True)[:300])
            if r.status_code == 200:
                accepted += [x["id"] for x in r.get_json()["results"] if x["status"] == "accepted"]
            if w.node.mempool_size >= 50:
                w.commit()
        if w.node.mempool_size:
            w.commit()
    assert tried > 150 and len(accepted) > 20, (tried, len(accepted))
    store = w.store
    size = store.log_size
    leaves = [leaf for _i, leaf in store.leaves(0, size)]
    ids = [parse_leaf(leaf).id.hex() for leaf in leaves]
    assert set(accepted) <= set(ids)  # every accepted event was committed
    assert run_js(tmp_path, _LEAF_HARNESS, [c.hex() for c in leaves]) == ids
    rep = audit_chain(raw_blocks(store), w.genesis, node_state_hash=lambda h: store.state_hash())
    assert rep.intact and rep.events == size, rep.failure


# -- a whole season: every label, one story ----------------------------------------------------

_STORY_HARNESS = r"""
import { readFileSync } from "node:fs";

const V = await import(process.argv[2]);
const vectors = JSON.parse(readFileSync(process.argv[3], "utf8"));
const out = [];
for (const c of vectors.cases) {
  try {
    const r = await V.verifyLabelBundle(c.bundle,
                                        { label: c.label, fingerprint: vectors.fingerprint, genesis: vectors.genesis });
    const s = r.story;
    out.push({
      cut: s.cut, net_mass_g: s.net_mass_g, packed: s.packed, check_commitment: s.check_commitment,
      labelled_at: s.labelled_at, carcass: s.carcass, tag: s.tag, chip: s.chip,
      banner: s.lamb.banner, sumu: s.lamb.sumu, born: s.lamb.born, breed: s.lamb.breed, sex: s.lamb.sex,
      cooperative: s.lamb.cooperative, cooperative_name: s.lamb.cooperative_name, tagged_at: s.lamb.tagged_at,
      tagged_by: s.lamb.tagged_by, plant: s.plant.id, plant_name: s.plant.name, plant_banner: s.plant.banner,
      slaughter_date: s.slaughter.date, quarantine_cert: s.slaughter.quarantine_cert,
      carcass_mass_g: s.slaughter.carcass_mass_g, slaughtered_at: s.slaughter.time,
      custody: s.custody.map((h) => [h.shipment, h.from, h.to]),
      recalls: s.recalls.map((x) => [x.type, x.id, x.at, x.reason, x.index]),
      recalls_complete: r.recalls_complete, checkpoint_height: r.checkpoint.height, log_size: r.checkpoint.log_size,
    });
  } catch (e) {
    out.push(e instanceof V.VerificationError ? `${e.code}: ${e.message}` : `crash: ${e && e.stack || e}`);
  }
}
process.stdout.write(JSON.stringify(out));
"""

_STORY_FIELDS = ("cut", "net_mass_g", "packed", "labelled_at", "carcass", "tag", "chip", "banner", "sumu", "born",
                 "breed", "sex", "cooperative", "cooperative_name", "tagged_at", "tagged_by", "plant", "plant_name",
                 "plant_banner", "slaughter_date", "quarantine_cert", "carcass_mass_g", "slaughtered_at",
                 "recalls_complete", "checkpoint_height", "log_size")


def test_every_label_of_a_season_tells_one_story(tmp_path: Path) -> None:
    """A seeded season of 120 lambs (cooperatives, herder agents, terminals, custody over
    one or two hops, several plants, many cuts) and a recall, on a chain with the recall
    map: every label's bundle, as the node serves it, verifies in both verifiers, and the
    page tells the story ``verify_label`` reports, field by field."""
    start = 1_780_000_000_000
    rng = random.Random(2018)
    office = make_trace_office(rng)
    cast = make_cast(rng, office, lambs=120)
    season = Season(cast, chain="season-js", start_ms=start, lambs=120, rng=rng)
    validator = generate("ed25519")
    genesis = Genesis(chain="season-js", time=start - 60_000,
                      validators=(Validator("league", "152500", "ed25519", validator.public_key),),
                      trace_office={"id": office.id, "banner": office.banner, "name": office.name,
                                    "keys": [public_key_record(office.signer)]},
                      params=Params(tag_quotas=dict.fromkeys(PILOT_BANNERS, 1_000_000), state_root=RECALLS))
    node = Node(ChainStore(MemoryKV(), genesis), genesis, name="league", signer=validator,
                clock=lambda: start + 3 * 86_400_000, verify_threads=0)
    for batch in season.batches(max_batch=200):
        assert all(r["status"] == "accepted" for r in node.submit(batch))
        node.produce_block()
    recall = season.recall()
    assert recall is not None
    event, _carcass, recalled = recall
    assert node.submit([event])[0]["status"] == "accepted"
    node.produce_block()
    http = create_app(node).test_client()
    labels = sorted({x["label"] for _i, leaf in node.store.leaves(0, node.store.log_size)
                     if (ev_ := parse_leaf(leaf)).kind == "label.issue" for x in ev_.envelope["body"]["labels"]})
    assert len(labels) > 200 and set(recalled) <= set(labels)
    cases, want = [], []
    for label in labels:
        r = http.get(f"/v1/labels/{label}/proof")
        assert r.status_code == 200, label
        bundle = r.get_json()
        rep = verify_label(json.dumps(bundle), genesis, label=label)
        cases.append({"label": label, "bundle": bundle})
        want.append({**{k: getattr(rep, k) for k in _STORY_FIELDS}, "check_commitment": rep.check_commitment.hex(),
                     "custody": [[h.shipment, h.from_actor, h.to_actor] for h in rep.custody],
                     "recalls": [[x.target_type, x.target_id, x.at, x.reason, x.index] for x in rep.recalls]})
    got = run_js(tmp_path, _STORY_HARNESS, {"cases": cases, "genesis": to_json(genesis.to_dict()),
                                            "fingerprint": genesis.hash.hex()[:32]})
    differ = [(c["label"], w_, g) for c, w_, g in zip(cases, want, got) if w_ != g]
    assert differ == [], f"{len(differ)} of {len(cases)} labels differ, first: {differ[0]}"
    assert sum(1 for w_ in want if w_["recalls"]) == len(recalled)
    assert {len(w_["custody"]) for w_ in want} >= {1, 2}


# -- one schema ---------------------------------------------------------------------------------

_KINDS_HARNESS = r"""
const V = await import(process.argv[2]);
process.stdout.write(JSON.stringify(V.KINDS));
"""


def _field_shape(f: Any) -> dict[str, Any]:
    """A ledger.schema.Field as verify.js writes one: ``{t, req, min, max, choices, item,
    fields, size}``, the absent ones left out."""
    out: dict[str, Any] = {"t": f.type, "req": f.required}
    for k in ("min", "max", "size"):
        if getattr(f, k) is not None:
            out[k] = getattr(f, k)
    if f.choices:
        out["choices"] = list(f.choices)
    if f.item is not None:
        out["item"] = _field_shape(f.item)
    if f.fields:
        out["fields"] = {k: _field_shape(v) for k, v in f.fields.items()}
    return out


def test_both_know_the_same_event_kinds(tmp_path: Path) -> None:
    """verify.js's KINDS are ledger.events.KINDS: the same kinds, signed by the same roles,
    with the same body fields, types and bounds.  A kind the page does not know makes it
    refuse (``bad_event``) a leaf Python reads."""
    js: dict[str, Any] = run_js(tmp_path, _KINDS_HARNESS)
    assert sorted(js) == sorted(KINDS)
    for name, kind in KINDS.items():
        assert sorted(js[name]["roles"]) == sorted(kind.roles), name
        assert js[name]["body"] == {k: _field_shape(f) for k, f in kind.body.items()}, name
