"""verify.js's recall map (api/static/verify.js) against ledger/recallmap.py, in node.

The consumer page checks a v3 bundle's ``recalls`` path with ``recallProofFromJson`` and
``checkRecallProof`` (docs/label-proof.md, "The recall map").  Here the Python reference
makes the vectors at test time: the documented test vectors, chains over random recall
leaves, keys of odd labels, random maps (one with two labels sharing a 24-bit prefix, so
masks run over several bytes), the canonical path of present and absent labels in each,
and mutations of every part of those paths and of their JSON form.  verify.js must accept
exactly what ``proof_from_value`` + ``check_proof`` accept, and refuse the rest with the
verifier's code: ``malformed_bundle`` for a shape ``proof_from_value`` refuses (or hex a
JSON bundle cannot hold), ``recalls_not_proven`` for any proof ``check_proof`` refuses.
tests/test_consumer_page.py covers whole v3 bundles in Chromium.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lambtrace.config import genesis_from_json
from ledger import recallmap as R
from ledger.errors import ProofError, Rejected, VerificationError
from ledger.genesis import Genesis, Params, Validator
from ledger.schema import to_json
from signer import generate

NODE = shutil.which("node") or "/usr/bin/node"
VERIFY_JS = Path(__file__).resolve().parents[1] / "api" / "static" / "verify.js"

pytestmark = pytest.mark.skipif(not Path(NODE).exists(), reason="node is not installed")

DOC_LEAF = b"example recall leaf"

_HARNESS = r"""
import { readFileSync } from "node:fs";

const V = await import(process.argv[2]);
const vectors = JSON.parse(readFileSync(process.argv[3], "utf8"));
const hex = (h) => V.hexToBytes(h);
const problems = [];
const expect = (ok, what) => { if (!ok) problems.push(what); };

expect(V.FORMAT === vectors.formats[0] && JSON.stringify(V.FORMATS) === JSON.stringify(vectors.formats),
       `formats: ${V.FORMATS}`);
expect(V.RECALL_MAP === vectors.recallMap, `RECALL_MAP ${V.RECALL_MAP}`);
for (const c of vectors.chains) {
  const got = await V.recallChain(c.leaves.map(hex));
  expect((got === null ? null : V.bytesToHex(got)) === c.chain, `chain of ${c.leaves.length} leaves: ${got}`);
}
for (const k of vectors.keys) {
  expect(V.bytesToHex(await V.recallKey(k.label)) === k.key, `key of ${JSON.stringify(k.label)}`);
}
for (const g of vectors.genesis) {
  let got;
  try { got = V.bytesToHex(await V.genesisHash(V.genesisFromJson(g.json))); } catch (e) { got = `error ${e.code}`; }
  expect(got === g.hash, `genesis ${g.name}: ${got}`);
}
const codes = [];
for (const c of vectors.proofs) {
  let code = null;
  try {
    const proof = V.recallProofFromJson(c.recalls);
    await V.checkRecallProof(proof, c.label, c.value === null ? null : hex(c.value), hex(c.root));
  } catch (e) {
    code = e instanceof V.VerificationError ? e.code : `crash: ${e && e.stack || e}`;
  }
  codes.push(code);
  expect(code === c.code, `${c.name}: verify.js says ${code}, Python ${c.code}`);
}
process.stdout.write(JSON.stringify({ problems, codes }));
"""


# --------------------------------------------------------------------------- Python's verdict


def _unhex(v: Any) -> Any:
    """A JSON bundle's hex as bytes, as verify/label.py reads it (lowercase, even length)."""
    if type(v) is not str:
        return v
    if len(v) % 2 or any(c not in "0123456789abcdef" for c in v):
        raise ValueError("not lowercase hex")
    return bytes.fromhex(v)


def _from_json(j: Any) -> Any:
    if type(j) is not dict:
        return j
    out = dict(j)
    for k in ("mask", "siblings", "other"):
        if k in out:
            out[k] = _unhex(out[k])
    return out


def _python_code(recalls: Any, label: str, value: bytes | None, root: bytes) -> str | None:
    """The code the verifier gives a bundle with this ``recalls`` (JSON form)."""
    try:
        proof = R.proof_from_value(_from_json(recalls))
    except (ValueError, ProofError):
        return "malformed_bundle"
    try:
        R.check_proof(proof, label, value, root)
    except VerificationError:
        return "recalls_not_proven"
    return None


# --------------------------------------------------------------------------- vectors


def _json(p: R.Proof) -> dict[str, Any]:
    out: dict[str, Any] = to_json(p.to_value())
    return out


def _flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]


def _proof_mutations(p: R.Proof) -> list[tuple[str, R.Proof]]:
    """Every part of a path changed (each still of a well-formed shape)."""
    d, mask, sibs, other = p.depth, p.mask, list(p.siblings), p.other
    out = [("one deeper", R.Proof(d + 1, mask + (b"\x00" if d % 8 == 0 else b""), p.siblings, other))]
    if d:
        out.append(("one shallower", R.Proof(d - 1, mask[: (d + 6) // 8], p.siblings, other)))
        out.append(("depth 0", R.Proof(0, b"", (), other)))
    for i in range(len(mask)):
        for b in range(8):
            m = bytearray(mask)
            m[i] ^= 1 << b
            out.append((f"mask byte {i} bit {b}", R.Proof(d, bytes(m), p.siblings, other)))
    for i in range(len(sibs)):
        out.append((f"sibling {i} changed", R.Proof(d, mask, (*sibs[:i], _flip(sibs[i], 31), *sibs[i + 1:]), other)))
        out.append((f"sibling {i} dropped", R.Proof(d, mask, (*sibs[:i], *sibs[i + 1:]), other)))
        out.append((f"EMPTY before sibling {i}", R.Proof(d, mask, (*sibs[:i], R.EMPTY, *sibs[i:]), other)))
    out.append(("one more sibling", R.Proof(d, mask, (*sibs, b"\x05" * 32), other)))
    for i in range(d):  # an EMPTY sibling listed, its bit set: the same root, not canonical
        if not mask[i // 8] & (0x80 >> (i % 8)):
            m = bytearray(mask)
            m[i // 8] |= 0x80 >> (i % 8)
            at = sum(bool(mask[k // 8] & (0x80 >> (k % 8))) for k in range(i))
            out.append((f"EMPTY sibling {i} listed", R.Proof(d, bytes(m), (*sibs[:at], R.EMPTY, *sibs[at:]), other)))
    if len(sibs) > 1:
        out.append(("siblings reversed", R.Proof(d, mask, tuple(reversed(sibs)), other)))
    if other is not None:
        k, v = other
        out += [
            ("other dropped", R.Proof(d, mask, p.siblings, None)),
            ("other value", R.Proof(d, mask, p.siblings, (k, _flip(v)))),
            ("other key last bit", R.Proof(d, mask, p.siblings, (_flip(k, 31), v))),
            ("other key first bit", R.Proof(d, mask, p.siblings, (bytes([k[0] ^ 0x80]) + k[1:], v))),
        ]
        if d:  # the first bit it shares with the label's key, flipped: off the path
            j = d - 1
            kk = bytearray(k)
            kk[j // 8] ^= 0x80 >> (j % 8)
            out.append(("other key off the path", R.Proof(d, mask, p.siblings, (bytes(kk), v))))
    else:
        out.append(("an other entry", R.Proof(d, mask, p.siblings, (b"\x01" * 32, b"\x02" * 32))))
    return [(name, m) for name, m in out if m != p]


def _implied_root(p: R.Proof, label: str, value: bytes | None) -> bytes | None:
    """The root a path leads to, hashed up without any of the canonicity checks (None
    when its mask does not say which siblings it lists)."""
    bits = [bool(p.mask[i // 8] & (0x80 >> (i % 8))) for i in range(p.depth)]
    if sum(bits) != len(p.siblings):
        return None
    key = R.key_of(label)
    node = R.EMPTY
    if value is not None:
        node = R.leaf_node(key, value)
    elif p.other is not None:
        node = R.leaf_node(*p.other)
    sibs = list(p.siblings)
    for i in range(p.depth - 1, -1, -1):
        s = sibs.pop() if bits[i] else R.EMPTY
        pair = s + node if key[i // 8] & (0x80 >> (i % 8)) else node + s
        node = hashlib.sha256(b"\x01" + pair).digest()
    return node


def _shape_mutations(j: dict[str, Any]) -> list[tuple[str, Any]]:
    """The JSON form changed into shapes a bundle may not have (or, rarely, may)."""
    d = j["depth"]
    sib = j["siblings"][:64] if j["siblings"] else "07" * 32
    other = j["other"] or "08" * 64
    return [
        ("not a map", [j]), ("null", None), ("extra key", {**j, "x": 1}),
        *[(f"no {k}", {x: v for x, v in j.items() if x != k}) for k in j],
        ("depth -1", {**j, "depth": -1}), ("depth 257", {**j, "depth": 257, "mask": "00" * 33}),
        ("depth as text", {**j, "depth": str(d)}), ("depth true", {**j, "depth": True}),
        ("depth 1.5", {**j, "depth": 1.5}), ("depth null", {**j, "depth": None}),
        ("mask one byte longer", {**j, "mask": j["mask"] + "00"}),
        ("mask uppercase", {**j, "mask": j["mask"][:-2] + "AB"}), ("mask odd hex", {**j, "mask": j["mask"] + "0"}),
        ("mask a list", {**j, "mask": [j["mask"]]}), ("mask a number", {**j, "mask": 0}),
        ("siblings a map", {**j, "siblings": {"0": sib}}), ("siblings a list", {**j, "siblings": [sib]}),
        ("siblings a list of their hex", {**j, "siblings": [j["siblings"]]}),
        ("a sibling 31 bytes more", {**j, "siblings": j["siblings"] + sib[:-2]}),
        ("a sibling 33 bytes more", {**j, "siblings": j["siblings"] + sib + "00"}),
        ("siblings a byte short", {**j, "siblings": j["siblings"][:-2]} if j["siblings"] else {**j, "siblings": "00"}),
        ("siblings uppercase", {**j, "siblings": j["siblings"] + sib.upper()}),
        ("siblings not hex", {**j, "siblings": j["siblings"] + "zz" * 32}),
        ("siblings a number", {**j, "siblings": 7}), ("siblings null", {**j, "siblings": None}),
        ("257 siblings", {**j, "siblings": "07" * 32 * 257}),
        ("other null", {**j, "other": None}), ("other one hash", {**j, "other": other[:64]}),
        ("other three hashes", {**j, "other": other + other[:64]}), ("other a map", {**j, "other": {}}),
        ("other a byte short", {**j, "other": other[:-2]}), ("other a list", {**j, "other": [other[:64], other[64:]]}),
        ("other a number", {**j, "other": 5}),
    ]


def _entries(n: int, rnd: random.Random) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    while len(out) < n:
        leaves = [rnd.randbytes(rnd.randrange(1, 80)) for _ in range(rnd.randrange(1, 4))]
        value = R.chain_of(leaves)
        assert value is not None
        out[f"L{rnd.randrange(10**10):010d}"] = value
    return out


def _close_pair(bits: int) -> tuple[str, str]:
    """Two labels whose keys share their first ``bits`` bits (a birthday search)."""
    seen: dict[int, str] = {}
    i = 0
    while True:
        label = f"p-{i}"
        k = int.from_bytes(R.key_of(label), "big") >> (256 - bits)
        if k in seen:
            return seen[k], label
        seen[k] = label
        i += 1


def _doc_vectors() -> dict[str, bytes]:
    """The map docs/label-proof.md quotes, and its table of paths."""
    c1, c2 = R.chain_of([DOC_LEAF]), R.chain_of([DOC_LEAF, DOC_LEAF])
    assert c1 is not None and c2 is not None
    assert c1.hex() == "c71a64434503b110d6b94a81f96099c85ad71f3d98f761d87bfd69b3db5dee88"
    assert c2.hex() == "31255cb55886306ffe11f59aff1dc38bcb6200113163cc5d717ee2a20eca0715"
    entries = {"L2018000001": c1, "L2018000002": c2, "L2018000003": c1}
    tree = R.RecallTree(entries)
    assert tree.root.hex() == "ea012a4b3e629b0ddc0be6af9900e748d43d46ce5d84d79af0a0ec19ad595956"
    table = {"L2018000001": (3, "a0", ["d075e79a", "35387712"], None),
             "L2018000002": (1, "80", ["587d1bf3"], None),
             "L2018000004": (3, "a0", ["d075e79a", "1d2166c7"], ("03ba103c", c1)),
             "L2018000005": (1, "80", ["587d1bf3"], ("e3e32bd8", c2))}
    for label, (depth, mask, sibs, other) in table.items():
        p = tree.prove(label)
        assert (p.depth, p.mask.hex(), [s.hex()[:8] for s in p.siblings]) == (depth, mask, sibs), label
        assert (p.other is None) == (other is None)
        if p.other is not None and other is not None:
            assert p.other[0].hex().startswith(other[0]) and p.other[1] == other[1]
    return entries


def _proof_vectors() -> list[dict[str, Any]]:
    rnd = random.Random(11)
    maps: list[dict[str, bytes]] = [_doc_vectors(), {}]
    maps += [_entries(n, rnd) for n in (1, 2, 3, 17, 300)]
    a, b = _close_pair(24)
    maps.append({a: bytes(range(32)), b: b"\x09" * 32, **_entries(40, rnd)})
    out: list[dict[str, Any]] = []

    def add(name: str, recalls: Any, label: str, value: bytes | None, root: bytes) -> None:
        out.append({"name": name, "recalls": recalls, "label": label,
                    "value": value.hex() if value is not None else None, "root": root.hex(),
                    "code": _python_code(recalls, label, value, root)})

    for n, entries in enumerate(maps):
        tree = R.RecallTree(entries)
        present = list(entries)[:5]
        if n == len(maps) - 1:
            present[:2] = [a, b]
        absent = ["L2018000004", "L2018000005", "absent-0", "羊腿-1", f"{a}x"][: 5 if entries else 2]
        for label in present + absent:
            value = entries.get(label)
            p = tree.prove(label)
            j = _json(p)
            where = f"map {n} ({len(entries)} entries) {label} ({'present' if value else 'absent'}, depth {p.depth})"
            add(f"{where}: genuine", j, label, value, tree.root)
            assert out[-1]["code"] is None, out[-1]["name"]
            before = len(out)
            for what, bad in _proof_mutations(p):
                add(f"{where}: {what}", _json(bad), label, value, tree.root)
            for what, bad_json in _shape_mutations(j):
                add(f"{where}: {what}", bad_json, label, value, tree.root)
            add(f"{where}: another root", j, label, value, _flip(tree.root, 5))
            if entries:
                add(f"{where}: the zero root", j, label, value, R.EMPTY)
            if value is not None:
                add(f"{where}: one more recall", j, label, R.chain_step(value, DOC_LEAF), tree.root)
                add(f"{where}: no recall", j, label, None, tree.root)
                # the recalls left out of the bundle, the label's own entry shown as "other"
                own = _json(R.Proof(p.depth, p.mask, p.siblings, (R.key_of(label), value)))
                add(f"{where}: recalls left out, own entry as other", own, label, None, tree.root)
            else:
                add(f"{where}: a recall", j, label, R.chain_of([DOC_LEAF]), tree.root)
                if p.other is not None:  # the other entry's own value, claimed for this label
                    add(f"{where}: the other's value", j, label, p.other[1], tree.root)
            # every change is refused (Python: the vectors test something)
            assert all(c["code"] is not None for c in out[before:]), [c["name"] for c in out[before:] if not c["code"]]
            # each changed path against the root it leads to: only canonicity can refuse it
            for what, bad in _proof_mutations(p):
                implied = _implied_root(bad, label, value)
                if implied is not None:
                    add(f"{where}: {what}, its own root", _json(bad), label, value, implied)
            # another label on the same path: its absence may be proven by the same path
            add(f"{where}: another label", j, f"{label}-", value, tree.root)
    return out


def _genesis_vectors() -> list[dict[str, Any]]:
    out = []
    for name, params in (("no recall map", Params()), ("recall map", Params(state_root=R.KIND))):
        g = Genesis(chain="js-chain", time=1_790_000_000_000,
                    validators=(Validator("league", "152500", "ed25519", generate("ed25519").public_key),),
                    trace_office={"id": "office", "banner": "152500",
                                  "keys": [{"alg": "ed25519", "pub": generate("ed25519").public_key,
                                            "storage": "software"}]},
                    params=params)
        j = to_json(g.to_dict())
        assert ("state_root" in j["params"]) == bool(params.state_root)
        out.append({"name": name, "json": j, "hash": g.hash.hex()})
    bad = json.loads(json.dumps(out[1]["json"]))
    bad["params"]["state_root"] = "recalls/v2"
    out.append({"name": "unknown state_root", "json": bad, "hash": "error malformed"})
    twice = json.loads(json.dumps(out[1]["json"]))
    twice["validators"].append({**twice["validators"][0], "name": "banner-1"})
    with pytest.raises(Rejected):
        genesis_from_json(json.dumps(twice))
    out.append({"name": "one key for two validators", "json": twice, "hash": "error malformed"})
    # a genesis written by hand: parameters left out take their defaults, an empty
    # terminal_quotas is dropped; the hash is the one Python gives the same document
    full = out[1]["json"]
    hand: tuple[tuple[str, dict[str, Any]], ...] = (
        ("defaults left out", {"state_root": R.KIND}),
        ("some defaults left out", {"state_root": R.KIND, "max_future_ms": 60_000, "tag_quotas": {"152522": 10}}),
        ("empty terminal_quotas", {**full["params"], "terminal_quotas": {}}),
        ("terminal_quotas", {**full["params"], "terminal_quotas": {"152522": 3}}),
    )
    for name, written in hand:
        j = {**full, "params": written}
        out.append({"name": name, "json": j, "hash": genesis_from_json(json.dumps(j)).hash.hex()})
    assert out[-4]["hash"] == out[-2]["hash"] == out[1]["hash"] != out[-1]["hash"] != out[-3]["hash"]
    refused: tuple[tuple[str, dict[str, Any]], ...] = (
        ("unknown parameter", {"state_root": R.KIND, "max_latenes_ms": 1}),
        ("slaughter_requires_hsm not a boolean", {"slaughter_requires_hsm": 1}),
        ("a negative timeout", {"timeout_propose_ms": -1}),
        ("a quota for no county", {"tag_quotas": {"999999": 10}}),
        ("a quota not a count", {"terminal_quotas": {"152522": "3"}}),
        ("state_root empty", {"state_root": ""}),
    )
    for name, written in refused:
        j = {**full, "params": written}
        with pytest.raises(Rejected):
            genesis_from_json(json.dumps(j))
        out.append({"name": name, "json": j, "hash": "error malformed"})
    # the rest of the document: what Python refuses, the browser refuses
    office = full["trace_office"]
    key = office["keys"][0]
    validator = full["validators"][0]
    others: tuple[tuple[str, dict[str, Any]], ...] = (
        ("a parameter past 2^53", {"params": {"max_lateness_ms": 2**53}}),
        ("a time past 2^53", {"time": 2**53}),
        ("a validator's banner not a county", {"validators": [{**validator, "banner": "Xilinhot"}]}),
        ("a validator's name not an id", {"validators": [{**validator, "name": "league node"}]}),
        ("a trace office id not an id", {"trace_office": {**office, "id": "-office"}}),
        ("a trace office banner not a county", {"trace_office": {**office, "banner": "152599"}}),
        ("a trace office name too long", {"trace_office": {**office, "name": "锡" * 129}}),
        ("nine root keys", {"trace_office": {**office, "keys": [key] * 9}}),
        ("a root key stored nowhere known", {"trace_office": {**office, "keys": [{**key, "storage": "cloud"}]}}),
    )
    for name, changed in others:
        j = {**full, **changed}
        with pytest.raises(Rejected):
            genesis_from_json(json.dumps(j))
        out.append({"name": name, "json": j, "hash": "error malformed"})
    j = {**full, "trace_office": {**office, "name": "锡" * 128}, "time": 2**53 - 1}
    out.append({"name": "the longest office name, the latest time",
                "json": j, "hash": genesis_from_json(json.dumps(j)).hash.hex()})
    return out


def _vectors() -> dict[str, Any]:
    rnd = random.Random(7)
    chains = []
    for n in (0, 1, 2, 3, 9):
        leaves = [DOC_LEAF] * n if n < 3 else [rnd.randbytes(rnd.randrange(1, 300)) for _ in range(n)]
        c = R.chain_of(leaves)
        chains.append({"leaves": [x.hex() for x in leaves], "chain": c.hex() if c else None})
    labels = ["L2018000001", "", "a", "羊腿-苏尼特", "🐑", "x" * 600]
    keys = [{"label": s, "key": R.key_of(s).hex()} for s in labels]
    assert keys[0]["key"] == hashlib.sha256(b"lambtrace/recall-key/v1L2018000001").hexdigest()
    return {"formats": ["lambtrace-label-proof/v3", "lambtrace-label-proof/v2", "lambtrace-label-proof/v1"],
            "recallMap": R.KIND, "chains": chains, "keys": keys, "genesis": _genesis_vectors(),
            "proofs": _proof_vectors()}


def test_verify_js_recall_map_matches_python(tmp_path: Path) -> None:
    vectors = _vectors()
    (tmp_path / "vectors.json").write_text(json.dumps(vectors), encoding="utf-8")
    (tmp_path / "harness.mjs").write_text(_HARNESS, encoding="utf-8")
    run = subprocess.run([NODE, str(tmp_path / "harness.mjs"), VERIFY_JS.as_uri(), str(tmp_path / "vectors.json")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout)
    assert result["problems"] == [], "\n".join(result["problems"][:40])
    codes = result["codes"]
    assert len(codes) == len(vectors["proofs"])
    # both refusals occur, and the genuine paths (present and absent labels) verify
    assert {"malformed_bundle", "recalls_not_proven", None} <= set(codes)
    genuine = [c for c in vectors["proofs"] if c["name"].endswith(": genuine")]
    assert any(c["value"] for c in genuine) and any(c["recalls"]["other"] for c in genuine)
    assert max(c["recalls"]["depth"] for c in genuine) >= 24
