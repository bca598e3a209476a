"""The ``lambtrace`` command line (DESIGN §7).

Every command prints a clear message and exits non-zero on failure; errors carry the
same stable codes as the API (``error: <code>: <message>``).
"""

from __future__ import annotations

import argparse
import getpass
import importlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import events as ev_mod
from ledger import schema
from ledger.errors import LedgerError
from ledger.events import KINDS
from ledger.genesis import FINGERPRINT_HEX, Genesis, Params, Validator
from ledger.recallmap import KIND as RECALLS

from . import __version__
from .config import TRACE_OFFICE_NAME

COMMAND_MODULES = (
    "lambtrace.cmd_backup",
    "lambtrace.cmd_hsm",
    "lambtrace.cmd_verify",
    "lambtrace.cmd_labels",
    "lambtrace.cmd_network",
    "lambtrace.cmd_export",
    "lambtrace.cmd_alerts",
    "lambtrace.cmd_trace_office",
)
"""Modules that add commands: each has ``register(subparsers)`` adding parsers whose
``func`` takes the parsed args and returns an exit code."""


def _passphrase(args: argparse.Namespace, *, confirm: bool = False) -> str | bytes | None:
    """The passphrase from the environment (read exactly as the node reads it:
    :func:`signer.passphrase_from_env`), else asked for at a terminal."""
    from signer import passphrase_from_env

    found = passphrase_from_env()
    if found is not None:
        return found
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("passphrase for the key file: ")
    if confirm and getpass.getpass("again: ") != first:
        raise LedgerError("the passphrases differ", code="passphrase_mismatch")
    return first or None


def cmd_keygen(args: argparse.Namespace) -> int:
    from signer import generate, save_key_file, save_public_key_file

    for path in (args.out, args.public_out):
        if path and Path(path).exists():
            raise LedgerError(f"{path} exists: keygen never overwrites a key file", code="exists")
    if args.public_out and Path(args.public_out).resolve() == Path(args.out).resolve():
        raise LedgerError("--public-out must be another file than --out", code="bad_argument")
    for opt, path in (("--out", args.out), ("--public-out", args.public_out)):
        if path and not Path(path).resolve().parent.is_dir():
            raise LedgerError(f"{opt} {path}: no directory {Path(path).parent} to write it in", code="bad_argument")
    signer = generate(args.alg)
    passphrase = None if args.insecure_plain else _passphrase(args, confirm=True)
    if passphrase is None and not args.insecure_plain:
        raise LedgerError("no passphrase: set LAMBTRACE_KEY_PASSPHRASE or LAMBTRACE_KEY_PASSPHRASE_FILE, type one "
                          "at a terminal, or pass --insecure-plain (demos only)", code="passphrase_required")
    save_key_file(signer, args.out, passphrase=passphrase, insecure_plain=args.insecure_plain)
    if args.public_out:
        save_public_key_file(signer, args.public_out)
    print(json.dumps({"key_file": str(args.out), "alg": signer.alg, "key_id": signer.key_id,
                      "public_key": signer.public_key.hex(), "encrypted": passphrase is not None,
                      **({"public_file": str(args.public_out)} if args.public_out else {})}))
    return 0


def cmd_pubkey(args: argparse.Namespace) -> int:
    """The public-only key file of a key file: what goes to whoever builds genesis or
    enrols the key; needs no passphrase (the public key is in the file in clear)."""
    from signer import load_public_key, save_public_key_file

    pub = load_public_key(args.key)
    if args.out:
        if Path(args.out).exists() and not args.force:
            raise LedgerError(f"{args.out} exists (--force replaces it)", code="exists")
        if Path(args.out).resolve() == Path(args.key).resolve():
            raise LedgerError("--out must be another file than --key", code="bad_argument")
        try:
            save_public_key_file(pub, args.out, overwrite=args.force)
        except OSError as exc:
            raise LedgerError(f"cannot write {args.out}: {exc.strerror or exc}", code="unwritable") from exc
    print(json.dumps({"alg": pub.alg, "key_id": pub.key_id, "public_key": pub.public_key.hex(),
                      "storage": pub.storage, **({"public_file": str(args.out)} if args.out else {})}))
    return 0


def _load_public(path: str) -> tuple[str, bytes, str]:
    from signer import load_public_key

    pk = load_public_key(path)
    return pk.alg, pk.public_key, pk.storage


def genesis_summary(g: Genesis) -> dict[str, Any]:
    """What an operator compares on a second channel before trusting a genesis file: its
    hash (over the content, not the file's bytes), the fingerprint label links carry, and
    the key id of every key it names."""
    from ledger.hashing import key_id

    return {
        "chain": g.chain,
        "hash": g.hash.hex(),
        "fingerprint": g.hash.hex()[:FINGERPRINT_HEX],
        "time": g.time,
        "validators": [{"name": v.name, "banner": v.banner, "alg": v.alg, "key_id": key_id(v.alg, v.pub),
                        "power": v.power} for v in g.validators],
        "trace_office": {"id": g.trace_office["id"], "banner": g.trace_office["banner"],
                         "keys": [{"alg": k["alg"], "key_id": key_id(k["alg"], k["pub"]),
                                   "storage": k.get("storage", "software")} for k in g.trace_office["keys"]]},
        "params": g.params.to_dict(),
    }


def cmd_fingerprint(args: argparse.Namespace) -> int:
    from .config import load_genesis

    print(json.dumps(genesis_summary(load_genesis(args.genesis)), indent=2, ensure_ascii=False))
    return 0


def cmd_genesis(args: argparse.Namespace) -> int:
    from .config import genesis_to_json

    if Path(args.out).exists() and not args.force:
        raise LedgerError(f"{args.out} exists: a chain's genesis is not replaced by accident (--force replaces it)",
                          code="exists")
    validators = []
    for spec in args.validator:
        try:
            name, banner, keyfile = spec.split(":", 2)
        except ValueError:
            raise LedgerError(f"--validator takes NAME:BANNER:KEYFILE, not {spec!r}", code="bad_argument") from None
        if banner not in schema.COUNTIES:
            raise LedgerError(f"--validator {spec!r}: {banner!r} is not a county code of the league "
                              f"({', '.join(sorted(schema.COUNTIES))})", code="bad_argument")
        alg, pub, _storage = _load_public(keyfile)
        validators.append(Validator(name, banner, alg, pub, 1))
    keys = []
    for keyfile in args.trace_office_key:
        alg, pub, storage = _load_public(keyfile)
        keys.append({"alg": alg, "pub": pub, "storage": storage})
    quotas = {}
    for q in args.quota or []:
        banner, _, n = q.partition("=")
        if not banner or not (n.strip().isascii() and n.strip().isdigit()):
            raise LedgerError(f"--quota takes BANNER=TAGS (a county code and a count), not {q!r}",
                              code="bad_argument")
        quotas[banner] = int(n)
    g = Genesis.from_dict(
        Genesis(
            chain=args.chain,
            time=args.time if args.time is not None else int(time.time() * 1000),
            validators=tuple(validators),
            trace_office={
                "id": args.trace_office_id,
                "banner": "152500",
                "name": args.trace_office_name,
                "keys": keys,
            },
            params=Params(slaughter_requires_hsm=args.slaughter_requires_hsm, tag_quotas=quotas,
                          state_root=RECALLS),
        ).to_dict()
    )
    Path(args.out).write_text(genesis_to_json(g), encoding="utf-8")
    print(json.dumps({"genesis": str(args.out), "chain": g.chain, "hash": g.hash.hex()}))
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    from .config import NodeConfig
    from .runner import serve

    return serve(NodeConfig.load(args.config), fresh_sign_guard=args.fresh_sign_guard)


def cmd_status(args: argparse.Namespace) -> int:
    from api.client import Client

    print(json.dumps(Client(args.url).status(), indent=2, ensure_ascii=False))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from signer import load_signer

    if args.kind not in KINDS:
        raise LedgerError(f"unknown kind {args.kind!r}; kinds: {', '.join(KINDS)}", code="unknown_kind")
    try:
        body_json = json.loads(Path(args.body[1:]).read_text() if args.body.startswith("@") else args.body)
    except (ValueError, OSError) as exc:
        raise LedgerError(f"--body is not JSON: {exc}", code="malformed") from exc
    body = schema.from_json(KINDS[args.kind].body, body_json)
    return sign_and_submit(
        args, args.kind, body,
        lambda: load_signer(args.key, passphrase=None if args.key.startswith("pkcs11:") else _passphrase(args)),
    )


def sign_and_submit(args: argparse.Namespace, kind: str, body: dict[str, Any], signer: Callable[[], Any]) -> int:
    """Sign ``body`` as ``args.actor`` (at ``args.time``, else now) with the key ``signer()``
    loads, submit it to ``args.url`` (``args.wait``: until committed), print the result;
    the exit code: 0 accepted (committed), 1 rejected or not committed."""
    from api.client import Client

    client = Client(args.url)
    chain = args.chain or client.status().get("chain")
    if not isinstance(chain, str):
        raise LedgerError(f"{args.url} names no chain in its status; is it a LambTrace node? (or give --chain)",
                          code="bad_response")
    key = signer()
    t = getattr(args, "time", None)
    t = int(time.time() * 1000) if t is None else int(t)
    signed = ev_mod.sign(ev_mod.envelope(chain, kind, args.actor, t, body), key)
    result = client.submit([signed], wait=args.wait)[0]
    print(json.dumps(result, ensure_ascii=False))
    if result.get("status") == "rejected":
        print(f"error: {result.get('code')}: {result.get('message')}", file=sys.stderr)
        return 1
    if args.wait and result.get("state") not in (None, "committed"):
        print(f"error: not_committed: event is {result.get('state')}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lambtrace", description="LambTrace: provenance ledger for Xilingol lamb")
    p.add_argument("--version", action="version", version=f"lambtrace {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("demo", help="create (or resume) and run a demo network with a season of lambs")
    s.add_argument("--dir", default="./lambtrace-demo", help="demo directory (default ./lambtrace-demo)")
    s.add_argument("--nodes", type=int, default=4,
                   help="nodes: the league and N-1 banners, each a validator (default 4)")
    s.add_argument("--port", type=int, default=8700, help="node i serves its API at 127.0.0.1:PORT+i")
    s.add_argument("--lambs", type=int, default=1000, help="lambs in the season (default 1000)")
    s.add_argument("--seed", type=int, default=2018, help="seed of the season generator")
    s.add_argument("--rate", type=float, default=0.0, help="keep driving new lambs at about R events/s")
    s.add_argument("--exit-when-ready", action="store_true", help="stop the network once the season is in")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("node", help="run one node")
    s.add_argument("--config", required=True, help="node config JSON")
    s.add_argument("--fresh-sign-guard", action="store_true",
                   help="a validator whose sign guard file is lost signs at once with a new one, instead of "
                        "waiting until its peers commit a block after its start; only when no other instance "
                        "of it has signed at the network's current height (docs/backup.md)")
    s.set_defaults(func=cmd_node)

    s = sub.add_parser("keygen", help="create a key file (encrypted unless --insecure-plain)")
    s.add_argument("--out", required=True)
    s.add_argument("--alg", choices=("ed25519", "ecdsa-p256"), default="ed25519")
    s.add_argument("--insecure-plain", action="store_true", help="store the private key unencrypted (demos only)")
    s.add_argument("--public-out", help="also write a public-only key file (for genesis or enrolment)")
    s.set_defaults(func=cmd_keygen)

    s = sub.add_parser("pubkey", help="print a key file's public key; --out writes a public-only key file")
    s.add_argument("--key", required=True, help="any key file (encrypted, plain or public-only)")
    s.add_argument("--out", help="write the public-only key file here")
    s.add_argument("--force", action="store_true", help="replace an existing --out file")
    s.set_defaults(func=cmd_pubkey)

    s = sub.add_parser("genesis", help="write a genesis file")
    s.add_argument("--chain", required=True, help="chain id")
    s.add_argument("--validator", action="append", required=True, metavar="NAME:BANNER:KEYFILE")
    s.add_argument("--trace-office-key", action="append", required=True, metavar="KEYFILE")
    s.add_argument("--trace-office-id", default="league-trace-office")
    s.add_argument("--trace-office-name", default=TRACE_OFFICE_NAME,
                   help=f"the trace office's name as pages show it (default {TRACE_OFFICE_NAME})")
    s.add_argument("--slaughter-requires-hsm", action="store_true")
    s.add_argument("--quota", action="append", metavar="BANNER=TAGS", help="yearly ear-tag quota of a banner")
    s.add_argument("--time", type=int, help="genesis time (ms since the epoch; default now)")
    s.add_argument("--out", default="genesis.json")
    s.add_argument("--force", action="store_true", help="replace an existing --out file")
    s.set_defaults(func=cmd_genesis)

    s = sub.add_parser("fingerprint", help="a genesis file's hash, label fingerprint and key ids, to check it "
                                           "on a second channel")
    s.add_argument("--genesis", required=True, help="the genesis JSON")
    s.set_defaults(func=cmd_fingerprint)

    s = sub.add_parser("status", help="a node's status")
    s.add_argument("--url", required=True)
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("submit", help="sign and submit one event")
    s.add_argument("--url", required=True)
    s.add_argument("--key", required=True, help="key file of the signer")
    s.add_argument("--actor", required=True)
    s.add_argument("--kind", required=True, choices=sorted(KINDS))
    s.add_argument("--body", required=True, help="body as JSON (bytes as hex), or @FILE")
    s.add_argument("--chain", help="chain id (default: ask the node)")
    s.add_argument("--time", type=int, help="event time in ms (default now)")
    s.add_argument("--wait", action="store_true", help="wait until the event is committed")
    s.set_defaults(func=cmd_submit)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return p


def _not_text(argv: list[str], exc: UnicodeEncodeError) -> str:
    """Which option's value is not UTF-8 text (bytes a terminal or script passed as they are)."""
    bad = exc.object if isinstance(exc.object, str) else ""
    for i, a in enumerate(argv):
        if any("\udc80" <= c <= "\udcff" for c in a) and (a in bad or bad in a):
            if a.startswith("--"):
                return f"the value of {a.split('=', 1)[0]} is not UTF-8 text"
            if i and argv[i - 1].startswith("-"):
                return f"the value of {argv[i - 1]} is not UTF-8 text"
            return f"the argument {a!r} is not UTF-8 text"
    return f"an argument is not UTF-8 text ({exc.reason})"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
        return rc
    except LedgerError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C (README "Commands"): stopped cleanly, nothing half-written kept
        print("error: interrupted: stopped by Ctrl-C", file=sys.stderr)
        return 130
    except UnicodeEncodeError as exc:  # a value with undecodable bytes where text is needed (ids, URLs, kinds)
        print(f"error: bad_argument: {_not_text(argv, exc)}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


