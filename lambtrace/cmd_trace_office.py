"""Trace-office and terminal commands (docs/trace-office.md).

* ``lambtrace tags issue|list``: issue ear-tag ranges against the banner's yearly quota;
  list the ranges issued (``GET /v1/tags``).
* ``lambtrace devices register|list|retire``: file a handheld terminal for its owner,
  list an owner's terminals (``GET /v1/actors/<id>``), retire a lost one.
* ``lambtrace device record|sync``: a terminal's offline queue (:mod:`lambtrace.offline`).
* ``lambtrace actors enroll|rotate|revoke|show``: membership (docs/keys.md): enrol an actor
  with the public keys in its key files, add and revoke keys, revoke an actor, show its
  record (``GET /v1/actors/<id>``).

Exit codes: 0 accepted (committed with ``--wait``) / this sync's events all accepted;
1 rejected (the rules' code on stderr) or, for ``device sync``, some of this sync's
events rejected (the ``queue`` summary counts earlier rejections too); 2 usage, network
or key errors (``error: <code>: <message>``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ledger import schema
from ledger.errors import LedgerError
from ledger.events import KINDS, ROLES


def _signer(key: str) -> Any:
    from signer import load_signer

    from .cli import _passphrase

    return load_signer(key, passphrase=None if key.startswith("pkcs11:") else _passphrase(argparse.Namespace()))


def _submit(args: argparse.Namespace, kind: str, body: dict[str, Any]) -> int:
    """Sign ``body`` as ``args.actor`` with ``args.key``, submit it, print the result."""
    from .cli import sign_and_submit

    return sign_and_submit(args, kind, body, lambda: _signer(args.key))


def cmd_tags_issue(args: argparse.Namespace) -> int:
    body = {"to": args.to, "first": args.first, "count": args.count, "year": args.year}
    return _submit(args, "tags.issue", body)


def cmd_tags_list(args: argparse.Namespace) -> int:
    from api.client import Client

    out = Client(args.url).tag_ranges(args.to, limit=args.limit)
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def cmd_devices_register(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"device": args.device, "owner": args.owner,
                            "key": _key_records([args.device_key], None)[0]}
    if args.model:
        body["model"] = args.model
    return _submit(args, "device.register", body)


def cmd_devices_retire(args: argparse.Namespace) -> int:
    return _submit(args, "device.retire", {"device": args.device, "reason": args.reason})


def cmd_devices_list(args: argparse.Namespace) -> int:
    from api.client import Client

    rec = Client(args.url).actor(args.owner)
    devices = [
        {k: d.get(k) for k in ("device", "owner", "key", "model", "registered_at", "retired_at",
                               "retired_reason") if k in d}
        for d in rec.get("devices", [])
    ]
    if not args.all:
        devices = [d for d in devices if d.get("retired_at") is None]
    print(json.dumps({"owner": args.owner, "devices": devices}, indent=2, ensure_ascii=False))
    return 0


def _key_records(paths: list[str], not_after: int | None) -> list[dict[str, Any]]:
    """The key records of the public keys in ``paths`` (any key file: no passphrase)."""
    from signer import load_public_key

    out = []
    for path in paths:
        pk = load_public_key(path)
        rec: dict[str, Any] = {"alg": pk.alg, "pub": pk.public_key, "storage": pk.storage}
        if not_after is not None:
            rec["not_after"] = not_after
        out.append(rec)
    return out


def cmd_actors_enroll(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"id": args.id, "role": args.role, "banner": args.banner,
                            "keys": _key_records(args.actor_key, args.not_after)}
    if args.name:
        body["name"] = args.name
    if args.parent:
        body["parent"] = args.parent
    return _submit(args, "actor.enroll", body)


def cmd_actors_rotate(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"id": args.id}
    if args.add:
        body["add"] = _key_records(args.add, args.not_after)
    if args.revoke:
        body["revoke"] = list(args.revoke)
    if not args.add and not args.revoke:
        raise LedgerError("give --add KEYFILE or --revoke KEY_ID (or both)", code="bad_argument")
    return _submit(args, "key.rotate", body)


def cmd_actors_revoke(args: argparse.Namespace) -> int:
    return _submit(args, "actor.revoke", {"id": args.id, "reason": args.reason})


def cmd_actors_show(args: argparse.Namespace) -> int:
    from api.client import Client

    print(json.dumps(Client(args.url).actor(args.id), indent=2, ensure_ascii=False))
    return 0


def cmd_device_record(args: argparse.Namespace) -> int:
    from .offline import queue_meta, record_event

    if args.kind not in KINDS:
        raise LedgerError(f"unknown kind {args.kind!r}", code="unknown_kind")
    try:
        body_json = json.loads(Path(args.body[1:]).read_text() if args.body.startswith("@") else args.body)
    except (ValueError, OSError) as exc:
        raise LedgerError(f"--body is not JSON: {exc}", code="malformed") from exc
    chain = args.chain or queue_meta(args.queue).get("chain")
    if not chain:
        raise LedgerError("a new queue needs --chain (the terminal has no network to ask)", code="bad_argument")
    body = schema.from_json(KINDS[args.kind].body, body_json)
    seq, eid = record_event(args.queue, _signer(args.key), chain=chain, kind=args.kind, actor=args.actor,
                            body=body, time_ms=args.time)
    print(json.dumps({"queue": str(args.queue), "seq": seq, "id": eid}))
    return 0


def cmd_device_sync(args: argparse.Namespace) -> int:
    from api.client import Client

    from .offline import summary, sync

    report = sync(args.queue, Client(args.url), batch=args.batch, progress=not args.no_progress,
                  wait=args.wait, retry_rejected=args.retry_rejected)
    print(json.dumps({**report.to_dict(), "queue": summary(args.queue)}, indent=2, ensure_ascii=False))
    for r in report.results:
        if r["status"] == "rejected":
            print(f"rejected: event {r['seq']} ({r.get('id')}): {r.get('code')}: {r.get('message')}",
                  file=sys.stderr)
    return 0 if report.complete else 1


def _signing(p: argparse.ArgumentParser, signer: str = "the signing trace office or banner office") -> None:
    p.add_argument("--url", required=True, help="a node's API")
    p.add_argument("--key", required=True, help="key file (or pkcs11: spec) of the signer")
    p.add_argument("--actor", required=True, help=signer)
    p.add_argument("--chain", help="chain id (default: ask the node)")
    p.add_argument("--time", type=int, help="event time in ms (default now)")
    p.add_argument("--wait", action="store_true", help="wait until the event is committed")


def register(sub: Any) -> None:
    s = sub.add_parser("tags", help="ear-tag issuance (issue, list)")
    tsub = s.add_subparsers(dest="tags_command", required=True, metavar="SUBCOMMAND")
    p = tsub.add_parser("issue", help="issue a range of ear tags to a banner office or cooperative")
    _signing(p)
    p.add_argument("--to", required=True, help="banner office or cooperative receiving the range")
    p.add_argument("--first", required=True, help="first ear tag of the range (15 digits)")
    p.add_argument("--count", required=True, type=int, help="tags in the range")
    p.add_argument("--year", required=True, type=int, help="quota year")
    p.set_defaults(func=cmd_tags_issue)
    p = tsub.add_parser("list", help="ear-tag ranges issued (to one actor)")
    p.add_argument("--url", required=True)
    p.add_argument("--to", help="only ranges issued to this actor")
    p.add_argument("--limit", type=int, default=1000)
    p.set_defaults(func=cmd_tags_list)

    s = sub.add_parser("devices", help="handheld terminals (register, list, retire)")
    dsub = s.add_subparsers(dest="devices_command", required=True, metavar="SUBCOMMAND")
    p = dsub.add_parser("register", help="file a terminal and its key for its owner")
    _signing(p)
    p.add_argument("--device", required=True, help="terminal id")
    p.add_argument("--owner", required=True, help="cooperative, herder agent, plant or banner office")
    p.add_argument("--device-key", required=True, help="the terminal's key file (its public key is filed)")
    p.add_argument("--model", help="terminal model")
    p.set_defaults(func=cmd_devices_register)
    p = dsub.add_parser("retire", help="retire a lost or broken terminal: its key signs nothing more")
    _signing(p)
    p.add_argument("--device", required=True)
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_devices_retire)
    p = dsub.add_parser("list", help="an owner's terminals")
    p.add_argument("--url", required=True)
    p.add_argument("--owner", required=True)
    p.add_argument("--all", action="store_true", help="retired terminals too")
    p.set_defaults(func=cmd_devices_list)

    s = sub.add_parser("actors", help="membership: enrol actors, rotate and revoke keys, revoke actors, show")
    asub = s.add_subparsers(dest="actors_command", required=True, metavar="SUBCOMMAND")
    p = asub.add_parser("enroll", help="enrol an actor with the public keys of its key files (actor.enroll)")
    _signing(p, "the signing trace office")
    p.add_argument("--id", required=True, help="the new actor's id")
    p.add_argument("--role", required=True, choices=list(ROLES), help="its role")
    p.add_argument("--banner", required=True, help="its county code")
    p.add_argument("--name", help="organisation name (never a person's)")
    p.add_argument("--parent", help="a herder agent's cooperative")
    p.add_argument("--actor-key", required=True, action="append", metavar="KEYFILE",
                   help="a key file of the actor (public-only is enough); repeat for up to 4 keys")
    p.add_argument("--not-after", type=int, metavar="MS", help="the keys expire after this instant (ms)")
    p.set_defaults(func=cmd_actors_enroll)
    p = asub.add_parser("rotate", help="add keys to an actor and/or revoke some of its keys (key.rotate)")
    _signing(p, "the signing trace office")
    p.add_argument("--id", required=True, help="the actor whose keys change")
    p.add_argument("--add", action="append", metavar="KEYFILE", help="a key file whose public key to add (repeat)")
    p.add_argument("--revoke", action="append", metavar="KEY_ID", help="the key id of a key to revoke (repeat)")
    p.add_argument("--not-after", type=int, metavar="MS", help="the added keys expire after this instant (ms)")
    p.set_defaults(func=cmd_actors_rotate)
    p = asub.add_parser("revoke", help="revoke an actor: nothing it signs is accepted any more (actor.revoke)")
    _signing(p, "the signing trace office")
    p.add_argument("--id", required=True)
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_actors_revoke)
    p = asub.add_parser("show", help="an actor's membership record, keys and terminals")
    p.add_argument("--url", required=True, help="a node's API")
    p.add_argument("--id", required=True)
    p.set_defaults(func=cmd_actors_show)

    s = sub.add_parser("device", help="a terminal's offline queue (record, sync)")
    qsub = s.add_subparsers(dest="device_command", required=True, metavar="SUBCOMMAND")
    p = qsub.add_parser("record", help="sign an event offline with the terminal key and queue it")
    p.add_argument("--queue", required=True, help="queue directory")
    p.add_argument("--key", required=True, help="the terminal's key file")
    p.add_argument("--actor", required=True, help="the terminal's owner")
    p.add_argument("--kind", required=True, choices=sorted(KINDS))
    p.add_argument("--body", required=True, help="body as JSON (bytes as hex), or @FILE")
    p.add_argument("--chain", help="chain id (needed for a new queue)")
    p.add_argument("--time", type=int, help="event time in ms (default now)")
    p.set_defaults(func=cmd_device_record)
    p = qsub.add_parser("sync", help="upload the queue in order, idempotently and resumably")
    p.add_argument("--queue", required=True, help="queue directory")
    p.add_argument("--url", required=True)
    p.add_argument("--batch", type=int, default=200, help="events per request (default 200)")
    p.add_argument("--wait", action="store_true", help="answer each batch once committed")
    p.add_argument("--retry-rejected", action="store_true", help="send rejected events again")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_device_sync)
