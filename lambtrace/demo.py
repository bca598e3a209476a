"""``lambtrace demo``: a demo network with a season of lambs, driven through the public API.

First run in a directory: node keys, the trace office's root key, genesis and node
configs are created; the nodes start as separate processes; a seeded season (enrolment,
ear-tag issuance, tagging, shipping and receiving, slaughter, labels) is submitted over
HTTP; ``demo.json`` is written; the network runs until interrupted.  A later run in the
same directory resumes it: same chain, data intact, no second season (an interrupted
season is finished; re-sent events are idempotent).

Plant keys.  When SoftHSM2 is installed (its module and ``softhsm2-util``), every plant's
ECDSA P-256 key is generated on a SoftHSM2 token of its own (label = plant id) kept under
``D/hsm/`` (``softhsm2.conf``, ``tokens/``; the demo's user PIN in ``D/hsm/pin``, mode
0600, demo only), plants are enrolled with storage ``hsm``, the genesis sets
``slaughter_requires_hsm``, and a plant's key file is public-only, naming its key by a
``pkcs11:`` locator.  A resumed demo opens the plant keys on the tokens again through
those locators.  Without SoftHSM2 the demo says so and keeps software plant keys with the
requirement off.  Only this process signs; the nodes only verify and need no token.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError, TransportError
from ledger.genesis import DAY_MS, Genesis, Params, Validator
from ledger.recallmap import KIND as RECALLS

from .config import TRACE_OFFICE_NAME, NodeConfig, check_port, genesis_to_json, load_genesis, write_json
from .season import PILOT_BANNERS

STATE_FILE = "demo-state.json"
HSM_DIR = "hsm"
PLANT_KEY_LABEL = "slaughter-key"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def _say(msg: str) -> None:
    print(msg, flush=True)


def _node_names(n: int) -> list[tuple[str, str]]:
    names = [("league", "152500")]
    for b in PILOT_BANNERS[: max(0, n - 1)]:
        names.append((f"banner-{b}", b))
    return names


# -- plant keys on SoftHSM2 ------------------------------------------------------------------


def _softhsm_module() -> str:
    return os.environ.get("LAMBTRACE_PKCS11_MODULE") or SOFTHSM_MODULE


def _softhsm_missing() -> str | None:
    """Why SoftHSM2 cannot hold the demo's plant keys here, or ``None`` if it can."""
    module = _softhsm_module()
    if not Path(module).is_file():
        return f"no PKCS#11 module at {module}"
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util is not on PATH"
    try:
        import pkcs11  # noqa: F401 - only whether it imports
    except ImportError:
        return "python-pkcs11 is not installed"
    return None


def _write_secret(path: Path) -> None:
    """A fresh random PIN in ``path`` (mode 0600) unless the file exists already."""
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(8) + "\n")


def _setup_hsm(d: Path) -> dict[str, Any] | None:
    """SoftHSM2's configuration and the demo's PINs under ``D/hsm``; ``None`` without SoftHSM2.

    The token directory and PIN files are kept if they exist (a first run that stopped
    half-way), so tokens made then still open.
    """
    why = _softhsm_missing()
    if why is not None:
        _say(f"SoftHSM2 is not installed ({why}): plant keys are software keys and the genesis does not "
             "require HSM-held keys for slaughter; install softhsm2 for HSM-backed plant keys")
        return None
    hsm = d / HSM_DIR
    (hsm / "tokens").mkdir(parents=True, exist_ok=True)
    os.chmod(hsm, 0o700)
    conf = hsm / "softhsm2.conf"
    conf.write_text(
        f"# SoftHSM2 for the LambTrace demo: one token per plant\n"
        f"directories.tokendir = {hsm / 'tokens'}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n",
        encoding="utf-8",
    )
    _write_secret(hsm / "pin")
    _write_secret(hsm / "so-pin")
    _say(f"SoftHSM2 found: every plant's key is generated on its own token in {hsm} "
         "and the genesis requires HSM-held keys for slaughter")
    return {"module": _softhsm_module(), "conf": str(conf), "pin_file": str(hsm / "pin"),
            "so_pin_file": str(hsm / "so-pin")}


def _use_hsm(state: dict[str, Any], *, resuming: bool) -> None:
    """Point SoftHSM2 at the demo's tokens (before any PKCS#11 module is loaded)."""
    hsm = state.get("hsm")
    if not hsm:
        return
    why = _softhsm_missing()
    if why is not None:
        raise LedgerError(f"this demo keeps its plant keys on SoftHSM2 tokens, but {why}", code="hsm_module_missing")
    os.environ["SOFTHSM2_CONF"] = hsm["conf"]
    if resuming:
        _say(f"plant keys: on SoftHSM2 tokens in {Path(hsm['conf']).parent} (slaughter requires HSM-held keys)")


def _plant_hsm_signer(hsm: dict[str, Any], plant_id: str, key_file: Path) -> Any:
    """The plant's signer on its token: opened through the locator in ``key_file`` if that
    exists, else a new token and key made now and ``key_file`` written (public-only)."""
    from signer import load_public_key, load_signer, save_public_key_file
    from signer.pkcs11 import HsmError, PinSource, Pkcs11Signer, Pkcs11Spec, generate_key, init_token, list_tokens
    from signer.pkcs11 import parse_spec as parse_pkcs11_spec

    pin = PinSource(file=hsm["pin_file"])
    if key_file.exists():
        public = load_public_key(key_file)
        if public.storage != "hsm" or not public.locator:
            raise LedgerError(f"{key_file} should name an HSM key (storage hsm, a pkcs11: locator)", code="demo_state")
        spec = parse_pkcs11_spec(public.locator).with_pin(file=hsm["pin_file"])
        signer = load_signer(spec.to_uri())
        if signer.public_key != public.public_key:
            raise LedgerError(f"the key on token {plant_id!r} is not the one {key_file} records",
                              code="hsm_key_mismatch")
        return signer
    if not any(t.label == plant_id and t.initialized for t in list_tokens(hsm["module"])):
        init_token(plant_id, pin=pin, so_pin=PinSource(file=hsm["so_pin_file"]), module=hsm["module"])
    spec = Pkcs11Spec(module=hsm["module"], token=plant_id, label=PLANT_KEY_LABEL, pin=pin)
    try:
        signer = generate_key(spec, "ecdsa-p256")
    except HsmError as exc:
        if exc.code != "hsm_key_exists":
            raise
        signer = Pkcs11Signer.open(spec)  # made by a run that stopped before writing key_file
    save_public_key_file(signer.public(), key_file, locator=signer.locator)
    return signer


def _software(signer: Any) -> Any:
    """``signer`` if it is a software key (whose key file the demo writes), else an error."""
    from signer import SoftwareSigner

    if not isinstance(signer, SoftwareSigner):
        raise RuntimeError(f"expected a software key, got {signer!r}")
    return signer


def _create(d: Path, args: argparse.Namespace) -> dict[str, Any]:
    from signer import generate, public_key_record, save_key_file

    from .season import make_trace_office

    if not 1 <= args.nodes <= len(PILOT_BANNERS) + 1:
        raise LedgerError(f"--nodes takes 1 to {len(PILOT_BANNERS) + 1} (the league and its pilot banners)",
                          code="bad_argument")
    (d / "keys" / "actors").mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(exist_ok=True)
    rng = random.Random(args.seed)
    now = int(time.time() * 1000)
    validators = []
    node_cfgs = []
    names = _node_names(args.nodes)
    p2p = {name: f"127.0.0.1:{args.port + 100 + i}" for i, (name, _b) in enumerate(names)}
    for i, (name, banner) in enumerate(names):
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
            p2p_listen=p2p[name] if args.nodes > 1 else "",
            peers=[f"{other}@{addr}" for other, addr in p2p.items() if other != name] if args.nodes > 1 else [],
        )
        cfg.save(d / "nodes" / name / "config.json")
        node_cfgs.append(str(d / "nodes" / name / "config.json"))
    office = make_trace_office(rng)
    save_key_file(_software(office.signer), d / "keys" / "actors" / f"{office.id}.json", passphrase=None,
                  insecure_plain=True, overwrite=True)
    hsm = _setup_hsm(d)
    genesis = Genesis(
        chain=f"xilingol-demo-{args.seed}",
        time=now - 3 * DAY_MS,
        validators=tuple(validators),
        trace_office={
            "id": office.id,
            "banner": office.banner,
            "name": office.name or TRACE_OFFICE_NAME,
            "keys": [public_key_record(office.signer)],
        },
        params=Params(slaughter_requires_hsm=hsm is not None, tag_quotas={b: 400_000 for b in PILOT_BANNERS},
                      state_root=RECALLS),
    )
    (d / "genesis.json").write_text(genesis_to_json(genesis), encoding="utf-8")
    state = {
        "seed": args.seed,
        "lambs": args.lambs,
        "nodes": node_cfgs,
        "season_start_ms": now - int(2.5 * DAY_MS),
        "season_done": False,
        "hsm": hsm,
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


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0, *,
                  genesis_hash: str | None = None, stopping: Callable[[], bool] = lambda: False) -> None:
    """Wait until the node ``proc`` answers at ``url``.  With ``genesis_hash``, the answer
    must come from a node of that chain (not from another program holding the port).
    Raises ``KeyboardInterrupt`` once ``stopping()`` (Ctrl-C, SIGTERM)."""
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stopping():
            raise KeyboardInterrupt
        if proc.poll() is not None:
            raise LedgerError(f"node at {url} exited with code {proc.returncode}; see its log", code="node_failed")
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                if genesis_hash is None:
                    return
                served = requests.get(url + "/v1/status", timeout=2).json().get("genesis_hash")
                if served == genesis_hash:
                    return
                time.sleep(0.5)  # our node may just have died on the taken port: say so if it did
                if proc.poll() is not None:
                    raise LedgerError(f"node at {url} exited with code {proc.returncode}; see its log",
                                      code="node_failed")
                raise LedgerError(f"{url} is taken by another program (it serves genesis {served!r}, not this "
                                  f"demo's chain); stop it or pick another --port", code="port_in_use")
        except (requests.RequestException, ValueError, AttributeError):
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
    hsm = state.get("hsm")
    for m in cast.members:
        path = d / "keys" / "actors" / f"{m.id}.json"
        if hsm and m.role == "plant":
            m.signer = _plant_hsm_signer(hsm, m.id, path)
        elif path.exists():
            m.signer = load_key_file(path)
        else:
            save_key_file(_software(m.signer), path, passphrase=None, insecure_plain=True)
    return cast, rng


def _drive_season(d: Path, state: dict[str, Any], genesis: Genesis, url: str,
                  stopping: Callable[[], bool] = lambda: False) -> tuple[Any, list[str], list[str]]:
    """Submit the season (batches of 500); raises ``KeyboardInterrupt`` between batches once
    ``stopping()``: the season is not marked done, so the next run resumes it (events
    already in answer "duplicate")."""
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
            if stopping():
                raise KeyboardInterrupt
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
    _wait_committed(client, last_ids, stopping)
    attempts = season.dishonest_attempts()  # refused by the rules, recorded as alerts (GET /v1/alerts)
    if attempts:
        refused = sum(r["status"] == "rejected" for r in client.submit([a.event for a in attempts]))
        _say(f"dishonest attempts: {refused} of {len(attempts)} refused; see {url}/v1/alerts")
    recalled: list[str] = []
    recall = season.recall()  # the trace office recalls one carcass: its labels' pages warn, provably
    if recall is not None:
        event, carcass, labels = recall
        (r,) = client.submit([event])
        if r["status"] in ("accepted", "duplicate"):
            _wait_committed(client, [r["id"]], stopping)
            recalled = labels
            _say(f"recall: the trace office recalled carcass {carcass} ({len(labels)} label(s))")
        else:
            _say(f"recall refused: {r.get('code')}: {r.get('message')}")
    return season, first_rejects, recalled


def _wait_committed(client: Any, ids: list[str], stopping: Callable[[], bool], timeout_s: float = 120.0) -> None:
    """``client.wait_committed`` in one-second slices, so that Ctrl-C (``stopping()``)
    stops it at once (``KeyboardInterrupt``) instead of after up to ``timeout_s``."""
    from api.client import WaitTimeout

    deadline = time.monotonic() + timeout_s
    while True:
        if stopping():
            raise KeyboardInterrupt
        try:
            client.wait_committed(ids, timeout_s=min(1.0, max(0.0, deadline - time.monotonic())))
            return
        except WaitTimeout:
            if time.monotonic() >= deadline:
                raise


def _wait_replicated(urls: list[str], timeout_s: float = 120.0,
                     stopping: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Wait until every node reports the first node's log; returns the first node's status.
    Raises ``KeyboardInterrupt`` once ``stopping()``."""
    from api.client import Client

    deadline = time.monotonic() + timeout_s
    clients = [Client(u) for u in urls]
    while True:
        if stopping():
            raise KeyboardInterrupt
        sts = [c.status() for c in clients]
        if len({s["log_size"] for s in sts}) == 1 or time.monotonic() > deadline:
            if len({s["log_size"] for s in sts}) != 1:
                _say("warning: nodes still disagree on the log size: " + ", ".join(
                    f"{s['node']}={s['log_size']}" for s in sts))
            return sts[0]
        time.sleep(0.2)


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
        "recalled_labels": state.get("recalled_labels", []),
    }


def _check_args(args: argparse.Namespace) -> None:
    """Refuse bad numbers before anything is created or started."""
    if not 1 <= args.nodes <= len(PILOT_BANNERS) + 1:
        raise LedgerError(f"--nodes takes 1 to {len(PILOT_BANNERS) + 1} (the league and its pilot banners)",
                          code="bad_argument")
    check_port(args.port, "--port")
    # node i serves PORT+i and (with several nodes) talks to its peers on PORT+100+i
    top = args.port + args.nodes - 1 + (100 if args.nodes > 1 else 0)
    check_port(top, f"--port {args.port} with {args.nodes} node(s) needs up to port {top}, which")
    if args.lambs < 0:
        raise LedgerError(f"--lambs takes 0 or more, not {args.lambs}", code="bad_argument")
    if not 0 <= args.rate <= 1_000_000:
        raise LedgerError(f"--rate takes 0 to 1000000 events/s, not {args.rate}", code="bad_argument")


def run_demo(args: argparse.Namespace) -> int:
    _check_args(args)
    d = Path(args.dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    resuming = (d / STATE_FILE).exists()
    if resuming:
        state = json.loads((d / STATE_FILE).read_text(encoding="utf-8"))
        _say(f"resuming the demo network in {d} (seed {state['seed']}, {state['lambs']} lambs)")
    else:
        _say(f"creating a demo network in {d}")
        state = _create(d, args)
    _use_hsm(state, resuming=resuming)
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
            _wait_healthy(url, proc, genesis_hash=genesis.hash.hex(), stopping=lambda: stopping)
        _say(f"{len(procs)} node(s) up: {', '.join(urls)}")
        labels: list[str] = state.get("labels", [])
        if not state["season_done"]:
            season, _rejects, recalled = _drive_season(d, state, genesis, urls[0], lambda: stopping)
            labels = list(season.labels[:20])
            state["labels"] = labels
            state["recalled_labels"] = recalled
            state["roles"] = {m.id: m.role for m in season.cast.members} | {season.cast.trace_office.id: "trace_office"}
            state["check_codes"] = {lab: season.check_codes[lab][0] if isinstance(season.check_codes[lab], tuple)
                                    else season.check_codes[lab] for lab in labels if lab in season.check_codes}
            state["season_done"] = True
            state["next_lamb"] = season.next_lamb
            write_json(d / STATE_FILE, state)
        info = _demo_json(d, state, genesis, procs, labels)
        write_json(d / "demo.json", info)

        st = _wait_replicated(urls, stopping=lambda: stopping)
        _say(f"chain {genesis.chain} at height {st['height']}, {st['log_size']} events in the log")
        _say(f"demo.json: {d / 'demo.json'}")
        if labels:
            _say(f"label (API):   {urls[0]}/v1/labels/{labels[0]}")
            _say(f"consumer page: {urls[0]}/l/{labels[0]}#g={genesis.hash.hex()[:32]}")
        recalled = state.get("recalled_labels") or []
        if recalled:
            _say(f"recalled label: {urls[0]}/l/{recalled[0]}#g={genesis.hash.hex()[:32]}")
        _say(f"dashboard:     {urls[0]}/dashboard")
        _say(f"status:        {urls[0]}/v1/status")
        _say(f"witness:       lambtrace witness {' '.join(f'--url {u}' for u in urls)} "
             f"--state {d / 'witness.json'} --genesis {d / 'genesis.json'}")
        if args.exit_when_ready:
            return 0
        _say("running; press Ctrl-C to stop")
        _run(d, state, genesis, urls, procs, args, lambda: stopping)
        return 0
    finally:
        running = [p for p in procs if p.poll() is None]  # one the operator killed is not ours to stop
        for p in running:
            p.send_signal(signal.SIGTERM)
        for p in running:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        if procs and stopping:
            _say(f"stopped {len(running)} node process(es); the chain stays in {d}: run the demo again to resume it")


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
    clients = [Client(u) for u in urls]
    current = 0  # the node the rate driver submits to; it moves on when that node is down
    batch: list[dict[str, Any]] = []
    reported: set[int] = set()
    while not stopping():
        for p in procs:
            if p.poll() is not None and p.pid not in reported:
                reported.add(p.pid)
                _say(f"node process {p.pid} exited with code {p.returncode}; restart it with "
                     f"`lambtrace node --config <config>`")
        if trickle is not None:
            t0 = time.monotonic()
            sent = 0
            try:
                if not batch:
                    batch = next(trickle)
                clients[current].submit(batch)
                sent, batch = len(batch), []
                if season is not None:
                    state["next_lamb"] = season.next_lamb
                    write_json(d / STATE_FILE, state)
            except StopIteration:
                trickle = None
                _say("rate driver: no ear-tag quota or serials left; stopping the trickle")
            except TransportError as exc:
                # that node is down: the same batch goes to the next one (a node that
                # already admitted part of it answers "duplicate" for those events)
                nxt = (current + 1) % len(clients)
                _say(f"rate driver: {urls[current]} unreachable ({exc.code}); submitting to {urls[nxt]}")
                current = nxt
            except LedgerError as exc:
                _say(f"rate driver: {exc.code}: {exc.message}")
                batch = []
            spent = time.monotonic() - t0
            time.sleep(max(0.0, sent / args.rate - spent) if sent else 0.5)
        else:
            time.sleep(0.5)

