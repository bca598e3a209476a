"""EPCIS 2.0 export: a full lamb lifecycle on a real node, exported over ``--url`` and
``--data``, validated against GS1's EPCIS 2.0 JSON Schema (read from
``../shared/epcis/``, never copied into the repository)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from helpers import OFFICE, T0, Served, World
from lambtrace.cli import main
from lambtrace.epcis import iso_china, tag_uri
from node.kv import LevelKV
from test_rejections_http import A, base, slaughtered

EPCIS_DIR = Path(__file__).resolve().parents[2] / "shared" / "epcis"
SCHEMA = EPCIS_DIR / "EPCIS-JSON-Schema.json"


def _validator() -> Any:
    """A draft-07 validator of GS1's schema that also checks the ``uri`` and
    ``date-time`` formats (jsonschema checks them only with optional extras)."""
    if not SCHEMA.is_file():
        pytest.skip(f"GS1 EPCIS 2.0 JSON Schema not found at {SCHEMA} (the shared ../shared/epcis folder is "
                    "absent in this checkout); schema validation skipped")
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (setup.cfg [test] extras)")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    checker = jsonschema.FormatChecker()

    @checker.checks("uri", raises=())
    def _uri(value: object) -> bool:
        return not isinstance(value, str) or re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+", value) is not None

    @checker.checks("date-time", raises=(ValueError,))
    def _dt(value: object) -> bool:
        if not isinstance(value, str):
            return True
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None

    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=checker)


def _assert_valid(doc: dict[str, Any]) -> None:
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def _lifecycle(w: World, s: Served) -> None:
    """Four blocks: (1) membership, tag issuance, a tagged lamb; (2) shipping;
    (3) receiving and slaughter; (4) labels and a recall of one label."""
    for batch in (
        base(w),
        [w.ship("agent", "shp-1", "plant", [A])],
        [w.receive("plant", "shp-1"), w.slaughter("plant", A, "c-1")],
        [w.label("plant", "c-1", [("L1", 2000), ("L2", 1500)]),
         w.ev("recall", OFFICE, {"targets": [{"type": "label", "id": "L2"}], "reason": "seal broken"})],
    ):
        results = s.submit(batch)
        assert all(r["status"] == "accepted" for r in results), results
        s.commit()


@pytest.fixture
def chain() -> Any:
    w = World()
    s = Served(w.new_node())
    _lifecycle(w, s)
    yield w, s
    s.close()


def _export(capsys: Any, *args: str) -> dict[str, Any]:
    rc = main(["export", "epcis", "--quiet", *args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary: dict[str, Any] = json.loads(out)
    return summary


def test_gs1_examples_validate() -> None:
    """The validator itself (with its format checks) accepts GS1's own examples."""
    _validator()  # skips, saying why, where ../shared/epcis is absent
    for name in ("example-ObjectEvent.jsonld", "example-TransformationEvent.jsonld"):
        _assert_valid(json.loads((EPCIS_DIR / name).read_text(encoding="utf-8")))


def test_export_over_url_validates_and_maps_the_lifecycle(chain: Any, tmp_path: Path, capsys: Any) -> None:
    w, s = chain
    out = tmp_path / "f.json"
    summary = _export(capsys, "--url", s.url, "--out", str(out))
    doc = json.loads(out.read_text(encoding="utf-8"))
    _assert_valid(doc)
    assert doc["@context"][0] == "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
    assert (doc["type"], doc["schemaVersion"]) == ("EPCISDocument", "2.0")
    events = doc["epcisBody"]["eventList"]
    assert summary["events"] == len(events) == 8  # 2 tag ranges, tag, ship, receive, slaughter, label, recall
    steps = {e.get("bizStep") for e in events}
    assert {"commissioning", "shipping", "receiving", "killing", "packing"} <= steps
    by_kind = {e["lt:kind"]: e for e in events}
    assert set(by_kind) == {"tags.issue", "lamb.tag", "custody.ship", "custody.receive", "lamb.slaughter",
                            "label.issue", "recall"}
    tagged = by_kind["lamb.tag"]
    assert (tagged["type"], tagged["action"], tagged["epcList"]) == ("ObjectEvent", "ADD", [tag_uri(A)])
    assert tagged["epcList"] == ["urn:lt:tag:315252300000001"]
    assert tagged["eventTime"] == iso_china(T0) and tagged["eventTime"].endswith("+08:00")
    assert tagged["eventTimeZoneOffset"] == "+08:00"
    assert tagged["readPoint"] == {"id": "urn:lt:loc:agent"}
    shipped, received = by_kind["custody.ship"], by_kind["custody.receive"]
    assert (shipped["action"], shipped["disposition"], shipped["epcList"]) == ("OBSERVE", "in_transit", [tag_uri(A)])
    assert (received["disposition"], received["epcList"]) == ("in_progress", [tag_uri(A)])
    assert received["bizLocation"] == {"id": "urn:lt:loc:plant"}
    killed = by_kind["lamb.slaughter"]
    assert killed["type"] == "TransformationEvent" and killed["bizStep"] == "killing"
    assert (killed["inputEPCList"], killed["outputEPCList"]) == ([tag_uri(A)], ["urn:lt:carcass:c-1"])
    assert killed["ilmd"]["lt:carcassMassG"] == 18_000
    assert (killed["lt:priceFenPerKg"], killed["lt:marketPriceFenPerKg"]) == (6600, 6500)
    packed = by_kind["label.issue"]
    assert packed["type"] == "TransformationEvent"
    assert (packed["inputEPCList"], packed["outputEPCList"]) == (["urn:lt:carcass:c-1"],
                                                                 ["urn:lt:label:L1", "urn:lt:label:L2"])
    recall = by_kind["recall"]
    assert (recall["disposition"], recall["epcList"]) == ("recalled", ["urn:lt:label:L2"])
    ids = {e["eventID"] for e in events}
    assert len(ids) == len(events) and all(i.startswith("urn:lt:event:") for i in ids)
    heights = [e["lt:height"] for e in events]
    assert heights == sorted(heights) and set(heights) == {1, 2, 3, 4}
    record = s.http.get(f"{s.url}/v1/events/{killed['lt:eventId']}").json()
    assert record["height"] == killed["lt:height"] == 3


def test_since_exports_only_later_heights(chain: Any, tmp_path: Path, capsys: Any) -> None:
    _w, s = chain
    out = tmp_path / "later.json"
    summary = _export(capsys, "--url", s.url, "--out", str(out), "--since", "3")
    doc = json.loads(out.read_text(encoding="utf-8"))
    _assert_valid(doc)
    events = doc["epcisBody"]["eventList"]
    assert summary["events"] == len(events) == 2
    assert {e["lt:height"] for e in events} == {4}
    assert {e["lt:kind"] for e in events} == {"label.issue", "recall"}
    # the receive (height 3) still lists the lambs of its shipment (height 2, not exported)
    summary2 = _export(capsys, "--url", s.url, "--out", str(out), "--since", "2")
    received = [e for e in json.loads(out.read_text())["epcisBody"]["eventList"] if e["lt:kind"] == "custody.receive"]
    assert summary2["events"] == 4 and received[0]["epcList"] == [tag_uri(A)]
    rc = main(["export", "epcis", "--quiet", "--url", s.url, "--out", str(out), "--since", "9"])
    assert rc == 2 and "error: bad_argument:" in capsys.readouterr().err


def test_csv_has_one_row_per_event(chain: Any, tmp_path: Path, capsys: Any) -> None:
    _w, s = chain
    js, cs = tmp_path / "f.json", tmp_path / "f.csv"
    _export(capsys, "--url", s.url, "--out", str(js))
    summary = _export(capsys, "--url", s.url, "--out", str(cs), "--format", "csv")
    events = json.loads(js.read_text(encoding="utf-8"))["epcisBody"]["eventList"]
    rows = list(csv.DictReader(io.StringIO(cs.read_text(encoding="utf-8"))))
    assert summary["events"] == len(rows) == len(events)
    assert [r["event_id"] for r in rows] == [e["lt:eventId"] for e in events]
    kill = next(r for r in rows if r["kind"] == "lamb.slaughter")
    assert (kill["biz_step"], kill["tags"], kill["carcass"], kill["height"]) == ("killing", A, "c-1", "3")
    label = next(r for r in rows if r["kind"] == "label.issue")
    assert (label["carcass"], label["labels"], label["tags"]) == ("c-1", "L1 L2", A)


def test_export_from_data_dir_matches_url(tmp_path: Path, capsys: Any) -> None:
    w = World()
    db = tmp_path / "node" / "chain.ldb"
    db.parent.mkdir()
    s = Served(w.new_node(kv=LevelKV(str(db))))
    try:
        _lifecycle(w, s)
        via_url = tmp_path / "url.json"
        _export(capsys, "--url", s.url, "--out", str(via_url))
        # the running node holds the LevelDB lock: refused with a clear code, no file written
        locked = tmp_path / "locked.json"
        rc = main(["export", "epcis", "--quiet", "--data", str(db.parent), "--out", str(locked)])
        err = capsys.readouterr().err
        assert rc == 2 and "error: store_locked:" in err and "--url" in err
        assert not locked.exists()
    finally:
        s.close()
        s.node.store.close()
    via_data = tmp_path / "data.json"
    _export(capsys, "--data", str(db.parent), "--out", str(via_data))
    a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (via_url, via_data))
    _assert_valid(b)
    assert a["epcisBody"] == b["epcisBody"]
    rc = main(["export", "epcis", "--quiet", "--data", str(tmp_path / "nothing"), "--out", str(via_data)])
    assert rc == 2 and "error: no_data:" in capsys.readouterr().err


def test_tag_issue_is_one_quantity_event(chain: Any, tmp_path: Path, capsys: Any) -> None:
    _w, s = chain
    out = tmp_path / "f.json"
    _export(capsys, "--url", s.url, "--out", str(out))
    issues = [e for e in json.loads(out.read_text())["epcisBody"]["eventList"] if e["lt:kind"] == "tags.issue"]
    assert len(issues) == 2
    first = issues[0]
    assert (first["action"], first["bizStep"], first["disposition"]) == ("ADD", "commissioning", "encoded")
    assert first["quantityList"] == [{"epcClass": "urn:lt:tagrange:315252300000001-315252300000100",
                                      "quantity": 100}]


def test_slaughtered_helper_chain_exports(tmp_path: Path, capsys: Any) -> None:
    """The shared ``base`` + ``slaughtered`` set-up exports a killing TransformationEvent."""
    w = World()
    s = Served(w.new_node())
    try:
        assert all(r["status"] == "accepted" for r in s.submit([*base(w), *slaughtered(w)]))
        s.commit()
        out = tmp_path / "f.json"
        _export(capsys, "--url", s.url, "--out", str(out))
        doc = json.loads(out.read_text(encoding="utf-8"))
        _assert_valid(doc)
        steps = [e.get("bizStep") for e in doc["epcisBody"]["eventList"]]
        assert steps.count("killing") == 1 and "shipping" in steps and "receiving" in steps
    finally:
        s.close()


def test_the_validator_catches_a_broken_export(chain: Any, tmp_path: Path, capsys: Any) -> None:
    """Guard against a vacuous schema check: broken events must fail validation."""
    _w, s = chain
    out = tmp_path / "f.json"
    _export(capsys, "--url", s.url, "--out", str(out))
    validator = _validator()
    for mutate in (
        lambda e: e.update(bizStep="slaughtering"),
        lambda e: e.update(eventTimeZoneOffset="8"),
        lambda e: e.update({"ltHeight": 1}),
        lambda e: e.update(eventTime="yesterday"),
    ):
        doc = json.loads(out.read_text(encoding="utf-8"))
        mutate(doc["epcisBody"]["eventList"][0])
        assert list(validator.iter_errors(doc)), mutate
