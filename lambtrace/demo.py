"""``lambtrace demo``: a demo network with a season of lambs, driven through the public API.

First run in a directory: node keys, the trace office's root key, genesis and node
configs are created; the nodes start as separate processes; a seeded season (enrolment,
ear-tag issuance, tagging, shipping and receiving, slaughter, labels) is submitted over
HTTP; ``demo.json`` is written; the network runs until interrupted.  A later run in the
same directory resumes it: same chain, data intact, no second season (an interrupted
season is finished; re-sent events are idempotent).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError
from ledger.genesis import DAY_MS, Genesis, Params, Validator

from .config import NodeConfig, genesis_to_json, load_genesis, write_json

PILOT_BANNERS = ("152523", "152524", "152526", "152522", "152525", "152502", "152529")
STATE_FILE = "demo-state.json"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _node_names(n: int) -> list[tuple[str, str]]:
    names = [("league", "152500")]
    for b in PILOT_BANNERS[: max(0, n - 1)]:
        names.append((f"banner-{b}", b))
    return names


def _create(d: Path, args: argparse.Namespace) -> dict[str, Any]:
    from signer import generate, public_key_record, save_key_file

    from .season import make_trace_office

    if args.nodes != 1:
        raise LedgerError(
            "this release runs single-validator chains: use --nodes 1 (multi-node BFT replication is not here yet)",
            code="unsupported_nodes",
        )
    (d / "keys" / "actors").mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)
    rng = random.Random(args.seed)
    now = int(time.time() * 1000)
    validators = []
    node_cfgs = []
    for i, (name, banner) in enumerate(_node_names(args.nodes)):
        key = generate("ed25519")
        key_path = d / "keys" / f"node-{name}.json"
        save_key_file(key, key_path, passphrase=None, insecure_plain=True, overwrite=True)
        validators.append(Validator(name, banner, key.alg, key.public_key, 1))
        cfg = NodeConfig(
            name=name,
            genesis=d / "genesis.json",
            data=d / "nodes" / name / "data",
            listen=f"127.0.0.1:{args.port + i}",
            key=key_path,
        )
        cfg.save(d / "nodes" / name / "config.json")
        node_cfgs.append(str(d / "nodes" / name / "config.json"))
    office = make_trace_office(rng)
    save_key_file(office.signer, d / "keys" / "actors" / f"{office.id}.json", passphrase=None,
                  insecure_plain=True, overwrite=True)
    genesis = Genesis(
        chain=f"xilingol-demo-{args.seed}",
        time=now - 3 * DAY_MS,
        validators=tuple(validators),
        trace_office={
            "id": office.id,
            "banner": office.banner,
            "name": office.name or "锡林郭勒盟农牧局追溯办公室",
            "keys": [public_key_record(office.signer)],
        },
        params=Params(tag_quotas={b: 400_000 for b in PILOT_BANNERS}),
    )
    (d / "genesis.json").write_text(genesis_to_json(genesis), encoding="utf-8")
    state = {
        "seed": args.seed,
        "lambs": args.lambs,
        "nodes": node_cfgs,
        "season_start_ms": now - int(2.5 * DAY_MS),
        "season_done": False,
    }
    write_json(d / STATE_FILE, state)
    return state


def _start_node(cfg_path: str, log_dir: Path) -> subprocess.Popen[bytes]:
    cfg = NodeConfig.load(cfg_path)
    log = open(log_dir / f"{cfg.name}.log", "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        [sys.executable, "-m", "lambtrace", "node", "--config", cfg_path],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LedgerError(f"node at {url} exited with code {proc.returncode}; see its log", code="node_failed")
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise LedgerError(f"node at {url} did not become healthy in {timeout_s:.0f} s", code="node_timeout")


def _cast_with_saved_keys(d: Path, state: dict[str, Any], genesis: Genesis) -> Any:
    from signer import load_key_file, save_key_file

    from .season import make_cast, make_trace_office

    rng = random.Random(state["seed"])
    office = make_trace_office(rng)
    office.signer = load_key_file(d / "keys" / "actors" / f"{office.id}.json")
    cast = make_cast(rng, office, lambs=state["lambs"])
    for m in cast.members:
        path = d / "keys" / "actors" / f"{m.id}.json"
        if path.exists():
            m.signer = load_key_file(path)
        else:
            save_key_file(m.signer, path, passphrase=None, insecure_plain=True)
    return cast, rng


def _drive_season(d: Path, state: dict[str, Any], genesis: Genesis, url: str) -> tuple[Any, list[str]]:
    from tqdm import tqdm

    from api.client import Client

    from .season import Season

    cast, rng = _cast_with_saved_keys(d, state, genesis)
    season = Season(cast, chain=genesis.chain, start_ms=state["season_start_ms"], lambs=state["lambs"], rng=rng)
    client = Client(url)
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    first_rejects: list[str] = []
    last_ids: list[str] = []
    with tqdm(desc="season", unit="ev", disable=not sys.stderr.isatty(), mininterval=0.5) as bar:
        for batch in season.batches(max_batch=500):
            results = client.submit(batch)
            for r in results:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
                if r["status"] == "rejected" and len(first_rejects) < 5:
                    first_rejects.append(f"{r.get('code')}: {r.get('message')}")
            last_ids = [r["id"] for r in results if r.get("id")]
            bar.update(len(batch))
    _say(f"season submitted: {counts['accepted']} accepted, {counts['duplicate']} already there, "
         f"{counts['rejected']} rejected")
    for line in first_rejects:
        _say(f"  rejected: {line}")
    client.wait_committed(last_ids, timeout_s=120)
    return season, first_rejects


def _demo_json(d: Path, state: dict[str, Any], genesis: Genesis, procs: list[subprocess.Popen[bytes]],
               labels: list[str]) -> dict[str, Any]:
    nodes = []
    for cfg_path, proc in zip(state["nodes"], procs):
        cfg = NodeConfig.load(cfg_path)
        nodes.append({"name": cfg.name, "api": f"http://{cfg.listen}", "pid": proc.pid, "config": cfg_path})
    actors = []
    for f in sorted((d / "keys" / "actors").glob("*.json")):
        actor_id = f.stem
        actors.append({"id": actor_id, "role": state.get("roles", {}).get(actor_id, ""), "key_file": str(f)})
    return {
        "chain_id": genesis.chain,
        "genesis": str(d / "genesis.json"),
        "genesis_hash": genesis.hash.hex(),
        "nodes": nodes,
        "actors": actors,
        "labels": labels,
    }


def run_demo(args: argparse.Namespace) -> int:
    d = Path(args.dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    if (d / STATE_FILE).exists():
        state = json.loads((d / STATE_FILE).read_text(encoding="utf-8"))
        _say(f"resuming the demo network in {d} (seed {state['seed']}, {state['lambs']} lambs)")
    else:
        _say(f"creating a demo network in {d}")
        state = _create(d, args)
    genesis = load_genesis(d / "genesis.json")
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_a: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for cfg_path in state["nodes"]:
            procs.append(_start_node(cfg_path, d / "logs"))
        urls = [f"http://{NodeConfig.load(c).listen}" for c in state["nodes"]]
        for url, proc in zip(urls, procs):
            _wait_healthy(url, proc)
        _say(f"{len(procs)} node(s) up: {', '.join(urls)}")
        labels: list[str] = state.get("labels", [])
        if not state["season_done"]:
            season, _rejects = _drive_season(d, state, genesis, urls[0])
            labels = list(season.labels[:20])
            state["labels"] = labels
            state["roles"] = {m.id: m.role for m in season.cast.members} | {season.cast.trace_office.id: "trace_office"}
            state["check_codes"] = {lab: season.check_codes[lab][0] if isinstance(season.check_codes[lab], tuple)
                                    else season.check_codes[lab] for lab in labels if lab in season.check_codes}
            state["season_done"] = True
            state["next_lamb"] = season.next_lamb
            write_json(d / STATE_FILE, state)
        info = _demo_json(d, state, genesis, procs, labels)
        write_json(d / "demo.json", info)
        from api.client import Client

        st = Client(urls[0]).status()
        _say(f"chain {genesis.chain} at height {st['height']}, {st['log_size']} events in the log")
        _say(f"demo.json: {d / 'demo.json'}")
        if labels:
            _say(f"label (API):   {urls[0]}/v1/labels/{labels[0]}")
            _say(f"consumer page: {urls[0]}/l/{labels[0]}#g={genesis.hash.hex()[:32]}")
        _say(f"status:        {urls[0]}/v1/status")
        if args.exit_when_ready:
            return 0
        _say("running; press Ctrl-C to stop")
        _run(d, state, genesis, urls, procs, args, lambda: stopping)
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def _run(d: Path, state: dict[str, Any], genesis: Genesis, urls: list[str], procs: list[subprocess.Popen[bytes]],
         args: argparse.Namespace, stopping: Any) -> None:
    from api.client import Client

    from .season import Season

    trickle = None
    season = None
    if args.rate > 0:
        cast, rng = _cast_with_saved_keys(d, state, genesis)
        first = int(state.get("next_lamb", state["lambs"]))
        season = Season(cast, chain=genesis.chain, start_ms=int(time.time() * 1000), lambs=0, rng=rng,
                        first_lamb=first, enroll=False)
        trickle = iter(season.extra_lambs(10**9, clock=lambda: int(time.time() * 1000)))
        _say(f"driving new lambs at about {args.rate:g} events/s")
    client = Client(urls[0])
    reported: set[int] = set()
    while not stopping():
        for p in procs:
            if p.poll() is not None and p.pid not in reported:
                reported.add(p.pid)
                _say(f"node process {p.pid} exited with code {p.returncode}; restart it with "
                     f"`lambtrace node --config <config>`")
        if trickle is not None:
            t0 = time.monotonic()
            batch: list[dict[str, Any]] = []
            try:
                batch = next(trickle)
                client.submit(batch)
                if season is not None:
                    state["next_lamb"] = season.next_lamb
                    write_json(d / STATE_FILE, state)
            except StopIteration:
                trickle = None
                _say("rate driver: no ear-tag quota or serials left; stopping the trickle")
            except LedgerError as exc:
                _say(f"rate driver: {exc.code}: {exc.message}")
            spent = time.monotonic() - t0
            time.sleep(max(0.0, len(batch) / args.rate - spent) if batch else 0.5)
        else:
            time.sleep(0.5)

