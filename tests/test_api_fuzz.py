"""Property-based requests from /openapi.json against a real node process on 127.0.0.1.

Schemathesis reads the node's own OpenAPI document and sends what it describes, and what it
does not (wrong types, missing fields, broken patterns, odd bytes), to every route: path and
query parameters, JSON bodies, headers.  Ids of a real chain are mixed in (half the time) so
the requests reach past "not found".  The run checks that

* no request gets a 5xx;
* every status, content type and header is one the document lists for that route;
* every answer fits its documented schema, in JSON and in msgpack (``Accept``; bytes read as
  the hex JSON has, ``tests/schemathesis_hooks.py``);

and afterwards that the node still serves and its chain is what it was: bad input neither
crashes the node nor changes what it has accepted.

The run is deterministic: the same cases every time (``LAMBTRACE_FUZZ_SEED=<n>`` draws
random ones from that seed instead, ``LAMBTRACE_FUZZ_EXAMPLES=<n>`` takes more per route;
``LAMBTRACE_SLOW=1`` takes 200 per route).
A failure prints Schemathesis' report: each failing request as a curl command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from api.client import Client
from test_rejections_http import A, base, slaughtered

pytestmark = pytest.mark.cluster

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
])


def _st() -> str:
    exe = Path(sys.executable).with_name("st")
    found = str(exe) if exe.exists() else shutil.which("st")
    if found is None:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    return found


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


@pytest.fixture
def served_chain(real_node: Any) -> Any:
    """A real node process (conftest.py's ``real_node``) holding a short chain: a lamb
    tagged, shipped, slaughtered, labelled."""
    w, url, launch, tmp = real_node
    proc = launch()
    events = [*base(w), *slaughtered(w), w.label("plant", "c-1", [("L1", 3000), ("L2", 2500)])]
    results = Client(url).submit(events, wait=True)
    assert all(r.get("state") == "committed" for r in results), results
    ids = {"labels": ["L1", "L2"], "tags": [A], "actors": ["coop", "plant", "agent"],
           "events": [r["id"] for r in results[-3:]]}
    return url, ids, proc, tmp / "node.log"


@pytest.mark.parametrize(("accept", "per_route"), [("application/json", 25), ("application/msgpack", 10)])
def test_requests_from_the_openapi_document_never_break_the_node(served_chain: Any, tmp_path: Path, accept: str,
                                                                 per_route: int) -> None:
    url, ids, proc, log = served_chain
    before = requests.get(url + "/v1/status", timeout=5).json()
    state = requests.get(url + "/v1/state/hash", timeout=5).json()
    config = tmp_path / "schemathesis.toml"
    config.write_text("\n".join([
        "max-stream-events = 1",  # the dashboard's stream: its first event, not the heartbeats after it
        *(f"[dictionaries.{name}]\nvalues = {_toml_list(values)}" for name, values in ids.items()),
        "[parameters]",
        '"path.label" = { dictionary = "labels", probability = 0.5 }',
        '"path.tag" = { dictionary = "tags", probability = 0.5 }',
        '"path.actor_id" = { dictionary = "actors", probability = 0.5 }',
        '"path.event_id" = { dictionary = "events", probability = 0.5 }',
        "",
    ]))
    slow = os.environ.get("LAMBTRACE_SLOW") == "1"
    examples = os.environ.get("LAMBTRACE_FUZZ_EXAMPLES", "200" if slow else str(per_route))
    seed = os.environ.get("LAMBTRACE_FUZZ_SEED")
    chosen = ["--seed", seed] if seed else ["--generation-deterministic"]
    cmd = [_st(), "--config-file", str(config), "run", url + "/openapi.json", "--checks", CHECKS,
           "--phases", "examples,coverage,fuzzing", "--max-examples", examples, *chosen, "--workers", "1",
           "--header", f"Accept: {accept}",
           "--request-timeout", "30", "--no-color", "--warnings", "off"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path,
                         env={**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
                              "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])})
    report = run.stdout[-12_000:] + run.stderr[-4_000:]
    assert run.returncode == 0, f"seed {seed or 'none (deterministic)'}:\n{report}"
    assert "Test cases:" in run.stdout and " generated" in run.stdout, report

    # the node is alive, serves, and holds exactly what it held: nothing fuzzed got in
    assert proc.poll() is None, log.read_text()[-4_000:]
    after = requests.get(url + "/v1/status", timeout=5).json()
    assert (after["height"], after["log_size"], after["log_root"]) == \
        (before["height"], before["log_size"], before["log_root"])
    assert requests.get(url + "/v1/state/hash", timeout=5).json() == state
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text(errors="replace")[-4_000:]
