"""Offline label verification (verify.verify_label, ``lambtrace verify-label``).

A genuine bundle (``lambtrace-label-proof/v3``: one multiproof, genesis by reference,
the label's path in the recall map) from a seasoned chain (tests/helpers_api.py: enrolments, a banner office's terminal,
tagging, custody, slaughter, a key rotation, two labels) verifies from every input
form, and so do the same bundle with the genesis embedded (``?genesis=1``), and, on a
chain whose genesis predates the recall map, its ``v2`` form and the archived ``v1``
form (an inclusion proof per event, genesis embedded).  Then every
byte of its canonical msgpack is flipped (four masks), deleted, duplicated, swapped
with its neighbour and the bundle truncated at every length; and every field of the
parsed bundle is flipped, deleted, extended, retyped, truncated, reordered, dropped,
duplicated and swapped — each of those mutations must raise a VerificationError (the
field mutations run on all three forms).  Deeper checks (the story, membership, keys'
validity, event signatures) cannot be reached by editing a certified bundle, so they
are tested with bundles a test "validator" re-certifies over a forged log.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import Served
from helpers_api import (
    AGENT,
    BANNER_OFFICE,
    CHAIN,
    COOP,
    OFFICE,
    PLANT,
    TAG_A,
    TAG_B,
    ApiWorld,
    as_v1,
    forge_bundle,
)
from lambtrace.cli import main
from lambtrace.config import genesis_to_json
from ledger import codec, merkle, recallmap, schema
from ledger import events as E
from ledger.blocks.certificate import CommitCertificate, commit_tally, sign_commit
from ledger.blocks.header import Header
from ledger.errors import Rejected, VerificationError
from ledger.genesis import Genesis, Params, Validator
from node.kv import MemoryKV
from signer import generate, public_key_record
from verify import LabelReport, verify_label
from verify import errors as VE

LABEL = "l-0001"


@pytest.fixture(scope="module")
def seasoned() -> tuple[ApiWorld, dict[str, Any]]:
    w = ApiWorld(MemoryKV())
    ids = w.season()
    return w, ids


@pytest.fixture(scope="module")
def raw(seasoned: tuple[ApiWorld, dict[str, Any]]) -> bytes:
    w, _ = seasoned
    r = w.http.get(f"/v1/labels/{LABEL}/proof", headers={"Accept": "application/msgpack"})
    assert r.status_code == 200
    return r.get_data()


def entries(b: dict[str, Any]) -> list[tuple[int, bytes]]:
    """A bundle's events as (index, leaf): v3 sends pairs, v2 and v1 maps."""
    return [(e[0], e[1]) if type(e) is list else (e["index"], e["leaf"]) for e in b["events"]]


INDEX = 0
"""Where a v3 event pair holds its index (the leaf is at 1)."""


def as_v2(b: dict[str, Any]) -> dict[str, Any]:
    """A v3 bundle in v2's form: no recall path, events as maps, the multiproof as a list
    of hashes, the certificate with its height and block hash."""
    out = {k: v for k, v in b.items() if k != "recalls"}
    out["format"] = "lambtrace-label-proof/v2"
    out["events"] = [{"leaf": leaf, "index": i} for i, leaf in entries(b)]
    out["proof"] = merkle.split_hashes(b["proof"])
    header = Header.from_dict(b["checkpoint"]["header"])
    out["checkpoint"] = {"header": b["checkpoint"]["header"],
                         "certificate": {**b["checkpoint"]["certificate"], "height": header.height,
                                         "block": header.hash}}
    return out


@pytest.fixture(scope="module")
def legacy() -> ApiWorld:
    """The same season on a chain whose genesis has no recall map (made before it)."""
    w = ApiWorld(MemoryKV(), recall_map=False)
    w.season()
    return w


@pytest.fixture(scope="module")
def forms(seasoned: tuple[ApiWorld, dict[str, Any]], raw: bytes, legacy: ApiWorld) -> dict[str, bytes]:
    """The genuine bundle as v3 (as served), v3 with ``?genesis=1``; and from the chain
    without a recall map, v2 (as served there), v2 with ``?genesis=1``, and v1."""
    w, _ = seasoned
    msgpack = {"Accept": "application/msgpack"}
    full = w.http.get(f"/v1/labels/{LABEL}/proof?genesis=1", headers=msgpack).get_data()
    old = legacy.http.get(f"/v1/labels/{LABEL}/proof", headers=msgpack).get_data()
    old_full = legacy.http.get(f"/v1/labels/{LABEL}/proof?genesis=1", headers=msgpack).get_data()
    return {"v3": raw, "v3+genesis": full, "v2": old, "v2+genesis": old_full,
            "v1": codec.encode(as_v1(legacy, codec.decode(old)))}


def genesis_of(form: str, seasoned: tuple[ApiWorld, dict[str, Any]], legacy: ApiWorld) -> Genesis:
    return seasoned[0].genesis if form.startswith("v3") else legacy.genesis


def must_fail(data: Any, genesis: Genesis, what: str) -> VerificationError:
    try:
        verify_label(data, genesis, label=LABEL)
    except VerificationError as exc:
        assert isinstance(exc.code, str) and exc.code
        return exc
    raise AssertionError(f"mutation verified: {what}")


# -- the genuine bundle ----------------------------------------------------------------------


def test_genuine_bundle_verifies_in_every_form(seasoned: tuple[ApiWorld, dict[str, Any]], raw: bytes) -> None:
    w, _ = seasoned
    text = w.http.get(f"/v1/labels/{LABEL}/proof").get_data(as_text=True)
    g = w.genesis
    forms: list[Any] = [raw, codec.decode(raw), text, text.encode(), json.loads(text)]
    for bundle in forms:
        for genesis in (g, genesis_to_json(g), genesis_to_json(g).encode(), g.encode(), g.to_dict()):
            report = verify_label(bundle, genesis, label=LABEL)
            assert report.label == LABEL
    report = verify_label(raw, g, now_ms=w.now + 5000)
    assert isinstance(report, LabelReport)
    r = report
    assert (r.tag, r.carcass, r.plant, r.cut, r.net_mass_g) == (TAG_A, "c-1", PLANT, "羊腿", 3000)
    assert (r.banner, r.banner_name, r.sumu, r.cooperative) == ("152523", "苏尼特左旗", "满都拉图镇", COOP)
    assert r.cooperative_name == "满都拉图合作社" and r.plant_name == "锡林浩特肉联厂"
    assert (r.slaughter_date, r.quarantine_cert, r.packed) == ("2026-10-01", "QC-2026-0001", "2026-10-02")
    assert report.tagged_by == AGENT and report.chip == "156000000000001"
    assert [(h.from_actor, h.to_actor) for h in report.custody] == [(AGENT, PLANT)]
    assert report.recalls == () and not report.recalled and report.warnings == ()
    assert report.checkpoint_height == w.store.height and report.log_size == w.store.log_size
    assert report.checkpoint_age_ms is not None and report.events == len(codec.decode(raw)["events"])
    d = report.to_dict()
    assert d["verified"] is True and d["genesis_hash"] == g.hash.hex()
    json.dumps(d)  # JSON-ready


def test_bundle_shapes_and_the_other_forms(seasoned: tuple[ApiWorld, dict[str, Any]], legacy: ApiWorld,
                                           forms: dict[str, bytes]) -> None:
    new = seasoned[0]
    b3 = codec.decode(forms["v3"])
    assert b3["format"] == "lambtrace-label-proof/v3" and "genesis" not in b3
    assert b3["checkpoint"]["header"]["state_root"] == recallmap.EMPTY  # nothing recalled in this season
    assert b3["recalls"] == {"depth": 0, "mask": b"", "siblings": b"", "other": b""}
    # v3's compact form: hashes as one byte string, the certificate without what its header gives
    assert type(b3["proof"]) is bytes and len(b3["proof"]) == 32 * merkle.multiproof_length(
        [i for i, _ in entries(b3)], b3["checkpoint"]["header"]["log_size"])
    assert all(type(e) is list and len(e) == 2 for e in b3["events"])  # v3: [index, leaf] pairs
    assert set(b3["checkpoint"]["certificate"]) == {"round", "precommits"}
    assert codec.decode(forms["v3+genesis"]) == {**b3, "genesis": new.genesis.to_dict()}
    reports3 = [verify_label(forms[f], new.genesis, label=LABEL) for f in ("v3", "v3+genesis")]
    assert all(r.recalls_complete for r in reports3)
    # a chain with a recall map accepts nothing that cannot prove its recalls complete
    b3_as_v2 = as_v2(b3)
    with pytest.raises(VE.IncompleteBundle):
        verify_label(codec.encode(b3_as_v2), new.genesis, label=LABEL)
    with pytest.raises(VE.MalformedBundle):  # v3 without its recall proof
        verify_label(codec.encode({k: v for k, v in b3.items() if k != "recalls"}), new.genesis, label=LABEL)
    with pytest.raises(VE.MalformedBundle):  # v3 in v2's long form
        verify_label(codec.encode({**b3_as_v2, "format": b3["format"], "recalls": b3["recalls"]}), new.genesis,
                     label=LABEL)

    w = legacy
    b = codec.decode(forms["v2"])
    assert b["format"] == "lambtrace-label-proof/v2" and "genesis" not in b and "recalls" not in b
    assert "state_root" not in b["checkpoint"]["header"]
    assert all(set(e) == {"leaf", "index"} for e in b["events"]) and b["proof"]
    size = b["checkpoint"]["header"]["log_size"]
    assert len(b["proof"]) == merkle.multiproof_length([e["index"] for e in b["events"]], size)
    assert codec.decode(forms["v2+genesis"]) == {**b, "genesis": w.genesis.to_dict()}
    reports = {name: verify_label(forms[name], w.genesis, label=LABEL) for name in ("v2", "v2+genesis", "v1")}
    assert len({(r.tag, r.events, r.checkpoint_hash) for r in reports.values()}) == 1
    assert not any(r.recalls_complete for r in reports.values())
    with pytest.raises(VE.MalformedBundle):  # a recall proof for a chain without a recall map
        verify_label(codec.encode({**b, "format": "lambtrace-label-proof/v3", "recalls": b3["recalls"]}),
                     w.genesis, label=LABEL)
    # the multiproof sends each shared hash once: smaller than one path per event
    assert len(forms["v2"]) < len(forms["v1"]) - len(codec.encode(w.genesis.to_dict()))
    # the embedded genesis must be the trusted one, in either format
    for name in ("v2+genesis", "v1"):
        m = codec.decode(forms[name])
        m["genesis"]["time"] += 1
        with pytest.raises(VE.WrongGenesis):
            verify_label(codec.encode(m), w.genesis, label=LABEL)
    # a v1 bundle without its genesis, or with a multiproof, is malformed; v2 fields under v1 too
    v1 = codec.decode(forms["v1"])
    for bad in (delete_at(v1, ("genesis",)), {**v1, "proof": []}, {**b, "format": "lambtrace-label-proof/v1"},
                {**v1, "format": "lambtrace-label-proof/v2"}):
        with pytest.raises(VE.MalformedBundle):
            verify_label(codec.encode(bad), w.genesis, label=LABEL)


def test_the_sibling_label_of_the_same_pack(seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    w, _ = seasoned
    raw2 = w.http.get("/v1/labels/l-0002/proof", headers={"Accept": "application/msgpack"}).get_data()
    assert verify_label(raw2, w.genesis, label="l-0002").net_mass_g == 2500
    # the l-0002 bundle is not a proof of l-0001
    with pytest.raises(VE.WrongLabel):
        verify_label(raw2, w.genesis, label=LABEL)


def test_another_genesis_and_a_bad_genesis(raw: bytes) -> None:
    other = ApiWorld(MemoryKV())
    with pytest.raises(VE.WrongGenesis):
        verify_label(raw, other.genesis)
    with pytest.raises(Rejected) as e:  # a bad trust anchor is the caller's error, not a verdict
        verify_label(raw, b"{not json")
    assert e.value.code == "bad_genesis"


def test_checkpoint_age(seasoned: tuple[ApiWorld, dict[str, Any]], raw: bytes) -> None:
    w, _ = seasoned
    t = w.store.last_header.time  # type: ignore[union-attr]
    verify_label(raw, w.genesis, now_ms=t + 60_000, max_age_ms=120_000)
    with pytest.raises(VE.StaleCheckpoint):
        verify_label(raw, w.genesis, now_ms=t + 600_000, max_age_ms=120_000)
    with pytest.raises(VE.StaleCheckpoint):  # a checkpoint from the verifier's future
        verify_label(raw, w.genesis, now_ms=t - 3_600_000)


def test_decode_errors_are_verification_errors(raw: bytes, seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    g = seasoned[0].genesis
    for junk in (b"", b"\xc1", b"\x80", b"{", b"[]", b"   ", b"{}", "[1, 2]", "{\"format\": 1.5}",
                 raw + b"\x00", b"\x92" + raw, 12, None, [raw], {"format": "x"}, raw * 700):
        exc = must_fail(junk, g, repr(junk)[:40])
        assert isinstance(exc, VE.MalformedBundle | VE.UnsupportedFormat), (junk, exc)
    # duplicate JSON keys, floats and upper-case hex are refused too
    text = json.dumps(schema.to_json(codec.decode(raw)))
    must_fail(text[:-1] + ', "label": "l-0001"}', g, "duplicate key")
    first = codec.decode(raw)["events"][0][0]
    floated = text.replace(f'"events": [[{first}, ', f'"events": [[{first}.0, ', 1)
    assert floated != text
    must_fail(floated, g, "float")
    h = codec.decode(raw)["genesis_hash"].hex()
    must_fail(text.replace(h, h.upper()), g, "upper-case hex")


# -- every byte ------------------------------------------------------------------------------


EVERY_BYTE = ("flip 0x01", "flip 0xff", "delete", "truncate")
SAMPLED = ("flip 0x80", "flip 0x20", "duplicate", "swap")


def byte_mutations(data: bytes, positions: range | list[int], kinds: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    for i in positions:
        for kind in kinds:
            if kind.startswith("flip"):
                m = bytearray(data)
                m[i] ^= int(kind.split()[1], 16)
                yield f"{kind} at {i}", bytes(m)
            elif kind == "delete":
                yield f"delete {i}", data[:i] + data[i + 1:]
            elif kind == "duplicate":
                yield f"duplicate {i}", data[:i + 1] + data[i:]
            elif kind == "swap" and i + 1 < len(data) and data[i] != data[i + 1]:
                yield f"swap {i}", data[:i] + data[i + 1:i + 2] + data[i:i + 1] + data[i + 2:]
            elif kind == "truncate":
                yield f"truncate {i}", data[:i]


@pytest.mark.parametrize("form", ["v3", "v2", "v1"])
def test_every_byte_mutation_fails(seasoned: tuple[ApiWorld, dict[str, Any]], legacy: ApiWorld,
                                   forms: dict[str, bytes], form: str) -> None:
    """Every byte position flipped two ways and deleted, and the bundle truncated at every
    length (4 x ~4.5 KB per form, most failing within microseconds); four
    more mutations at a deterministic sample of 1 500 positions.  All eight at every
    position (of the v3 form) run under ``slow``."""
    g = genesis_of(form, seasoned, legacy)
    raw = forms[form]
    codes: dict[str, int] = {}
    sample = sorted(random.Random(2026).sample(range(len(raw)), min(1500, len(raw))))
    for what, data in [*byte_mutations(raw, range(len(raw)), EVERY_BYTE), *byte_mutations(raw, sample, SAMPLED)]:
        code = must_fail(data, g, what).code
        codes[code] = codes.get(code, 0) + 1
    assert set(codes) >= {"malformed_bundle", "inclusion_failed", "wrong_genesis", "bad_certificate"}


@pytest.mark.slow
def test_every_byte_every_mutation_fails(seasoned: tuple[ApiWorld, dict[str, Any]], raw: bytes) -> None:
    g = seasoned[0].genesis
    for what, data in byte_mutations(raw, range(len(raw)), SAMPLED):
        must_fail(data, g, what)


@pytest.mark.slow
@pytest.mark.timeout(7200)
def test_every_byte_to_every_value_fails(seasoned: tuple[ApiWorld, dict[str, Any]], raw: bytes) -> None:
    g = seasoned[0].genesis
    for i in range(len(raw)):
        for v in range(256):
            if v != raw[i]:
                must_fail(raw[:i] + bytes([v]) + raw[i + 1:], g, f"byte {i} = {v}")


# -- every field -----------------------------------------------------------------------------

Path_ = tuple[Any, ...]


def walk(value: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, (*path, i))


def get_at(value: Any, path: Path_) -> Any:
    for p in path:
        value = value[p]
    return value


def set_at(value: Any, path: Path_, new: Any) -> Any:
    out = copy.deepcopy(value)
    if not path:
        return new
    parent = get_at(out, path[:-1])
    parent[path[-1]] = new
    return out


def delete_at(value: Any, path: Path_) -> Any:
    out = copy.deepcopy(value)
    parent = get_at(out, path[:-1])
    del parent[path[-1]]
    return out


def scalar_variants(v: Any) -> list[Any]:
    if isinstance(v, bool) or v is None:
        return [not v, 0, "x"]
    if isinstance(v, int):
        return [v + 1, v - 1, 0, -1, 2**63, str(v), None]
    if isinstance(v, bytes):
        out: list[Any] = [v[:-1], v + b"\x00", b"", v.hex()]
        if v:
            out += [bytes([v[0] ^ 1]) + v[1:], v[:-1] + bytes([v[-1] ^ 0x80])]
        return out
    if isinstance(v, str):
        return [v + "x", "", v[:-1], v.upper() if v.upper() != v else v + "A", 7, v.encode()]
    return []


def field_mutations(b: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for path, v in walk(b):
        name = "/".join(map(str, path))
        if isinstance(v, dict):
            for k in v:
                yield f"delete {name}/{k}", delete_at(b, (*path, k))
            yield f"extra key in {name}", set_at(b, path, {**v, "zz": 1})
            yield f"{name} as a list", set_at(b, path, list(v.values()))
        elif isinstance(v, list):
            if path:
                yield f"{name} emptied", set_at(b, path, [])
                yield f"{name} as a map", set_at(b, path, {"0": v})
            for i in range(len(v)):
                yield f"drop {name}[{i}]", set_at(b, path, v[:i] + v[i + 1:])
                yield f"duplicate {name}[{i}]", set_at(b, path, v[:i + 1] + v[i:])
            if len(v) >= 2:
                yield f"reverse {name}", set_at(b, path, v[::-1])
                for i in range(len(v) - 1):
                    if v[i] != v[i + 1]:
                        yield f"swap {name}[{i}]", set_at(b, path, [*v[:i], v[i + 1], v[i], *v[i + 2:]])
                yield f"truncate {name}", set_at(b, path, v[: len(v) // 2])
        else:
            for new in scalar_variants(v):
                yield f"{name} := {new!r}"[:120], set_at(b, path, new)


def targeted_mutations(b: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    evs = b["events"]
    for i in range(len(evs)):
        for j in range(i + 1, len(evs)):
            for f in (sorted(evs[0]) if type(evs[0]) is dict else [0, 1]):
                m = copy.deepcopy(b)
                m["events"][i][f], m["events"][j][f] = evs[j][f], evs[i][f]
                yield f"swap {f} of events {i} and {j}", m
    for i in range(len(evs)):
        m = copy.deepcopy(b)
        m["events"].insert(i, copy.deepcopy(evs[i]))
        yield f"event {i} twice", m
    cp = b["checkpoint"]
    for k, pc in enumerate(cp["certificate"]["precommits"]):
        yield f"precommit {k} signature replaced", set_at(b, ("checkpoint", "certificate", "precommits", k, "sig"),
                                                          bytes(random.Random(k).randbytes(64)))
        yield f"precommit {k} by another", set_at(b, ("checkpoint", "certificate", "precommits", k, "validator"),
                                                  pc["validator"] + "2")
    for delta in (1, -1):
        for f in ("height", "log_size", "time"):
            m = copy.deepcopy(b)
            m["checkpoint"]["header"][f] += delta
            yield f"header {f} {delta:+d}", m
        if "height" in cp["certificate"]:  # v3 takes the certificate's height from the header
            m = copy.deepcopy(b)
            m["checkpoint"]["header"]["height"] += delta
            m["checkpoint"]["certificate"]["height"] += delta
            yield f"checkpoint height {delta:+d} (header and certificate)", m
    yield "state_root added", set_at(b, ("checkpoint", "header", "state_root"), bytes(32))
    yield "gaps named", set_at(b, ("gaps",), [{"kind": "actor.enroll", "subject": "x", "reason": "y"}])
    for fmt in ("lambtrace-label-proof/v1", "lambtrace-label-proof/v2", "lambtrace-label-proof/v3"):
        if fmt != b["format"]:
            yield f"format {fmt}", set_at(b, ("format",), fmt)
    if "genesis" in b:
        if b["format"].endswith("/v1"):
            yield "genesis removed", delete_at(b, ("genesis",))
        yield "genesis params changed", set_at(b, ("genesis", "params", "max_future_ms"), 1)
    if "proof" in b:  # v2 and v3: the one multiproof (v3: one byte string)
        joined = type(b["proof"]) is bytes
        multi = merkle.split_hashes(b["proof"]) if joined else b["proof"]

        def as_sent(hashes: list[bytes]) -> Any:
            return b"".join(hashes) if joined else hashes

        size = b["checkpoint"]["header"]["log_size"]
        for k in range(len(multi)):
            yield f"multiproof hash {k} zeroed", set_at(b, ("proof",), as_sent([*multi[:k], bytes(32), *multi[k + 1:]]))
            yield f"multiproof hash {k} moved to the end", set_at(b, ("proof",),
                                                                  as_sent([*multi[:k], *multi[k + 1:], multi[k]]))
        yield "multiproof with a hash more", set_at(b, ("proof",), as_sent([*multi, multi[0]]))
        if joined:
            yield "multiproof as a list", set_at(b, ("proof",), multi)
            yield "multiproof a byte short", set_at(b, ("proof",), b["proof"][:-1])
        at = INDEX if joined else "index"
        for k, (index, _leaf) in enumerate(entries(b)):
            for delta in (1, -1, 2, 1 << 10):
                if index + delta >= 0:
                    yield f"event {k} index {delta:+d}", set_at(b, ("events", k, at), index + delta)
        last = entries(b)[-1][0]
        if last + 1 < size:  # an event moved to a leaf nobody asked about, proof unchanged
            yield "last event moved right", set_at(b, ("events", len(evs) - 1, at), size - 1)
        if joined:
            yield "event 0 as a map (v2's form)", set_at(b, ("events", 0), {"leaf": evs[0][1], "index": evs[0][0]})
            yield "event 0 a triple", set_at(b, ("events", 0), [*evs[0], evs[0][1]])
            yield "event 0 as [leaf, index]", set_at(b, ("events", 0), evs[0][::-1])
    else:
        yield "genesis added", {**b, "genesis": None}
    yield "label of the sibling", set_at(b, ("label",), "l-0002")
    yield "events reordered", set_at(b, ("events",), evs[1:] + evs[:1])
    yield "no events", set_at(b, ("events",), [])


@pytest.mark.parametrize("form", ["v3", "v3+genesis", "v2", "v2+genesis", "v1"])
def test_every_field_mutation_fails(seasoned: tuple[ApiWorld, dict[str, Any]], legacy: ApiWorld,
                                    forms: dict[str, bytes], form: str) -> None:
    g = genesis_of(form, seasoned, legacy)
    raw = forms[form]
    b = codec.decode(raw)
    n = 0
    seen: set[bytes] = set(forms.values())  # deleting the embedded genesis gives the plain form
    for what, m in [*field_mutations(b), *targeted_mutations(b)]:
        try:
            data = codec.encode(m)
        except Exception:  # a value msgpack cannot hold (e.g. 2**64): try it parsed only
            data = None
        if data is not None:
            if data in seen:
                continue  # a no-op mutation (e.g. swapping equal hashes)
            seen.add(data)
            must_fail(data, g, what)
        must_fail(m, g, what + " (parsed)")
        n += 1
    assert n > {"v3": 400, "v3+genesis": 600, "v2": 400, "v2+genesis": 600, "v1": 1000}[form], n


def test_every_json_field_mutation_fails(seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    w, _ = seasoned
    b = json.loads(w.http.get(f"/v1/labels/{LABEL}/proof").get_data(as_text=True))
    verify_label(json.dumps(b), w.genesis, label=LABEL)
    rng = random.Random(4)
    muts = list(field_mutations(b))
    for what, m in rng.sample(muts, min(600, len(muts))):
        try:
            text = json.dumps(m)
        except (TypeError, ValueError):
            continue
        if m != b:
            must_fail(text, w.genesis, what)


def test_json_numbers_past_2_53_and_unknown_formats(seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    """A JSON bundle's numbers lie within ±(2^53 − 1), the range every JSON reader (the
    consumer page's too) holds exactly; and a bundle of a format nobody reads is refused
    for its format before any of its hex is read, as the page refuses it."""
    w, _ = seasoned
    b = json.loads(w.http.get(f"/v1/labels/{LABEL}/proof").get_data(as_text=True))
    for index, code in ((2**53 - 1, "inclusion_failed"), (2**53, "malformed_bundle"), (-(2**53), "malformed_bundle"),
                        (10**400, "malformed_bundle")):
        m = copy.deepcopy(b)
        m["events"][0][INDEX] = index
        assert must_fail(json.dumps(m), w.genesis, f"index {index}").code == code, index
        assert must_fail(m, w.genesis, f"index {index}, parsed").code == code, index
    deep: Any = 1
    for _ in range(64):
        deep = [deep]
    for extra, code in (({"genesis": deep[0]}, "wrong_genesis"), ({"genesis": deep}, "malformed_bundle"),
                        ({"gaps": [0.5]}, "malformed_bundle")):
        assert must_fail(json.dumps({**b, **extra}), w.genesis, str(extra)[:40]).code == code
        assert must_fail({**b, **extra}, w.genesis, str(extra)[:40]).code == code
    m = copy.deepcopy(b)
    m["format"] = "lambtrace-label-proof/v4"
    m["proof"] = "not hex"
    assert must_fail(json.dumps(m), w.genesis, "format v4").code == "unsupported_format"
    m["format"] = b["format"]
    assert must_fail(json.dumps(m), w.genesis, "proof not hex").code == "malformed_bundle"


# -- forged logs: a test validator certifies what it likes -------------------------------------


def forge(w: ApiWorld, leaves: list[bytes], picks: list[int], *, label: str = LABEL,
          signers: list[tuple[str, Any]] | None = None, genesis: Genesis | None = None) -> bytes:
    return forge_bundle(w, leaves, picks, label=label, signers=signers, genesis=genesis)


class Log:
    """The seasoned chain's real leaves and the genuine bundle's picks, to edit and re-certify."""

    def __init__(self, w: ApiWorld, raw: bytes) -> None:
        self.w = w
        self.leaves = [leaf for _i, leaf in w.store.leaves(0, w.store.log_size)]
        self.picks = [i for i, _ in entries(codec.decode(raw))]

    def find(self, kind: str, pred: Callable[[E.SignedEvent], bool] = lambda ev: True) -> int:
        for i in self.picks:
            ev = E.parse_leaf(self.leaves[i])
            if ev.kind == kind and pred(ev):
                return i
        raise KeyError(kind)

    def event(self, i: int) -> E.SignedEvent:
        return E.parse_leaf(self.leaves[i])

    def resign(self, i: int, signer: Any, **env: Any) -> bytes:
        ev = self.event(i)
        new_env = {**ev.envelope, **env}
        return codec.encode(E.sign(new_env, signer))

    def bundle(self, replace: dict[int, bytes] | None = None, *, add: list[bytes] = (),  # type: ignore[assignment]
               drop: tuple[int, ...] = (), extra_picks: tuple[int, ...] = (), label: str = LABEL) -> bytes:
        leaves = list(self.leaves)
        for i, leaf in (replace or {}).items():
            leaves[i] = leaf
        picks = [i for i in self.picks if i not in drop] + list(extra_picks)
        for leaf in add:
            picks.append(len(leaves))
            leaves.append(leaf)
        return forge(self.w, leaves, picks, label=label)


@pytest.fixture(scope="module")
def log(seasoned: tuple[ApiWorld, dict[str, Any]], raw: bytes) -> Log:
    return Log(seasoned[0], raw)


def test_forge_reproduces_a_verifying_bundle(log: Log) -> None:
    assert verify_label(log.bundle(), log.w.genesis, label=LABEL).label == LABEL


def expect(log: Log, bundle: bytes, cls: type[VerificationError]) -> VerificationError:
    with pytest.raises(cls) as e:
        verify_label(bundle, log.w.genesis, label=LABEL)
    return e.value


def test_a_bad_event_signature_under_a_valid_certificate(log: Log) -> None:
    i = log.find("lamb.slaughter")
    ev = log.event(i).to_dict()
    ev["sigs"][0]["sig"] = bytes([ev["sigs"][0]["sig"][0] ^ 1]) + ev["sigs"][0]["sig"][1:]
    e = expect(log, log.bundle({i: codec.encode(ev)}), VE.BadEventSignature)
    assert e.details["index"] == i


def test_every_needed_event_dropped_even_when_recertified(log: Log) -> None:
    for i in log.picks:
        with pytest.raises(VerificationError):
            verify_label(log.bundle(drop=(i,)), log.w.genesis, label=LABEL)


def test_extra_events_are_refused(log: Log) -> None:
    w = log.w
    other_tag = next(i for i in range(len(log.leaves)) if log.event(i).kind == "lamb.tag"
                     and log.event(i).body["tag"] == TAG_B)
    expect(log, log.bundle(extra_picks=(other_tag,)), VE.UnexpectedEvent)
    # a second label.issue for the same carcass (another pack) is not part of this label's story
    extra = E.sign(E.envelope(CHAIN, "label.issue", PLANT, w.now, {"carcass": "c-1", "labels": [
        {"label": "l-0009", "cut": "羊排", "net_mass_g": 100, "packed": "2026-10-03", "check": bytes(32)}]}),
        w.keys[PLANT])
    expect(log, log.bundle(add=[codec.encode(extra)]), VE.UnexpectedEvent)


def test_story_breaks(log: Log) -> None:
    w = log.w
    ks = w.keys
    # the receiving is signed by someone else than the addressee
    i = log.find("custody.receive")
    expect(log, log.bundle({i: log.resign(i, ks[COOP], actor=COOP)}), VE.InconsistentStory)
    # the slaughter names another carcass: the label's carcass has no slaughter
    i = log.find("lamb.slaughter")
    body = {**log.event(i).body, "carcass": "c-9"}
    expect(log, log.bundle({i: log.resign(i, ks[PLANT], body=body)}), VE.MissingEvent)
    # the lamb was shipped by someone who did not hold it
    i = log.find("custody.ship")
    expect(log, log.bundle({i: log.resign(i, ks[COOP], actor=COOP)}), VE.InconsistentStory)
    # the range went to an actor that may not receive ear tags
    i = log.find("tags.issue")
    expect(log, log.bundle({i: log.resign(i, ks[OFFICE], body={**log.event(i).body, "to": PLANT})}),
           VE.InconsistentStory)
    # ... while a range filed with the tagger's banner office is fine (anyone of that banner may tag)
    verify_label(log.bundle({i: log.resign(i, ks[OFFICE], body={**log.event(i).body, "to": BANNER_OFFICE})}),
                 log.w.genesis, label=LABEL)
    # a tags.issue signed by a cooperative (its role may not)
    expect(log, log.bundle({i: log.resign(i, ks[COOP], actor=COOP)}), VE.NotAuthorised)


def test_keys_must_be_proven_and_valid_at_the_time(log: Log) -> None:
    w = log.w
    # a key nobody enrolled
    i = log.find("lamb.slaughter")
    expect(log, log.bundle({i: log.resign(i, generate("ed25519"))}), VE.KeyNotProven)
    # the label is signed with the plant's rotated key: dated before the rotation, it was not yet valid
    rot = log.find("key.rotate")
    lab = log.find("label.issue")
    new_key_kid = log.event(lab).sigs[0][0]
    assert new_key_kid != w.keys[PLANT].key_id
    # re-sign the rotation so that it adds a key we hold, then date the label before it
    k2 = generate("ed25519")
    rot_leaf = log.resign(rot, w.keys[OFFICE], body={"id": PLANT, "add": [public_key_record(k2)]})
    early = log.event(rot).time - 1
    expect(log, log.bundle({rot: rot_leaf, lab: log.resign(lab, k2, time=early)}), VE.KeyNotValidAtTime)
    # a key whose not_after has passed
    enr = log.find("actor.enroll", lambda ev: ev.body["id"] == PLANT)
    body = copy.deepcopy(log.event(enr).body)
    body["keys"][0]["not_after"] = log.event(log.find("custody.receive")).time - 1
    expect(log, log.bundle({enr: log.resign(enr, w.keys[OFFICE], body=body)}), VE.KeyNotValidAtTime)
    # a key of another actor: the plant's key signing the cooperative's ... (key/actor binding)
    i = log.find("custody.ship")
    expect(log, log.bundle({i: log.resign(i, w.keys[PLANT])}), VE.KeyNotProven)


def test_revocations_in_the_bundle_are_enforced(log: Log) -> None:
    w = log.w
    sl = log.find("lamb.slaughter")
    t = log.event(sl).time
    plant_kid = w.keys[PLANT].key_id
    revoke = codec.encode(E.sign(E.envelope(CHAIN, "key.rotate", OFFICE, t - 1, {"id": PLANT, "revoke": [plant_kid]}),
                                 w.keys[OFFICE]))
    expect(log, log.bundle(add=[revoke]), VE.KeyNotValidAtTime)
    later = codec.encode(E.sign(E.envelope(CHAIN, "key.rotate", OFFICE, t + 1, {"id": PLANT, "revoke": [plant_kid]}),
                                w.keys[OFFICE]))
    assert verify_label(log.bundle(add=[later]), w.genesis, label=LABEL).warnings == ()
    # the same revocation committed *before* the slaughter, which is dated earlier: the rules
    # refuse anything from a revoked key, backdated or not, and so does the verifier
    leaves = [*log.leaves[:sl], later, *log.leaves[sl:]]
    picks = [p if p < sl else p + 1 for p in log.picks] + [sl]
    e = expect(log, forge(w, leaves, picks), VE.KeyNotValidAtTime)
    assert e.details == {"index": sl + 1, "key": plant_kid}
    gone = codec.encode(E.sign(E.envelope(CHAIN, "actor.revoke", OFFICE, t - 1, {"id": PLANT, "reason": "closed"}),
                               w.keys[OFFICE]))
    expect(log, log.bundle(add=[gone]), VE.KeyNotValidAtTime)


def test_a_leaf_signed_after_a_revocation_in_the_log_is_refused_by_the_command(
        log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The plant's key revoked by a rotation committed before the slaughter, though dated
    after it: the rules refuse anything from a revoked key, so such a chain broke them."""
    w = log.w
    sl = log.find("lamb.slaughter")
    later = codec.encode(E.sign(E.envelope(CHAIN, "key.rotate", OFFICE, log.event(sl).time + 1, {
        "id": PLANT, "revoke": [w.keys[PLANT].key_id]}), w.keys[OFFICE]))
    leaves = [*log.leaves[:sl], later, *log.leaves[sl:]]
    picks = [p if p < sl else p + 1 for p in log.picks] + [sl]
    (tmp_path / "b.msgpack").write_bytes(forge(w, leaves, picks))
    (tmp_path / "genesis.json").write_text(genesis_to_json(w.genesis))
    assert main(["verify-label", "--bundle", str(tmp_path / "b.msgpack"), "--genesis", str(tmp_path / "genesis.json"),
                 "--label", LABEL]) == 1
    cap = capsys.readouterr()
    assert json.loads(cap.out)["code"] == "key_not_valid_at_time"
    assert f"key {w.keys[PLANT].key_id} was revoked earlier in the log (leaf {sl}) than leaf {sl + 1}" in cap.err


def test_recalls_are_reported(log: Log) -> None:
    w = log.w
    recall = E.sign(E.envelope(CHAIN, "recall", OFFICE, w.now, {
        "targets": [{"type": "label", "id": LABEL}, {"type": "lamb", "id": TAG_B}], "reason": "抽检不合格"}),
        w.keys[OFFICE])
    report = verify_label(log.bundle(add=[codec.encode(recall)]), w.genesis, label=LABEL)
    assert report.recalled and [(r.target_type, r.target_id, r.reason) for r in report.recalls] == [
        ("label", LABEL, "抽检不合格")]
    other = E.sign(E.envelope(CHAIN, "recall", OFFICE, w.now, {
        "targets": [{"type": "label", "id": "l-0002"}], "reason": "x"}), w.keys[OFFICE])
    expect(log, log.bundle(add=[codec.encode(other)]), VE.UnexpectedEvent)


def test_events_of_another_chain_or_time(log: Log) -> None:
    w = log.w
    i = log.find("lamb.slaughter")
    expect(log, log.bundle({i: log.resign(i, w.keys[PLANT], chain="other-chain")}), VE.BadEvent)
    expect(log, log.bundle({i: log.resign(i, w.keys[PLANT], time=w.genesis.time - 1)}), VE.BadEvent)
    expect(log, log.bundle({i: b"\x81\xa1x\x01"}), VE.BadEvent)


# -- certificates with several validators --------------------------------------------------------


def test_certificates_need_more_than_two_thirds(log: Log) -> None:
    w = log.w
    vals = [(f"v{k}", generate("ed25519")) for k in range(4)]
    g = Genesis.from_dict(Genesis(
        chain=CHAIN, time=w.genesis.time, trace_office=w.genesis.trace_office, params=Params(),
        validators=tuple(Validator(n, "152500", "ed25519", s.public_key) for n, s in vals)).to_dict())

    def bundle(signers: list[tuple[str, Any]]) -> bytes:
        return forge(w, log.leaves, log.picks, signers=signers, genesis=g)

    assert verify_label(bundle(vals[:3]), g, label=LABEL)  # 3 of 4 > 2/3
    assert verify_label(bundle(vals), g, label=LABEL)
    with pytest.raises(VE.InsufficientPower):
        verify_label(bundle(vals[:2]), g, label=LABEL)
    b = codec.decode(bundle(vals))
    pcs = b["checkpoint"]["certificate"]["precommits"]
    for mutated in (pcs[::-1], pcs[:3] + pcs[:1], [*pcs[:3], {"validator": "v9", "sig": pcs[3]["sig"]}]):
        b2 = copy.deepcopy(b)
        b2["checkpoint"]["certificate"]["precommits"] = mutated
        with pytest.raises(VE.BadCertificate):
            verify_label(codec.encode(b2), g, label=LABEL)
    b2 = copy.deepcopy(b)
    b2["checkpoint"]["certificate"]["precommits"][1]["sig"] = pcs[0]["sig"]
    with pytest.raises(VE.BadCertificate):
        verify_label(codec.encode(b2), g, label=LABEL)


def test_bundles_carry_a_quorum_of_precommits(log: Log) -> None:
    """The prover cuts a certificate to the first precommits that reach more than 2/3 of
    the power; what is left still verifies, and cutting further does not."""
    vals = [(f"v{k}", generate("ed25519")) for k in range(4)]
    g = Genesis.from_dict(Genesis(
        chain=CHAIN, time=log.w.genesis.time, trace_office=log.w.genesis.trace_office, params=Params(),
        validators=tuple(Validator(n, "152500", "ed25519", s.public_key, 2 if n == "v3" else 1)
                         for n, s in vals)).to_dict())
    full = sign_commit(CHAIN, 5, 0, b"\x07" * 32, vals)
    assert [n for n, _ in full.quorum(g.validators).precommits] == ["v0", "v1", "v2", "v3"]  # 5 of 5 > 2/3 only here
    heavy_first = sign_commit(CHAIN, 5, 0, b"\x07" * 32, [vals[1], vals[2], vals[3]])
    assert [n for n, _ in heavy_first.quorum(g.validators).precommits] == ["v1", "v2", "v3"]
    short = sign_commit(CHAIN, 5, 0, b"\x07" * 32, vals[:3])
    assert short.quorum(g.validators) == short  # no quorum: left for the verifier to refuse
    even = Genesis.from_dict({**g.to_dict(), "validators": [{**v.to_dict(), "power": 1} for v in g.validators]})
    cut = full.quorum(even.validators)
    assert [n for n, _ in cut.precommits] == ["v0", "v1", "v2"]
    assert commit_tally(cut, CHAIN, even.validators).committed
    assert not commit_tally(CommitCertificate(5, 0, cut.block, cut.precommits[:2]), CHAIN, even.validators).committed


# -- recalls and revocations through a real node; the limit of offline checks -------------------


def test_node_bundles_carry_recalls_and_revocations() -> None:
    w = ApiWorld(MemoryKV())
    w.season()
    old_plant_kid = w.keys[PLANT].key_id
    w.submit([
        w.ev("recall", OFFICE, {"targets": [{"type": "carcass", "id": "c-1"}], "reason": "兽药残留"}),
        w.ev("key.rotate", OFFICE, {"id": PLANT, "revoke": [old_plant_kid]}),
    ])
    w.commit()
    raw = w.http.get(f"/v1/labels/{LABEL}/proof", headers={"Accept": "application/msgpack"}).get_data()
    assert codec.decode(raw)["gaps"] == []
    report = verify_label(raw, w.genesis, label=LABEL)
    assert [(r.target_type, r.reason) for r in report.recalls] == [("carcass", "兽药残留")]
    kinds = [E.parse_leaf(leaf).kind for _, leaf in entries(codec.decode(raw))]
    assert kinds.count("key.rotate") == 2  # the plant's new key, and the revocation of its old one
    assert report.recalls_complete
    # A server that leaves the recall out: the recall map in the certified header gives it away.
    b = _without_recalls(codec.decode(raw), w)
    with pytest.raises(VE.RecallsNotProven):
        verify_label(codec.encode(b), w.genesis, label=LABEL)
    # ... even with a path to "no entry" it made up
    b["recalls"] = {"depth": 0, "mask": b"", "siblings": b"", "other": b""}
    with pytest.raises(VE.RecallsNotProven):
        verify_label(codec.encode(b), w.genesis, label=LABEL)


def _without_recalls(b: dict[str, Any], w: ApiWorld) -> dict[str, Any]:
    b["events"] = [e for e, (_, leaf) in zip(b["events"], entries(b), strict=True)
                   if E.parse_leaf(leaf).kind != "recall"]
    proof = merkle.multiproof([i for i, _ in entries(b)], b["checkpoint"]["header"]["log_size"],
                              w.store.get_node)
    b["proof"] = b"".join(proof) if type(b["proof"]) is bytes else proof
    return b


def test_without_a_recall_map_a_left_out_recall_goes_unseen() -> None:
    """What a chain whose genesis predates the recall map cannot prove (docs/adr/0005):
    a server that leaves a recall out of a v2 bundle is not caught."""
    w = ApiWorld(MemoryKV(), recall_map=False)
    w.season()
    w.submit([w.ev("recall", OFFICE, {"targets": [{"type": "carcass", "id": "c-1"}], "reason": "兽药残留"})])
    w.commit()
    raw = w.http.get(f"/v1/labels/{LABEL}/proof", headers={"Accept": "application/msgpack"}).get_data()
    report = verify_label(raw, w.genesis, label=LABEL)
    assert report.recalled and not report.recalls_complete
    assert not verify_label(codec.encode(_without_recalls(codec.decode(raw), w)), w.genesis, label=LABEL).recalled


def test_the_recall_map_follows_lambs_carcasses_labels_and_siblings() -> None:
    """Each label's chain holds exactly the recalls of it, its carcass and its lamb: a
    recall of a sibling label leaves it out, later recalls extend it, and the bundles of
    every label verify with exactly their own recalls."""
    w = ApiWorld(MemoryKV())
    w.season()

    def check(label: str, want: list[str]) -> None:
        raw = w.http.get(f"/v1/labels/{label}/proof", headers={"Accept": "application/msgpack"}).get_data()
        r = verify_label(raw, w.genesis, label=label)
        assert r.recalls_complete and [x.reason for x in r.recalls] == want, (label, r.recalls)
        b = codec.decode(raw)
        assert b["checkpoint"]["header"]["state_root"] == recallmap.root_in(w.store)

    w.submit([w.ev("recall", OFFICE, {"targets": [{"type": "label", "id": "l-0002"}], "reason": "破损"})])
    w.commit()
    check(LABEL, [])
    check("l-0002", ["破损"])
    w.submit([w.ev("recall", OFFICE, {"targets": [{"type": "lamb", "id": TAG_A}], "reason": "布病"})])
    w.commit()
    check(LABEL, ["布病"])
    check("l-0002", ["破损", "布病"])
    assert recallmap.size_in(w.store) == 2
    assert recallmap.value_in(w.store, LABEL) is not None and recallmap.value_in(w.store, "l-0002") is not None
    # a recalled lamb's carcass can no longer be labelled
    lamb = w.store.state_get(f"t/{TAG_A}")
    assert lamb is not None
    assert lamb["carcass"] == "c-1"


# -- the command line --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(seasoned: tuple[ApiWorld, dict[str, Any]]) -> Iterator[Served]:
    s = Served(seasoned[0].node)
    yield s
    s.close()


def test_cli_verify_label(tmp_path: Path, seasoned: tuple[ApiWorld, dict[str, Any]], served: Served, raw: bytes,
                          capsys: pytest.CaptureFixture[str]) -> None:
    w, _ = seasoned
    gpath = tmp_path / "genesis.json"
    gpath.write_text(genesis_to_json(w.genesis))
    fp = w.genesis.hash.hex()[:32]
    assert main(["verify-label", "--url", f"{served.url}/l/{LABEL}#g={fp}", "--genesis", str(gpath)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verified"] is True and out["label"] == LABEL
    assert main(["verify-label", "--url", served.url, "--label", LABEL, "--genesis", str(gpath),
                 "--save", str(tmp_path / "b.msgpack")]) == 0
    assert (tmp_path / "b.msgpack").read_bytes() == raw
    capsys.readouterr()
    assert main(["verify-label", "--bundle", str(tmp_path / "b.msgpack"), "--genesis", str(gpath)]) == 0
    capsys.readouterr()
    # any byte changed: exit 1 and the reason with its code
    for i in random.Random(1).sample(range(len(raw)), 20):
        bad = bytearray(raw)
        bad[i] ^= 0x40
        (tmp_path / "bad.msgpack").write_bytes(bytes(bad))
        assert main(["verify-label", "--bundle", str(tmp_path / "bad.msgpack"), "--genesis", str(gpath)]) == 1
        cap = capsys.readouterr()
        res = json.loads(cap.out)
        assert res["verified"] is False and res["code"] and cap.err.startswith(f"error: {res['code']}: ")
    # a link carrying another genesis's fingerprint
    assert main(["verify-label", "--url", f"{served.url}/l/{LABEL}#g={'0' * 32}", "--genesis", str(gpath)]) == 1
    assert "wrong_genesis" in capsys.readouterr().err
    # a fingerprint too short to pin a genesis (the page refuses it too), even a true prefix
    assert main(["verify-label", "--url", f"{served.url}/l/{LABEL}#g={fp[:16]}", "--genesis", str(gpath)]) == 1
    err = capsys.readouterr().err
    assert "wrong_genesis" in err and "32 to 64 hex characters" in err
    # usage and I/O errors are exit 2
    assert main(["verify-label", "--url", served.url, "--genesis", str(gpath)]) == 2
    assert main(["verify-label", "--bundle", str(tmp_path / "none"), "--genesis", str(gpath)]) == 2
    assert main(["verify-label", "--url", f"{served.url}/l/l-0404", "--genesis", str(gpath)]) == 2
    capsys.readouterr()


def test_label_url_forms() -> None:
    from lambtrace.cmd_verify import parse_label_url

    assert parse_label_url("http://h:1/l/l-1#g=ab12", None) == ("http://h:1", "l-1", "ab12")
    assert parse_label_url("https://trace.example/site/l/l-1", "l-1") == ("https://trace.example/site", "l-1", None)
    assert parse_label_url("http://h:1/v1/labels/l-1/proof", None) == ("http://h:1", "l-1", None)
    assert parse_label_url("http://h:1/", "l-2") == ("http://h:1", "l-2", None)


def test_check_code_commitment_is_reported(seasoned: tuple[ApiWorld, dict[str, Any]], raw: bytes) -> None:
    report = verify_label(raw, seasoned[0].genesis)
    assert report.check_commitment == hashlib.sha256(b"salt" + LABEL.encode()).digest()


def test_bundles_built_while_recalls_commit_all_verify() -> None:
    """The prover reads a label's recall path node by node while blocks with recalls
    commit beside it: every bundle it serves still verifies against its own checkpoint
    (a path read across a commit is read again, never served half old, half new)."""
    import threading
    import time

    w = ApiWorld(MemoryKV())
    w.season()
    # a slow disk: blocks are stored a moment before the tip moves
    write = w.store.kv.write

    def slow_write(puts: Any, deletes: tuple[bytes, ...] = (), *, sync: bool = True) -> None:
        write(puts, deletes, sync=sync)
        time.sleep(0.004)

    w.store.kv.write = slow_write  # type: ignore[method-assign]
    # ... and slow reads of the recall map's nodes, so commits land between the prover's
    # reading of the tip and of the path
    get = w.store.state_get

    def slow_get(key: str) -> Any:
        if key.startswith(recallmap.NODE_PREFIX):
            time.sleep(0.0005)
        return get(key)

    w.store.state_get = slow_get  # type: ignore[method-assign]
    served = Served(w.node)
    stop = threading.Event()
    problems: list[str] = []
    seen_roots: set[bytes] = set()

    def fetch() -> None:
        import requests

        while not stop.is_set():
            for label in (LABEL, "l-0002"):
                r = requests.get(f"{served.url}/v1/labels/{label}/proof", headers={"Accept": "application/msgpack"},
                                 timeout=10)
                if r.status_code != 200:
                    problems.append(f"{label}: HTTP {r.status_code} {r.text[:200]}")
                    continue
                try:
                    report = verify_label(r.content, w.genesis, label=label)
                except VerificationError as exc:
                    problems.append(f"{label}: {exc.code}: {exc.message}")
                    continue
                seen_roots.add(codec.decode(r.content)["checkpoint"]["header"]["state_root"])
                assert report.recalls_complete

    readers = [threading.Thread(target=fetch) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for k in range(40):
            target = {"type": "label", "id": "l-0002"} if k % 2 else {"type": "carcass", "id": "c-1"}
            assert w.submit([w.ev("recall", OFFICE, {"targets": [target], "reason": f"复检 {k}"})])[0][
                "status"] == "accepted"
            w.commit()
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=30)
        served.close()
    assert problems == [], problems[:5]
    assert len(seen_roots) > 1  # the readers did see the map change under them
    assert recallmap.size_in(w.store) == 2


def test_a_bundle_cut_at_the_provers_event_limit_names_the_gap_and_never_verifies(
        seasoned: tuple[ApiWorld, dict[str, Any]]) -> None:
    """A story longer than the prover's event limit is served with the cut named in
    ``gaps`` rather than as an error; the verifier refuses such a bundle as incomplete,
    whatever else in it checks out."""
    from api.proofs import LabelProver, ProofOptions

    w, _ = seasoned
    whole = LabelProver(w.store).bundle(LABEL)
    assert whole["gaps"] == [] and len(whole["events"]) > 3
    verify_label(codec.encode(whole), w.genesis, label=LABEL)
    cut = LabelProver(w.store, options=ProofOptions(max_events=3)).bundle(LABEL)
    assert len(cut["events"]) == 3
    assert cut["gaps"] == [{"kind": "events", "subject": LABEL, "reason": "the bundle reached its event limit"}]
    err = must_fail(codec.encode(cut), w.genesis, "a bundle cut at the event limit")
    assert isinstance(err, VE.IncompleteBundle) and "events l-0001" in err.message
    without = dict(cut, gaps=[])  # the cut bundle with its gap hidden still fails: a part is missing
    assert not isinstance(must_fail(codec.encode(without), w.genesis, "a cut bundle, gap hidden"),
                          VE.IncompleteBundle)
