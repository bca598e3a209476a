"""Label proof bundles at scale: build and verify times and sizes at 10^4, 10^5, 10^6 events.

For each size a chain is generated straight into a LevelDB ``ChainStore`` with the
ledger's own block builder (no HTTP), certified by ``--validators`` validators (4: the
league and three banners, every one precommitting each block): genesis, a banner office, a cooperative with a
herder agent and its terminal, a second cooperative, a plant, and ``--lambs`` story
lambs that go tag → ship (agent → cooperative) → receive → ship (cooperative → plant)
→ receive → slaughter → four labels, spread over the whole log as a season is (the
enrolments first, tagging at 10 %, custody at 45 % and 70 %, slaughter and packing at
85 %).  Between them the log grows with ``lamb.tag`` events of a bulk cooperative,
signed by worker processes one block ahead of the builder; the rules run on every
event, but for these self-made fillers only, neither their signatures nor their
canonical form are checked again (the story's events get the full treatment).  Then
``--recalled`` labels of the bulk cooperative's lambs are recalled at 80 % (the recall
map's entries).  Then the bench builds every story label's bundle
(``lambtrace-label-proof/v3``, with the label's path in the recall map) with the
node's ``LabelProver`` (warm, as the node keeps it; p50/p99 over all builds, wall and
CPU time) and cold (a fresh prover), verifies each with ``verify.verify_label`` and
reports the canonical msgpack size, how much of it is leaves and multiproof hashes,
the size with the genesis embedded (``?genesis=1``), and what the same bundle weighs
in the v1 format (an inclusion proof per event and the genesis embedded), for
comparison.

    .venv/bin/python bench/proof.py [--quick] [--sizes 10000,100000,1000000] [--lambs 20]

Prints one JSON document; ``size_ratio_max_over_min`` is the largest scale's median
bundle size over the smallest's (the issue asks for at most 1.5: logarithmic growth).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lambtrace.season import PILOT_BANNERS
from ledger import codec
from ledger import events as E
from ledger.blocks.builder import build_block
from ledger.blocks.certificate import sign_commit
from ledger.events import parse_leaf
from ledger.genesis import DAY_MS, Genesis, Params, Validator
from ledger.recallmap import KIND as RECALLS
from ledger.recallmap import size_in
from node.kv import LevelKV
from node.store import ChainStore
from signer import SoftwareSigner, public_key_record

T0 = 1_790_000_000_000
CHAIN = "bench-proof"
OFFICE, BO, COOP, AGENT, COOP2, PLANT, BULK = (
    "league-trace-office", "bo-152523", "coop-1", "agent-1", "coop-2", "plant-1", "coop-bulk")
BLOCK_EVENTS = 5000
BLOCK_MS = 500


def _signer(seed: bytes) -> SoftwareSigner:
    return SoftwareSigner.from_private_bytes("ed25519", hashlib.sha256(seed).digest())


Filler = tuple[bytes, bytes, bytes, str, bytes]
"""A self-made signed event: (leaf, canonical envelope, event id, key id, signature)."""


def _filler_leaves(args: tuple[bytes, int, int, int]) -> list[Filler]:
    """Signed ``lamb.tag`` events of the bulk cooperative for serials ``[start, stop)``
    (run in worker processes), in parts so the main process need not parse them again."""
    seed, start, stop, t = args
    s = _signer(seed)
    out = []
    for n in range(start, stop):
        body = {"tag": f"3152524{n:08d}", "herder": f"h-{n % 9973:04d}", "born": "2026-03-20", "breed": "乌珠穆沁羊",
                "sex": "female" if n & 1 else "male", "sumu": "赛罕塔拉镇"}
        signed = E.sign(E.envelope(CHAIN, "lamb.tag", BULK, t, body), s)
        env = codec.encode(signed["event"])
        sig = signed["sigs"][0]
        out.append((codec.encode(signed), env, E.event_id(signed["event"]), sig["key"], sig["sig"]))
    return out


def _trusted_event(f: Filler) -> E.SignedEvent:
    """A :class:`SignedEvent` of a filler this bench made itself (canonical by construction,
    so the untrusted-input parse is skipped; the rules still run on it)."""
    leaf, env, eid, kid, sig = f
    return E.SignedEvent(envelope=codec.decode_trusted(env), sigs=((kid, sig),), id=eid, envelope_bytes=env,
                         leaf=leaf)


class ChainGen:
    """Grows a chain in a LevelDB store block by block with the ledger's builder."""

    def __init__(self, directory: Path, *, lambs: int = 20, recalled: int = 256, validators: int = 4,
                 seed: bytes = b"bench") -> None:
        self.seed = seed
        # The league node and the banner nodes; every one of them precommits each block,
        # as a healthy network's certificates carry (the prover keeps a quorum of them).
        names = [("league", "152500")] + [(f"banner-{b}", b) for b in PILOT_BANNERS[: validators - 1]]
        self.validators = [(n, _signer(seed + b"/validator/" + n.encode())) for n, _b in names]
        banners = dict(names)
        self.keys: dict[str, SoftwareSigner] = {
            name: _signer(seed + b"/" + name.encode()) for name in (OFFICE, BO, COOP, AGENT, COOP2, PLANT, BULK)
        }
        self.keys["term-1"] = _signer(seed + b"/term-1")
        self.genesis = Genesis.from_dict(Genesis(
            chain=CHAIN,
            time=T0 - DAY_MS,
            validators=tuple(Validator(n, banners[n], "ed25519", v.public_key)
                             for n, v in self.validators),
            trace_office={"id": OFFICE, "banner": "152500", "name": "锡林郭勒盟追溯办",
                          "keys": [public_key_record(self.keys[OFFICE])]},
            params=Params(state_root=RECALLS),
        ).to_dict())
        self.store = ChainStore(LevelKV(str(directory / "chain.ldb")), self.genesis)
        self.time = T0
        self.lambs = lambs
        self.recalled = recalled
        self.labels: list[str] = []
        self.bulk_next = 0
        self.bulk_ranges = 0

    # -- events ---------------------------------------------------------------------------
    def ev(self, kind: str, actor: str, body: dict[str, Any], signer: SoftwareSigner | None = None) -> bytes:
        self.time += 1
        return codec.encode(E.sign(E.envelope(CHAIN, kind, actor, self.time, body), signer or self.keys[actor]))

    def enroll(self, aid: str, role: str, banner: str, parent: str | None = None, name: str = "") -> bytes:
        body: dict[str, Any] = {"id": aid, "role": role, "banner": banner,
                                "keys": [public_key_record(self.keys[aid])]}
        if parent:
            body["parent"] = parent
        if name:
            body["name"] = name
        return self.ev("actor.enroll", OFFICE, body)

    def commit(self, leaves: Sequence[bytes | E.SignedEvent], *, trusted_sigs: bool = False) -> None:
        """One block of ``leaves`` (bytes, or events already parsed); raises if the rules
        refuse any."""
        self.time = max(self.time + BLOCK_MS, (self.store.last_header.time + BLOCK_MS) if self.store.last_header
                        else T0)
        built = build_block(
            self.store, self.store.frontier, self.genesis, height=self.store.height + 1, prev=self.store.last_hash,
            time_ms=self.time, proposer="league",
            candidates=[x if isinstance(x, E.SignedEvent) else parse_leaf(x) for x in leaves],
            max_events=len(leaves), max_bytes=1 << 30,
            **({"verify": lambda *_a: True} if trusted_sigs else {}),
        )
        if built.rejected:
            ev, exc = built.rejected[0]
            raise RuntimeError(f"the bench chain is invalid: {ev.kind}: {exc.code}: {exc.message}")
        cert = sign_commit(CHAIN, built.header.height, 0, built.header.hash, self.validators)
        self.store.commit(built, cert)

    def story(self, phase: int) -> list[bytes]:
        """Phase 0: enrolments and ranges; 1: tagging; 2: custody to the cooperative;
        3: custody to the plant; 4: slaughter and labels."""
        n = self.lambs
        tags = [f"3152523{i + 1:08d}" for i in range(n)]
        if phase == 0:
            t = self.keys["term-1"]
            return [
                self.enroll(BO, "banner_office", "152523", name="苏尼特左旗农牧和科技局"),
                self.enroll(COOP, "cooperative", "152523", name="满都拉图嘎查牧民专业合作社"),
                self.enroll(COOP2, "cooperative", "152524", name="赛罕塔拉合作社"),
                self.enroll(BULK, "cooperative", "152524", name="苏尼特右旗联合社"),
                self.enroll(PLANT, "plant", "152502", name="锡林浩特市草原肉业"),
                self.enroll(AGENT, "herder_agent", "152523", parent=COOP),
                self.ev("tags.issue", OFFICE, {"to": COOP, "first": tags[0], "count": 1000, "year": 2026}),
                self.ev("device.register", BO, {"device": "term-1", "owner": AGENT, "model": "HT-100",
                                                "key": public_key_record(t)}),
            ]
        if phase == 1:
            return [self.ev("lamb.tag", AGENT, {
                "tag": tag, "chip": f"156000{i + 1:09d}", "herder": f"h-{i % 17:04d}", "born": "2026-03-10",
                "breed": "苏尼特羊", "sex": "male", "sumu": "满都拉图镇"}, self.keys["term-1"])
                for i, tag in enumerate(tags)]
        if phase == 2:
            out = []
            for i, tag in enumerate(tags):
                out.append(self.ev("custody.ship", AGENT, {"shipment": f"s1-{i}", "to": COOP, "lambs": [tag]}))
                out.append(self.ev("custody.receive", COOP, {"shipment": f"s1-{i}"}))
            return out
        if phase == 3:
            out = []
            for i, tag in enumerate(tags):
                out.append(self.ev("custody.ship", COOP, {"shipment": f"s2-{i}", "to": PLANT, "lambs": [tag]}))
                out.append(self.ev("custody.receive", PLANT, {"shipment": f"s2-{i}"}))
            return out
        out = []
        for i, tag in enumerate(tags):
            out.append(self.ev("lamb.slaughter", PLANT, {
                "tag": tag, "carcass": f"c-{i}", "carcass_mass_g": 18_500, "quarantine_cert": f"QC-2026-{i:06d}",
                "price_fen_per_kg": 6700, "market_price_fen_per_kg": 6500, "date": "2026-10-01"}))
            labels = [f"l-{i:04d}-{k}" for k in range(4)]
            self.labels.extend(labels)
            out.append(self.ev("label.issue", PLANT, {"carcass": f"c-{i}", "labels": [
                {"label": lab, "cut": cut, "net_mass_g": 2500, "packed": "2026-10-02",
                 "check": hashlib.sha256(b"salt/" + lab.encode()).digest()}
                for lab, cut in zip(labels, ("羊腿", "羊排", "羊肩", "羊蝎子"))]}))
        return out

    def grow_to(self, size: int, pool: ProcessPoolExecutor | None, *, progress: bool = True) -> None:
        """Fill with bulk ``lamb.tag`` events until the log holds ``size`` leaves.

        Workers sign the next block's events while this process builds and commits the
        current one."""
        bulk_seed = self.seed + b"/" + BULK.encode()
        chunk = 1250
        planned = self.store.log_size
        queue: deque[tuple[str | None, list[Any]]] = deque()

        def plan() -> None:
            nonlocal planned
            n = min(BLOCK_EVENTS, size - planned)
            planned += n
            first: str | None = None
            if self.bulk_next + n > self.bulk_ranges * 100_000:
                first = f"3152524{self.bulk_ranges * 100_000:08d}"
                self.bulk_ranges += 1
                n -= 1
            t = self.time  # any time after genesis and before the block's works (lateness is 30 days)
            jobs = [(bulk_seed, s, min(s + chunk, self.bulk_next + n), t)
                    for s in range(self.bulk_next, self.bulk_next + n, chunk)]
            self.bulk_next += n
            parts = [pool.submit(_filler_leaves, j) for j in jobs] if pool is not None else \
                [_filler_leaves(j) for j in jobs]
            queue.append((first, parts))

        while planned < size and len(queue) < 2:
            plan()
        while queue:
            first, parts = queue.popleft()
            if planned < size:
                plan()
            leaves: list[bytes | E.SignedEvent] = []
            if first is not None:
                leaves.append(self.ev("tags.issue", OFFICE, {"to": BULK, "first": first, "count": 100_000,
                                                             "year": 2026}))
            for part in parts:
                leaves.extend(_trusted_event(f) for f in (part.result() if pool is not None else part))
            self.commit(leaves, trusted_sigs=True)
            if progress:
                print(f"\r  log {self.store.log_size:>9,} leaves", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)

    def recall_fodder(self) -> None:
        """``recalled`` lambs of the bulk cooperative go to the plant, are slaughtered,
        get one label each, and every label is recalled: the recall map the story's
        bundles prove their path in then holds that many entries."""
        n = min(self.recalled, self.bulk_next)
        tags = [f"3152524{k:08d}" for k in range(n)]
        step = 50
        for j in range(0, n, step):
            part = tags[j:j + step]
            sid = f"rf-{j}"
            self.commit([self.ev("custody.ship", BULK, {"shipment": sid, "to": PLANT, "lambs": part}),
                         self.ev("custody.receive", PLANT, {"shipment": sid})])
            leaves = []
            for tag in part:
                leaves.append(self.ev("lamb.slaughter", PLANT, {
                    "tag": tag, "carcass": f"rc-{tag}", "carcass_mass_g": 17_000, "quarantine_cert": f"QC-R-{tag}",
                    "price_fen_per_kg": 6600, "market_price_fen_per_kg": 6500, "date": "2026-09-20"}))
                leaves.append(self.ev("label.issue", PLANT, {"carcass": f"rc-{tag}", "labels": [
                    {"label": f"rl-{tag}", "cut": "整羊", "net_mass_g": 15_000, "packed": "2026-09-21",
                     "check": hashlib.sha256(b"salt/rl-" + tag.encode()).digest()}]}))
            leaves.append(self.ev("recall", OFFICE, {"targets": [{"type": "label", "id": f"rl-{t}"} for t in part],
                                                     "reason": "包装破损"}))
            self.commit(leaves)

    def build(self, pool: ProcessPoolExecutor | None, size: int, *, progress: bool = True) -> None:
        """The story lambs spread over a log of ``size`` leaves, which is then filled up;
        the recalled labels are made at 80 %."""
        marks = [0.0, 0.10, 0.45, 0.70, 0.85]
        for phase, mark in enumerate(marks):
            if phase:
                self.grow_to(max(self.store.log_size, int(size * mark)), pool, progress=progress)
            if phase == 4:
                self.grow_to(max(self.store.log_size, int(size * 0.80)), pool, progress=progress)
                self.recall_fodder()
            self.commit(self.story(phase))
        self.grow_to(size, pool, progress=progress)


def _bundle_stats(gen: ChainGen, reps: int) -> dict[str, Any]:
    from api.proofs import LabelProver
    from verify import verify_label

    store = gen.store
    prover = LabelProver(store)
    raw0 = codec.encode(prover.bundle(gen.labels[0]))  # warm the memo, as a running node would be
    cold = []
    for lab in gen.labels[:5]:
        t0 = time.perf_counter()
        LabelProver(store).bundle(lab)
        cold.append((time.perf_counter() - t0) * 1000)
    build_ms: list[float] = []
    build_cpu_ms: list[float] = []
    sizes: list[int] = []
    bundles: list[bytes] = []
    for _ in range(reps):
        for lab in gen.labels:
            t0, c0 = time.perf_counter(), time.thread_time()
            b = prover.bundle(lab)
            build_ms.append((time.perf_counter() - t0) * 1000)
            build_cpu_ms.append((time.thread_time() - c0) * 1000)
            if len(bundles) < len(gen.labels):
                raw = codec.encode(b)
                bundles.append(raw)
                sizes.append(len(raw))
    verify_ms = []
    verify_cpu_ms = []
    for raw, lab in zip(bundles, gen.labels):
        t0, c0 = time.perf_counter(), time.thread_time()
        report = verify_label(raw, gen.genesis, label=lab)
        verify_ms.append((time.perf_counter() - t0) * 1000)
        verify_cpu_ms.append((time.thread_time() - c0) * 1000)
        assert report.events == len(codec.decode(raw)["events"])
    b0 = codec.decode(raw0)
    to_json = __import__("ledger.schema", fromlist=["to_json"]).to_json
    json_size = len(json.dumps(to_json(b0), separators=(",", ":")))
    genesis_doc = gen.genesis.to_dict()
    v1_sizes = [len(codec.encode(_as_v1(codec.decode(raw), genesis_doc, prover._get_node))) for raw in bundles]
    v1_0 = _as_v1(b0, genesis_doc, prover._get_node)
    return {
        "log_size": store.log_size,
        "height": store.height,
        "labels": len(gen.labels),
        "format": b0["format"],
        "events_per_bundle": len(b0["events"]),
        "bundle_bytes_msgpack": {"median": int(statistics.median(sizes)), "max": max(sizes), "min": min(sizes)},
        "bundle_bytes_json": json_size,
        "bundle_bytes_with_genesis": len(codec.encode({**b0, "genesis": genesis_doc})),
        "leaf_bytes": sum(len(leaf) for _index, leaf in b0["events"]),
        "genesis_bytes": len(codec.encode(genesis_doc)),
        "multiproof_hashes": len(b0["proof"]) // 32,
        "precommits": len(b0["checkpoint"]["certificate"]["precommits"]),
        "checkpoint_bytes": len(codec.encode(b0["checkpoint"])),
        "recalled_labels": size_in(store),
        "recall_path_bytes": len(codec.encode(b0["recalls"])) if "recalls" in b0 else None,
        "recall_path_hashes": len(b0["recalls"]["siblings"]) // 32 if "recalls" in b0 else None,
        "v1_equivalent_bytes_msgpack": {"median": int(statistics.median(v1_sizes)), "max": max(v1_sizes)},
        "v1_path_hashes": sum(len(e["proof"]) for e in v1_0["events"]),
        "build_ms_warm": _pcts(build_ms),
        "build_cpu_ms_warm": _pcts(build_cpu_ms),
        "build_ms_cold": _pcts(cold),
        "verify_ms": _pcts(verify_ms),
        "verify_cpu_ms": _pcts(verify_cpu_ms),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _as_v1(b: dict[str, Any], genesis_doc: dict[str, Any], get_node: Any) -> dict[str, Any]:
    """The same bundle in the v1 format: an RFC 9162 inclusion proof per event instead of
    the multiproof, and the genesis document embedded."""
    from ledger.blocks.header import Header
    from ledger.merkle import inclusion_proof

    size = b["checkpoint"]["header"]["log_size"]
    out = {k: v for k, v in b.items() if k not in ("proof", "recalls")}
    out["format"] = "lambtrace-label-proof/v1"
    header = Header.from_dict(b["checkpoint"]["header"])  # v1 carries the whole certificate
    out["checkpoint"] = {"header": b["checkpoint"]["header"],
                         "certificate": {**b["checkpoint"]["certificate"], "height": header.height,
                                         "block": header.hash}}
    out["genesis"] = genesis_doc
    out["events"] = [{"leaf": leaf, "index": i, "proof": inclusion_proof(i, size, get_node)} for i, leaf in b["events"]]
    return out


def _pcts(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    return {
        "n": len(s),
        "p50": round(s[len(s) // 2], 3),
        "p99": round(s[min(len(s) - 1, int(len(s) * 0.99))], 3),
        "max": round(s[-1], 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="sizes 10^3, 10^4 and 3·10^4 (seconds, for CI)")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--lambs", type=int, default=20, help="story lambs (4 labels each)")
    ap.add_argument("--reps", type=int, default=5, help="warm builds of every label per size")
    ap.add_argument("--recalled", type=int, default=256,
                    help="labels recalled in the chain (entries of the recall map the bundles prove a path in)")
    ap.add_argument("--validators", type=int, default=4,
                    help="validators in genesis, all precommitting each block (the league and 3 banners)")
    ap.add_argument("--dir", help="keep the chain here (default: a temporary directory, removed)")
    args = ap.parse_args()
    sizes = [1_000, 10_000, 30_000] if args.quick else sorted(int(x) for x in args.sizes.split(","))
    lambs = min(args.lambs, 5) if args.quick else args.lambs
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="lt-bench-proof-"))
    tmp.mkdir(parents=True, exist_ok=True)
    results = []
    generate: dict[str, float] = {}
    try:
        with ProcessPoolExecutor(os.cpu_count() or 2, mp_context=multiprocessing.get_context("forkserver")) as pool:
            for size in sizes:
                d = tmp / f"chain-{size}"
                d.mkdir(exist_ok=True)
                gen = ChainGen(d, lambs=lambs, recalled=args.recalled, validators=args.validators)
                t0 = time.perf_counter()
                gen.build(pool, size)
                generate[str(size)] = round(time.perf_counter() - t0, 1)
                print(f"  bundles at {gen.store.log_size:,} leaves", file=sys.stderr)
                results.append(_bundle_stats(gen, args.reps))
                gen.store.close()
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)
    first, last = results[0], results[-1]
    out = {
        "bench": "proof",
        "quick": args.quick,
        "sizes": sizes,
        "generate_s": generate,
        "results": results,
        "size_ratio_max_over_min": round(last["bundle_bytes_msgpack"]["median"]
                                         / first["bundle_bytes_msgpack"]["median"], 3),
        "target_bundle_bytes_at_1e6": 8192,
        "target_build_p99_ms_at_1e6": 5.0,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
