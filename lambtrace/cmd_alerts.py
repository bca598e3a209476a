"""``lambtrace alerts --url URL``: the fraud and anomaly signals of a node (docs/alerts.md).

Prints one line per alert (newest first: time, kind, message, evidence ids), or the
node's JSON answer with ``--json``.  Exit 0 on an answer, 2 on errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from .config import answer_of


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")


def cmd_alerts(args: argparse.Namespace) -> int:
    from api.client import Client

    params: dict[str, Any] = {"limit": str(args.limit)}
    if args.kind:
        params["kind"] = args.kind
    if args.since is not None:
        params["since"] = str(args.since)
    answer = Client(args.url)._json("/v1/alerts", params)
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
        return 0
    with answer_of(args.url):
        counts = ", ".join(f"{k} {n}" for k, n in answer["counts"].items() if n)
        lines = [f"height {answer['height']}: {answer['total']} alert(s){' — ' + counts if counts else ''}"]
        for a in answer["alerts"]:
            ev = a["evidence"]
            ids = [ev["rejected"]["id"]] if "rejected" in ev else []
            ids += ev.get("events", [])
            lines.append(f"{_when(a['time'])}  {a['kind']:<26} {a['message']}")
            if ids:
                lines.append(f"{'':21}evidence: {', '.join(i[:16] for i in ids[:6])}"
                             f"{' ...' if len(ids) > 6 else ''}")
    print("\n".join(lines))
    return 0


def register(sub: Any) -> None:
    """Add ``alerts`` to the ``lambtrace`` parser."""
    s = sub.add_parser("alerts", help="fraud and anomaly signals of a node, with their evidence")
    s.add_argument("--url", required=True, help="a node's API")
    s.add_argument("--kind", help="only this kind (e.g. premium_shortfall, tag_outside_banner)")
    s.add_argument("--since", type=int, help="only alerts at or after this instant (ms since the epoch)")
    s.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    s.add_argument("--json", action="store_true", help="print the node's JSON answer")
    s.set_defaults(func=cmd_alerts)
