"""``lambtrace network init`` and ``lambtrace network node-config``.

``init`` writes everything for a whole network in one place (a demo, a test, Docker
Compose); ``node-config`` writes one node's config on that node's own machine, from the
genesis the league distributed and the node key made there (docs/deploy.md), so no
private key ever leaves its machine.

``init`` writes, under ``--dir``: ``genesis.json``, ``keys/node-<name>.json`` (node keys; encrypted
unless ``--insecure-plain``), ``keys/trace-office.json`` (the trace office's root key) and
``nodes/<name>/config.json`` for the league validator, one validator per banner and any
observers (a regulator's, the big-data bureau's).  Hosts come from ``--host`` (a
template with ``{name}``, e.g. ``{name}`` for Docker Compose service names, default
``127.0.0.1``) and ports from ``--api-port``/``--p2p-port`` (incremented per node when
the host template is fixed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError
from ledger.genesis import Genesis, Params, Validator
from ledger.recallmap import KIND as RECALLS

from .config import TRACE_OFFICE_NAME, NodeConfig, check_port, genesis_to_json
from .season import PILOT_BANNERS

MAX_OBSERVERS = 16


def _passphrase(args: argparse.Namespace) -> str | bytes | None:
    from signer import passphrase_from_env

    if args.insecure_plain:
        return None
    p = passphrase_from_env()
    if not p:
        raise LedgerError("set LAMBTRACE_KEY_PASSPHRASE (or LAMBTRACE_KEY_PASSPHRASE_FILE) to encrypt the node keys, "
                          "or pass --insecure-plain", code="passphrase_required")
    return p


def init_network(args: argparse.Namespace) -> dict[str, Any]:
    from signer import generate, public_key_record, save_key_file

    d = Path(args.dir)
    if (d / "genesis.json").exists():
        raise LedgerError(f"{d} already holds a network (genesis.json exists)", code="exists")
    if not 1 <= args.validators <= len(PILOT_BANNERS) + 1:
        raise LedgerError(f"--validators takes 1 to {len(PILOT_BANNERS) + 1}", code="bad_argument")
    if not 0 <= args.observers <= MAX_OBSERVERS:
        raise LedgerError(f"--observers takes 0 to {MAX_OBSERVERS}", code="bad_argument")
    passphrase = _passphrase(args)
    names = [("league", "152500")] + [(f"banner-{b}", b) for b in PILOT_BANNERS[: args.validators - 1]]
    observers = [f"observer-{i + 1}" for i in range(args.observers)]
    fixed_host = "{name}" not in args.host
    everyone = [n for n, _b in names] + observers

    def host(name: str) -> str:
        return args.host.format(name=name)

    def port(base: int, i: int) -> int:
        return base + i if fixed_host else base

    # Check every argument before the first file is written: a half-written directory
    # (genesis.json present) would refuse the corrected command.
    try:
        hosts = {host(n) for n in everyone}
    except (KeyError, IndexError, ValueError) as exc:
        raise LedgerError(f"--host is a host name, or a template whose only field is {{name}}, not "
                          f"{args.host!r} ({type(exc).__name__}: {exc})", code="bad_argument") from None
    if any(not h or any(c in h for c in " /@:") for h in hosts):
        raise LedgerError(f"--host {args.host!r} does not make a host name for every node", code="bad_argument")
    for opt, base in (("--api-port", args.api_port), ("--p2p-port", args.p2p_port)):
        check_port(base, opt)
        check_port(port(base, len(everyone) - 1), f"{opt} + {len(everyone) - 1} (one port per node)")

    keys = {name: generate("ed25519") for name in everyone}
    office = generate("ed25519")
    genesis = Genesis(
        chain=args.chain,
        time=int(time.time() * 1000),
        validators=tuple(Validator(n, b, "ed25519", keys[n].public_key, 1) for n, b in names),
        trace_office={"id": "league-trace-office", "banner": "152500", "name": TRACE_OFFICE_NAME,
                      "keys": [public_key_record(office)]},
        params=Params(slaughter_requires_hsm=args.slaughter_requires_hsm, state_root=RECALLS),
    )
    Genesis.from_dict(genesis.to_dict())  # raises Rejected (bad_genesis, ...) on a bad --chain
    (d / "keys").mkdir(parents=True, exist_ok=True)
    for name in everyone:
        save_key_file(keys[name], d / "keys" / f"node-{name}.json", passphrase=passphrase,
                      insecure_plain=args.insecure_plain)
    save_key_file(office, d / "keys" / "trace-office.json", passphrase=passphrase, insecure_plain=args.insecure_plain)
    (d / "genesis.json").write_text(genesis_to_json(genesis), encoding="utf-8")
    p2p = {n: f"{host(n)}:{port(args.p2p_port, i)}" for i, n in enumerate(everyone)}
    obs = [{"name": n, "alg": "ed25519", "pub": keys[n].public_key.hex()} for n in observers]
    nodes = []
    for i, name in enumerate(everyone):
        listen_host = "0.0.0.0" if not fixed_host else host(name)
        cfg = NodeConfig(
            name=name,
            genesis=d / "genesis.json",
            data=d / "nodes" / name / "data",
            listen=f"{listen_host}:{port(args.api_port, i)}",
            key=d / "keys" / f"node-{name}.json",
            role="observer" if name in observers else "validator",
            p2p_listen=f"{listen_host}:{port(args.p2p_port, i)}",
            peers=[f"{m}@{p2p[m]}" for m in everyone if m != name and (name not in observers or m not in observers)],
            observers=obs,
        )
        path = d / "nodes" / name / "config.json"
        cfg.save(path)
        nodes.append({"name": name, "role": cfg.role, "config": str(path),
                      "api": f"http://{host(name)}:{port(args.api_port, i)}"})
    info = {"chain": genesis.chain, "genesis": str(d / "genesis.json"), "genesis_hash": genesis.hash.hex(),
            "nodes": nodes}
    (d / "network.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return info


def node_config(args: argparse.Namespace) -> dict[str, Any]:
    """Check one node's settings against genesis and write its config (``--out``).

    Raises ``LedgerError``: ``exists`` (``--out`` is there, no ``--force``),
    ``wrong_node_key`` (a validator's key is not the one genesis names for it),
    ``bad_argument`` (an unknown validator name, a peer that is neither a validator nor a
    declared observer, an observer named like a validator, a bad address).
    """
    from signer import load_public_key

    from .config import check_host_port, load_genesis

    out = Path(args.out)
    if out.exists() and not args.force:
        raise LedgerError(f"{out} exists (--force replaces it)", code="exists")
    genesis = load_genesis(args.genesis)
    validators = {v.name: v for v in genesis.validators}
    role = args.role
    me = validators.get(args.name)
    if role == "validator" and me is None:
        raise LedgerError(f"genesis names no validator {args.name!r} (its validators: {', '.join(validators)}); "
                          "a node that only follows the chain is --role observer", code="bad_argument")
    if role == "observer" and me is not None:
        raise LedgerError(f"{args.name!r} is a validator of this genesis: an observer needs a name of its own",
                          code="bad_argument")
    key: Path | str = args.key
    pub = None
    if str(args.key).startswith("pkcs11:"):
        key = str(args.key)  # read from the token when the node starts (it checks the key then)
    else:
        pub = load_public_key(args.key)
        key = Path(args.key).resolve()
        if me is not None and (pub.alg, pub.public_key) != (me.alg, me.pub):
            raise LedgerError(f"the key in {args.key} (key id {pub.key_id}) is not the key genesis names for "
                              f"{args.name}", code="wrong_node_key")
    observers = []
    for spec in args.observer or []:
        name, sep, pubfile = spec.partition(":")
        if not sep or not name or not pubfile:
            raise LedgerError(f"--observer takes NAME:PUBLIC_KEY_FILE, not {spec!r}", code="bad_argument")
        if name in validators:
            raise LedgerError(f"--observer {name!r} is a validator of this genesis", code="bad_argument")
        opub = load_public_key(pubfile)
        if name == args.name and pub is not None and (opub.alg, opub.public_key) != (pub.alg, pub.public_key):
            raise LedgerError(f"--observer {name!r} names this node with another key than the one in {args.key} "
                              f"(key id {pub.key_id}): the validators were given {opub.key_id}",
                              code="wrong_node_key")
        observers.append({"name": name, "alg": opub.alg, "pub": opub.public_key.hex()})
    declared = set(validators) | {o["name"] for o in observers}
    peers = []
    for spec in args.peer or []:
        name, sep, addr = spec.partition("@")
        if not sep or not name:
            raise LedgerError(f"--peer takes NAME@HOST:PORT, not {spec!r}", code="bad_argument")
        check_host_port(addr, f"--peer {spec}")
        if name == args.name:
            raise LedgerError(f"--peer {spec!r} is this node itself", code="bad_argument")
        if name not in declared:
            raise LedgerError(f"--peer {name!r} is neither a validator of this genesis nor an --observer",
                              code="bad_argument")
        peers.append(spec)
    if len(validators) > 1 and not [p for p in peers if p.partition("@")[0] in validators]:
        raise LedgerError("name the other validators' peer addresses (--peer NAME@HOST:PORT): without them this "
                          "node reaches nobody", code="bad_argument")
    check_host_port(args.listen, "--listen")
    if args.p2p_listen:
        check_host_port(args.p2p_listen, "--p2p-listen")
    elif len(validators) > 1:
        raise LedgerError("--p2p-listen is needed in a network of several validators", code="bad_argument")
    cfg = NodeConfig(name=args.name, genesis=Path(args.genesis).resolve(), data=Path(args.data).resolve(),
                     listen=args.listen, key=key, peers=peers, role=role, p2p_listen=args.p2p_listen or "",
                     observers=observers, trusted_proxy=args.trusted_proxy or "")
    # written beside --out and read back the way the node will read it, then renamed: a
    # config the node would refuse is never left at --out
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        cfg.save(tmp)
        NodeConfig.load(tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"config": str(out.resolve()), "name": args.name, "role": role, "chain": genesis.chain,
            "genesis_hash": genesis.hash.hex(), "peers": peers, "observers": [o["name"] for o in observers]}


def cmd_network_node_config(args: argparse.Namespace) -> int:
    print(json.dumps(node_config(args), indent=2, ensure_ascii=False))
    return 0


def cmd_network_init(args: argparse.Namespace) -> int:
    info = init_network(args)
    print(json.dumps(info, indent=2, ensure_ascii=False))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("network", help="set up a league network (genesis, node keys, configs)")
    nsub = p.add_subparsers(dest="network_command", required=True, metavar="SUBCOMMAND")
    s = nsub.add_parser("init", help="write genesis, node keys and configs for validators and observers")
    s.add_argument("--dir", required=True)
    s.add_argument("--chain", default="xilingol-lamb")
    s.add_argument("--validators", type=int, default=4, help="the league plus N-1 banners (default 4)")
    s.add_argument("--observers", type=int, default=0, help="non-validator nodes (regulator, big-data bureau)")
    s.add_argument("--host", default="127.0.0.1", help="host of each node; '{name}' is replaced by the node name")
    s.add_argument("--api-port", type=int, default=8700)
    s.add_argument("--p2p-port", type=int, default=26656)
    s.add_argument("--slaughter-requires-hsm", action="store_true")
    s.add_argument("--insecure-plain", action="store_true", help="store node keys unencrypted (demos, tests)")
    s.set_defaults(func=cmd_network_init)

    s = nsub.add_parser("node-config", help="write one node's config on its own machine, checked against genesis "
                                            "(docs/deploy.md)")
    s.add_argument("--genesis", required=True, help="the genesis JSON the league distributed")
    s.add_argument("--name", required=True, help="this node's name (a validator's as genesis names it)")
    s.add_argument("--key", required=True, help="this node's key file (or a pkcs11: key spec)")
    s.add_argument("--data", required=True, help="the data directory")
    s.add_argument("--listen", default="127.0.0.1:8700", help="the API address (default 127.0.0.1:8700)")
    s.add_argument("--p2p-listen", default="", help="where peers connect, host:port")
    s.add_argument("--peer", action="append", metavar="NAME@HOST:PORT",
                   help="another node's peer address (repeat; every other validator)")
    s.add_argument("--observer", action="append", metavar="NAME:PUBLIC_KEY_FILE",
                   help="a non-validator node allowed to connect, with its public key file (repeat)")
    s.add_argument("--role", choices=("validator", "observer"), default="validator")
    s.add_argument("--trusted-proxy", default="", help="the address of a reverse proxy in front of the API")
    s.add_argument("--out", required=True, help="where to write the config")
    s.add_argument("--force", action="store_true", help="replace an existing --out file")
    s.set_defaults(func=cmd_network_node_config)
