"""Run or replay simulator seeds.

``python -m tests.sim.run --seeds 10000`` runs seeds 0–9999 on every core with a progress
bar on standard error; ``--seed N`` replays one seed in this process (the way to debug a
failure). The last line on standard output is a JSON summary; the exit code is 1 when any
seed failed, each failure printed with the command that replays it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm

from .sim import SimFailure, run_seed

CHUNK = 25
"""Seeds handed to a worker at a time: big enough that hand-off costs nothing, small enough
that the bar moves."""


def _run_chunk(seeds: list[int]) -> list[tuple[int, str]]:
    failed = []
    for s in seeds:
        try:
            run_seed(s)
        except SimFailure as exc:
            failed.append((s, str(exc)))
    return failed


def _chunks(seeds: range, size: int) -> Iterator[list[int]]:
    for i in range(0, len(seeds), size):
        yield list(seeds[i:i + size])


def run(seeds: range, jobs: int, quiet: bool = False) -> list[tuple[int, str]]:
    """Every seed of ``seeds`` on ``jobs`` processes (1: this one); the failures, by seed."""
    failed: list[tuple[int, str]] = []
    with tqdm(total=len(seeds), unit="seed", file=sys.stderr, disable=quiet, dynamic_ncols=True) as bar:
        results: Iterable[list[tuple[int, str]]]
        if jobs <= 1:
            results = map(_run_chunk, _chunks(seeds, CHUNK))
            pool = None
        else:
            pool = ProcessPoolExecutor(max_workers=jobs)
            results = pool.map(_run_chunk, _chunks(seeds, CHUNK))
        try:
            done = 0
            for chunk_failed in results:
                step = min(CHUNK, len(seeds) - done)
                done += step
                bar.update(step)
                for seed, why in chunk_failed:
                    failed.append((seed, why))
                    bar.write(f"FAIL {why}\n  replay: python -m tests.sim.run --seed {seed}", file=sys.stderr)
                bar.set_postfix(failed=len(failed))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    return sorted(failed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.sim.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, help="replay one seed in this process")
    ap.add_argument("--seeds", type=int, default=1000, help="how many seeds to run (default 1000)")
    ap.add_argument("--start", type=int, default=0, help="the first seed (default 0)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="processes to run seeds on (default: one per core)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.seeds < 0 or args.jobs < 1:
        ap.error("--seeds must be 0 or more and --jobs 1 or more")
    t0 = time.perf_counter()
    if args.seed is not None:
        seeds = range(args.seed, args.seed + 1)
        failed = run(seeds, jobs=1, quiet=True)
    else:
        seeds = range(args.start, args.start + args.seeds)
        failed = run(seeds, jobs=args.jobs, quiet=args.quiet)
    print(json.dumps({"seeds": len(seeds), "first": seeds.start, "failed": [s for s, _ in failed],
                      "seconds": round(time.perf_counter() - t0, 1)}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
