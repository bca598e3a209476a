"""Signatures/s from a PKCS#11 token, beside software signing in the same run.

Makes a throw-away SoftHSM2 token in a temporary directory (its own ``SOFTHSM2_CONF``),
generates one key of each algorithm on it, and measures for each algorithm how many
256-byte event-sized messages are signed per second with the token and with a software
key (``signer.SoftwareSigner``), from one thread and from ``--threads`` threads.  Every
signature of the run is checked afterwards with the ledger's verifier.  Prints JSON.

Calls into one PKCS#11 module are serialised (python-pkcs11 initialises modules for
single-threaded use; see docs/adr/0004-pkcs11-signers.md), so threads do not add token
throughput; they show what the lock costs.

    .venv/bin/python bench/hsm.py [--seconds 2] [--threads 4] [--module /usr/lib/softhsm/libsofthsm2.so]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import sigs
from signer import SoftwareSigner

MESSAGE_BYTES = 256


def measure(sign: Callable[[bytes], bytes], threads: int, seconds: float) -> tuple[float, list[tuple[bytes, bytes]]]:
    """Signatures per second from ``threads`` threads signing for ``seconds``; and samples."""
    counts = [0] * threads
    samples: list[tuple[bytes, bytes]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def work(t: int) -> None:
        prefix = secrets.token_bytes(MESSAGE_BYTES - 12)
        start.wait()
        n = 0
        try:
            while time.perf_counter() < stop_at[0]:
                message = prefix + t.to_bytes(4, "big") + n.to_bytes(8, "big")
                signature = sign(message)
                if n % 64 == 0:
                    samples.append((message, signature))
                n += 1
        except BaseException as exc:
            errors.append(exc)
        counts[t] = n

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    t0 = time.perf_counter()
    stop_at[0] = t0 + seconds
    start.wait()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return sum(counts) / elapsed, samples


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per case (default 2)")
    ap.add_argument("--threads", type=int, default=4, help="threads in the threaded case (default 4)")
    ap.add_argument("--module", default=os.environ.get("LAMBTRACE_PKCS11_MODULE") or "/usr/lib/softhsm/libsofthsm2.so")
    ap.add_argument("--quick", action="store_true", help="0.2 s per case (for CI)")
    args = ap.parse_args()
    if args.quick:
        args.seconds = min(args.seconds, 0.2)
    if not Path(args.module).is_file():
        print(json.dumps({"error": f"no PKCS#11 module at {args.module}: install softhsm2"}))
        return 1

    with tempfile.TemporaryDirectory(prefix="lambtrace-bench-hsm-") as tmp:
        root = Path(tmp)
        (root / "tokens").mkdir()
        conf = root / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)  # before the module is loaded
        for name in ("pin", "so-pin"):
            path = root / name
            path.write_text(secrets.token_hex(8) + "\n")
            path.chmod(0o600)

        from signer import pkcs11 as p11

        p11.init_token("bench", pin=p11.PinSource(file=str(root / "pin")),
                       so_pin=p11.PinSource(file=str(root / "so-pin")), module=args.module)
        results: dict[str, Any] = {}
        for alg in sigs.ALGS:
            spec = p11.Pkcs11Spec(module=args.module, token="bench", label=f"bench-{alg}",
                                  pin=p11.PinSource(file=str(root / "pin")))
            hsm_key = p11.generate_key(spec, alg)
            soft_key = SoftwareSigner.generate(alg)
            row: dict[str, Any] = {}
            for name, key in (("hsm", hsm_key), ("software", soft_key)):
                for threads in (1, args.threads):
                    rate, samples = measure(key.sign, threads, args.seconds)
                    bad = [m for m, s in samples if not sigs.verify_signature(alg, key.public_key, m, s)]
                    if bad:
                        raise SystemExit(f"{name} {alg}: {len(bad)} signatures did not verify")
                    row[f"{name}_{threads}_thread{'s' if threads > 1 else ''}_per_s"] = round(rate, 1)
            row["hsm_vs_software_1_thread"] = round(row["hsm_1_thread_per_s"] / row["software_1_thread_per_s"], 3)
            results[alg] = row
        p11.close_all()

    print(json.dumps({
        "bench": "hsm",
        "quick": args.quick,
        "module": args.module,
        "token": "SoftHSM2 (file object store, temporary directory)",
        "message_bytes": MESSAGE_BYTES,
        "seconds_per_case": args.seconds,
        "threads": args.threads,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "signatures_per_s": results,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
