"""Audit throughput: events/s of a full ``lambtrace audit --data`` replay beside the bare
Ed25519 verify rate of one core, measured in the same run.

Generates a chain of ``--events`` leaves into LevelDB (bench/proof.py's generator:
enrolments, a few story lambs, then ``lamb.tag`` events of one cooperative, each with
one Ed25519 signature), closes it, and audits the data directory exactly as the command
does (``StoreSource`` + ``verify.audit.audit_chain``): header links, certificates, log
roots, every leaf parsed, every signature, every rule, the final state hash.  Worker
processes (``--workers``, default one per core) parse and hash the leaves and check
their signatures beside the replay.
The bare rate is PyNaCl's ``VerifyKey.verify`` in a tight loop on one core over
messages of the chain's own size.  The issue's target: audit >= 1.6 x bare.

    .venv/bin/python bench/audit.py [--quick] [--events 100000] [--workers 2] [--inline]

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nacl.signing
from proof import ChainGen  # bench/proof.py

from lambtrace.cmd_verify import StoreSource
from lambtrace.tuning import tune_process
from ledger.genesis import Genesis
from verify.audit import AuditWorkers, audit_chain


def bare_verify_rate(seconds: float, msg_bytes: int) -> float:
    """Ed25519 verifications per second on one core (PyNaCl, the library the ledger uses)."""
    sk = nacl.signing.SigningKey(b"\x07" * 32)
    vk = sk.verify_key
    signed = [sk.sign(os.urandom(msg_bytes)) for _ in range(1000)]
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for m in signed:
            vk.verify(m)
        n += len(signed)
    return n / (time.perf_counter() - t0)


def run_audit(data: Path, genesis: Genesis, workers: int) -> dict[str, Any]:
    source = StoreSource(str(data), genesis)
    pool: AuditWorkers | None = None
    if workers > 0:
        pool = AuditWorkers(workers)
        pool.warm()  # start the workers before the clock does
    c0 = time.process_time()
    restore = tune_process()  # as `lambtrace audit` does
    try:
        report = audit_chain(source.blocks(), genesis, workers=pool if pool is not None else 0,
                             node_state_hash=source.state_hash)
    finally:
        restore()
        if pool is not None:
            pool.close()
        source.close()
    if not report.intact:
        raise SystemExit(f"the bench chain did not audit: {report.failure}")
    return {
        "workers": workers,
        "events": report.events,
        "blocks": report.height,
        "seconds": round(report.elapsed_s, 3),
        "events_per_s": round(report.events / report.elapsed_s, 1),
        "main_process_cpu_s": round(time.process_time() - c0, 3),
        "state_hash_matches": report.state_hash == report.node_state_hash,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10^4 events (seconds, for CI)")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--inline", action="store_true", help="also audit with no worker processes")
    ap.add_argument("--verify-seconds", type=float, default=3.0)
    args = ap.parse_args()
    events = 10_000 if args.quick else args.events
    tmp = Path(tempfile.mkdtemp(prefix="lt-bench-audit-"))
    try:
        with ProcessPoolExecutor(os.cpu_count() or 2, mp_context=multiprocessing.get_context("forkserver")) as pool:
            gen = ChainGen(tmp, lambs=5)
            t0 = time.perf_counter()
            gen.build(pool, events)
            gen_s = time.perf_counter() - t0
        leaf_bytes = len(gen.store.leaf(gen.store.log_size - 1) or b"")
        genesis = gen.genesis
        gen.store.close()
        bare_before = bare_verify_rate(args.verify_seconds / 2, leaf_bytes)
        runs = [run_audit(tmp, genesis, args.workers)]
        if args.inline and args.workers:
            runs.append(run_audit(tmp, genesis, 0))
        bare_after = bare_verify_rate(args.verify_seconds / 2, leaf_bytes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bare = max(bare_before, bare_after)  # as every bench: a floor depressed by the run would flatter the ratio
    best = runs[0]
    out = {
        "bench": "audit",
        "quick": args.quick,
        "events": best["events"],
        "generate_s": round(gen_s, 1),
        "bare_ed25519_verify_per_s_one_core": round(bare, 1),
        "bare_rate_before_and_after": [round(bare_before, 1), round(bare_after, 1)],
        "audit_events_per_s": best["events_per_s"],
        "ratio_audit_over_bare": round(best["events_per_s"] / bare, 3),
        "target_ratio": 1.6,
        "runs": runs,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
