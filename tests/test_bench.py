"""Every benchmark under ``bench/`` runs with ``--quick`` and prints the JSON its docs
promise (docs/performance.md): the figures are numbers, the floor was measured in the
same run, and the parts a benchmark checks along the way (label bundles verify, the
cluster commits every event) held.  No figure is compared with a wall-clock threshold:
these runs only keep the benchmarks working between the full runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOFTHSM_MODULE = os.environ.get("LAMBTRACE_PKCS11_MODULE") or "/usr/lib/softhsm/libsofthsm2.so"


def run_bench(name: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    out: dict[str, Any] = json.loads(proc.stdout)
    assert out["bench"] == name and out["quick"] is True
    return out


def positive(*xs: Any) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in xs)


def test_proof_bench() -> None:
    out = run_bench("proof")
    logs = [r["log_size"] for r in out["results"]]
    assert len(logs) == len(out["sizes"]) and logs == sorted(logs)
    assert all(n >= size for n, size in zip(logs, out["sizes"], strict=True))  # at least asked for (the story adds)
    for r in out["results"]:
        assert r["format"] == "lambtrace-label-proof/v3" and r["precommits"] == 3  # four validators, a quorum
        sizes = r["bundle_bytes_msgpack"]
        assert 0 < sizes["min"] <= sizes["median"] <= sizes["max"] < r["v1_equivalent_bytes_msgpack"]["max"]
        assert r["leaf_bytes"] + r["checkpoint_bytes"] + 32 * r["multiproof_hashes"] < sizes["max"]
        assert r["recalled_labels"] == 256 and r["recall_path_hashes"] >= 1
        assert positive(r["build_ms_warm"]["p99"], r["verify_ms"]["p50"])
    first, last = out["results"][0], out["results"][-1]
    assert last["multiproof_hashes"] > first["multiproof_hashes"]
    assert out["size_ratio_max_over_min"] == round(
        last["bundle_bytes_msgpack"]["median"] / first["bundle_bytes_msgpack"]["median"], 3)


def test_audit_bench() -> None:
    out = run_bench("audit")
    assert positive(out["bare_ed25519_verify_per_s_one_core"], out["audit_events_per_s"])
    assert out["ratio_audit_over_bare"] == pytest.approx(
        out["audit_events_per_s"] / out["bare_ed25519_verify_per_s_one_core"], abs=0.002)


def test_ingest_bench() -> None:
    out = run_bench("ingest")
    assert out["events"] == 2000 and out["rejected"] == 0
    assert positive(out["committed_events_per_s"], out["ed25519_verify_per_s"])
    assert out["ratio"] == pytest.approx(out["committed_events_per_s"] / out["ed25519_verify_per_s"], abs=0.002)


def test_cluster_bench() -> None:
    out = run_bench("cluster")
    assert out["nodes"] == 4 and set(out["node_cpu_us_per_event"]) == {"league", "banner-152523", "banner-152524",
                                                                       "banner-152526"}
    assert positive(out["committed_events_per_s"], out["commit_latency_p50_ms"], out["commit_latency_p99_ms"])
    assert out["commit_latency_p50_ms"] <= out["commit_latency_p99_ms"]


@pytest.mark.skipif(not Path(SOFTHSM_MODULE).is_file(), reason=f"SoftHSM2 is not installed ({SOFTHSM_MODULE})")
def test_hsm_bench() -> None:
    out = run_bench("hsm")
    for alg, figures in out["signatures_per_s"].items():
        assert positive(*figures.values()), (alg, figures)
