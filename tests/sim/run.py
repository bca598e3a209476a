"""Run or replay simulator seeds: ``python -m tests.sim.run --seeds 10000`` or ``--seed N``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .sim import SimFailure, run_seed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, help="replay one seed")
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    args = ap.parse_args()
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    t0 = time.perf_counter()
    failed = []
    for s in seeds:
        try:
            run_seed(s)
        except SimFailure as exc:
            failed.append(s)
            print(f"FAIL {exc}", file=sys.stderr)
    print(json.dumps({"seeds": len(seeds), "failed": failed, "seconds": round(time.perf_counter() - t0, 1)}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
