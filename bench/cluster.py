"""Four-node cluster benchmark: throughput and commit latency, beside the bare verify rate.

Starts four validator processes on 127.0.0.1 (league + 3 banners, all-to-all TCP),
then (1) submits N pre-signed ``lamb.tag`` events in msgpack batches to the nodes in
turn and measures committed events/s until every node holds them (end to end, and over
the middle half of the run, once the pipeline is full and before it drains:
``steady_events_per_s``), and (2) offers a
steady 1,000 events/s (or ``--rate``) in small batches for ``--seconds`` and measures
each event's submit→committed latency (p50/p99) with ``?wait=1``.  In the same run it
measures PyNaCl's single-core Ed25519 verify rate, before the cluster starts and after it
stops, and judges against the higher of the two.  Prints JSON.

Targets (issue: BFT replication): throughput >= 0.25 x the verify rate; p99 < 1 s at
1,000 events/s; ``meets_throughput_target`` judges the end-to-end figure.  ``--quick``
runs a small version for smoke tests.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ingest import tree_cpu, verify_rate
from lambtrace.config import NodeConfig, genesis_to_json
from ledger import codec
from ledger import events as E
from ledger.genesis import Genesis, Params, Validator
from signer import generate, public_key_record, save_key_file

NAMES = ["league", "banner-152523", "banner-152524", "banner-152526"]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.events, args.seconds, args.rate = 2000, 3.0, 200

    vr_before = verify_rate()  # the floor, measured on a quiet machine before and after the cluster
    tmp = Path(tempfile.mkdtemp(prefix="lt-cluster-"))
    office, coop = generate("ed25519"), generate("ed25519")
    keys = {n: generate("ed25519") for n in NAMES}
    now = int(time.time() * 1000)
    g = Genesis(
        chain="bench-cluster", time=now - 60_000,
        validators=tuple(Validator(n, "152500", "ed25519", k.public_key, 1) for n, k in keys.items()),
        trace_office={"id": "office", "banner": "152500", "keys": [public_key_record(office)]},
        params=Params(timeout_propose_ms=1000, timeout_prevote_ms=500, timeout_precommit_ms=500,
                      state_root="recalls/v1"),
    )
    (tmp / "genesis.json").write_text(genesis_to_json(g))
    ports = free_ports(8)
    api = dict(zip(NAMES, ports[:4]))
    p2p = dict(zip(NAMES, ports[4:]))
    procs = []
    for n in NAMES:
        save_key_file(keys[n], tmp / f"{n}.key", passphrase=None, insecure_plain=True)
        cfg = NodeConfig(name=n, genesis=tmp / "genesis.json", data=tmp / n, listen=f"127.0.0.1:{api[n]}",
                         key=tmp / f"{n}.key", p2p_listen=f"127.0.0.1:{p2p[n]}", log_level="WARNING",
                         peers=[f"{m}@127.0.0.1:{p2p[m]}" for m in NAMES if m != n], verify_processes=1)
        cfg.save(tmp / f"{n}.json")
        procs.append(subprocess.Popen([sys.executable, "-m", "lambtrace", "node", "--config", str(tmp / f"{n}.json")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    urls = [f"http://127.0.0.1:{api[n]}" for n in NAMES]
    hdr = {"Content-Type": "application/msgpack"}

    def ev(kind: str, actor: str, body: dict[str, Any], s: Any, t: int) -> dict[str, Any]:
        return E.sign(E.envelope(g.chain, kind, actor, t, body), s)

    def tag_event(i: int) -> dict[str, Any]:
        return ev("lamb.tag", "coop", {"tag": f"3152523{i:08d}", "herder": "h-1", "born": "2026-03-15",
                                       "breed": "苏尼特羊", "sex": "male", "sumu": "满都拉图镇"}, coop, now + i % 1000)

    out: dict[str, Any] = {"bench": "cluster", "quick": args.quick, "nodes": len(NAMES)}
    try:
        sess = requests.Session()
        for u in urls:
            for _ in range(300):
                try:
                    if sess.get(u + "/healthz", timeout=1).ok:
                        break
                except requests.RequestException:
                    time.sleep(0.1)
        setup = [
            ev("actor.enroll", "office", {"id": "coop", "role": "cooperative", "banner": "152523",
                                          "keys": [public_key_record(coop)]}, office, now),
            *(ev("tags.issue", "office", {"to": "coop", "first": f"3152523{k * 100_000:08d}", "count": 100_000,
                                          "year": 2026}, office, now) for k in range(10)),
        ]
        r = sess.post(urls[0] + "/v1/events?wait=1", data=codec.encode(setup), headers=hdr, timeout=60)
        r.raise_for_status()
        refused = [x for x in r.json()["results"] if x.get("state") != "committed"]
        if refused:
            raise SystemExit(f"the bench's setup events were not committed: {refused}")

        def log_sizes() -> list[int]:
            return [sess.get(u + "/v1/status", timeout=5).json()["log_size"] for u in urls]

        base = max(log_sizes())
        # 1. throughput
        n = args.events
        bodies = [codec.encode([tag_event(i) for i in range(j, min(n, j + args.batch))])
                  for j in range(0, n, args.batch)]
        marks: dict[float, float] = {}
        done = threading.Event()

        def watch() -> None:
            """Poll the slowest node's log from the first submission on (own session)."""
            ws = requests.Session()
            while not done.is_set():
                low = min(ws.get(u + "/v1/status", timeout=5).json()["log_size"] for u in urls) - base
                now_ = time.perf_counter()
                for q in (0.25, 0.75, 1.0):
                    if q not in marks and low >= q * n:
                        marks[q] = now_
                if 1.0 in marks or now_ - t0 > 600:
                    done.set()
                time.sleep(0.05)

        cpu0 = [tree_cpu(p.pid) for p in procs]
        t0 = time.perf_counter()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        for k, body in enumerate(bodies):
            while True:
                r = sess.post(urls[k % len(urls)] + "/v1/events", data=body, headers=hdr, timeout=120)
                if r.status_code != 429:
                    break
                time.sleep(0.05)
        watcher.join()
        if 1.0 not in marks:
            raise SystemExit(f"not all {n} events were committed on every node within 600 s")
        elapsed = marks[1.0] - t0
        cpu1 = [tree_cpu(p.pid) for p in procs]
        # where a validator's CPU goes per event: its own process, and its verification
        # workers (the signature and the hand-off)
        out["node_cpu_us_per_event"] = {
            name: {"process": round((b[0] - a[0]) / n * 1e6, 1), "workers": round((b[1] - a[1]) / n * 1e6, 1)}
            for name, a, b in zip(NAMES, cpu0, cpu1)
        }
        out["events"] = n
        out["committed_events_per_s"] = round(n / elapsed, 1)
        # the middle half, once the pipeline is full and before it drains
        # (None when that half took under 2 s: blocks and polling are too coarse to time it)
        window = marks[0.75] - marks[0.25]
        out["steady_events_per_s"] = round(0.5 * n / window, 1) if window >= 2 else None
        # 2. latency at a steady rate
        latencies: list[float] = []
        lock = threading.Lock()
        start_i = n
        stop_at = time.perf_counter() + args.seconds
        batch = max(1, args.rate // 20)  # 20 requests a second

        def offer(k: int) -> None:
            s = requests.Session()
            i = start_i + k * 50_000  # within the issued range (1,000,000 tags)
            while time.perf_counter() < stop_at:
                t_start = time.perf_counter()
                evs = [tag_event(i + j) for j in range(batch)]
                i += batch
                r = s.post(urls[k % len(urls)] + "/v1/events?wait=1&timeout_ms=10000", data=codec.encode(evs),
                           headers=hdr, timeout=30)
                done = time.perf_counter()
                if r.ok:
                    states = [x.get("state") for x in r.json()["results"]]
                    with lock:
                        latencies.extend(done - t_start for s_ in states if s_ == "committed")
                spare = 4 * (1 / 20) - (time.perf_counter() - t_start)
                if spare > 0:
                    time.sleep(spare)

        threads = [threading.Thread(target=offer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if latencies:
            latencies.sort()
            out["offered_events_per_s"] = args.rate
            out["latency_events"] = len(latencies)
            out["commit_latency_p50_ms"] = round(statistics.median(latencies) * 1000, 1)
            out["commit_latency_p99_ms"] = round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 1)
        out["node_counters"] = {n: _counters(sess, u) for n, u in zip(NAMES, urls)}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
    vr_after = verify_rate()
    # the higher of the two: a floor depressed by leftover work would flatter the ratio
    vr = max(vr_before, vr_after)
    out["ed25519_verify_per_s_before_and_after"] = [round(vr_before, 1), round(vr_after, 1)]
    out["ed25519_verify_per_s"] = round(vr, 1)
    out["ratio"] = round(out["committed_events_per_s"] / vr, 3)
    out["steady_ratio"] = round(out["steady_events_per_s"] / vr, 3) if out.get("steady_events_per_s") else None
    out["target_ratio"] = 0.25
    out["target_p99_ms"] = 1000
    out["meets_throughput_target"] = out["ratio"] >= 0.25
    out["meets_latency_target"] = out.get("commit_latency_p99_ms", 1e9) < 1000
    print(json.dumps(out))
    return 0


def _counters(sess: requests.Session, url: str) -> dict[str, float]:
    """A node's work counters from ``/metrics``: events committed and signatures checked."""
    want = {"lambtrace_committed_events_total", "lambtrace_sig_jobs_total", "lambtrace_sigcache_hits_total",
            "lambtrace_sigcache_misses_total", "lambtrace_events_reexecuted_total",
            "lambtrace_events_submitted_total", "lambtrace_blocks_total"}
    out: dict[str, float] = {}
    for line in sess.get(url + "/metrics", timeout=5).text.splitlines():
        name, _, value = line.partition(" ")
        if name in want:
            out[name.removeprefix("lambtrace_").removesuffix("_total")] = float(value)
    status = sess.get(url + "/v1/status", timeout=5).json()
    out["late_rounds"] = status.get("replica", {}).get("late_rounds", 0)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
