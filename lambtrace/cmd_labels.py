"""``lambtrace labels print``: printable pack labels from a node (docs/labels.md).

Fetches each label's summary (``GET /v1/labels/<label>``) and the genesis hash
(``GET /v1/status``) from a node, renders with :mod:`lambtrace.labels` and writes
``<label>.svg``, ``<label>.png`` (the QR code) and one ``labels.pdf`` sheet into ``--out``.
Errors carry the API's codes (``not_found`` for an unknown label) or the command's
(``unreachable``, ``bad_argument``, ``bad_label``, ``genesis_mismatch``); exit code 2.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError, TransportError
from ledger.genesis import FINGERPRINT_HEX

from .config import answer_of
from .labels import A4_H_MM, A4_W_MM, LABEL_H_MM, LABEL_W_MM, LabelInfo, label_png, label_svg, sheet_pdf

FORMATS = ("svg", "png", "pdf")
MAX_PNG_SCALE = 100

_LABEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def register(sub: Any) -> None:
    """Add ``labels print`` to the ``lambtrace`` parser."""
    s = sub.add_parser("labels", help="printable pack labels")
    lsub = s.add_subparsers(dest="labels_command", required=True, metavar="SUBCOMMAND")
    p = lsub.add_parser("print", help="render labels (SVG, PNG QR, A4 PDF sheet) with their QR codes")
    p.add_argument("--url", help="node API URL (default with --from-demo: the demo's first node)")
    p.add_argument("--site", required=True, help="trace site base URL for the QR link, e.g. https://trace.example/")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--label", nargs="+", action="extend", metavar="ID", help="label ids")
    src.add_argument("--from-demo", metavar="DEMO_JSON", help="the labels listed in a demo.json")
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--format", default="svg,png,pdf", help="comma-separated subset of svg,png,pdf (default all)")
    p.add_argument("--columns", type=int, default=2, help="labels across an A4 sheet (default 2)")
    p.add_argument("--rows", type=int, default=5, help="labels down an A4 sheet (default 5)")
    p.add_argument("--png-scale", type=int, default=10,
                   help=f"pixels per QR module in the PNG (default 10, at most {MAX_PNG_SCALE})")
    p.set_defaults(func=cmd_labels_print)


def _formats(spec: str) -> list[str]:
    wanted = [f.strip().lower() for f in spec.split(",") if f.strip()]
    bad = [f for f in wanted if f not in FORMATS]
    if bad or not wanted:
        raise LedgerError(f"--format takes a comma-separated subset of {','.join(FORMATS)}, not {spec!r}",
                          code="bad_argument")
    return [f for f in FORMATS if f in wanted]


def _from_demo(path: str) -> tuple[list[str], str | None, str | None]:
    """Labels, first node URL and genesis hash of a demo.json."""
    try:
        demo = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LedgerError(f"cannot read {path}: {exc}", code="bad_argument") from exc
    labels = demo.get("labels") if isinstance(demo, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise LedgerError(f"{path} has no list of labels", code="bad_argument")
    nodes = demo.get("nodes") or []
    url = nodes[0].get("api") if nodes and isinstance(nodes[0], dict) else None
    genesis_hash = demo.get("genesis_hash")
    return labels, url, genesis_hash if isinstance(genesis_hash, str) else None


def label_info(summary: dict[str, Any], *, site: str, fingerprint: str) -> LabelInfo:
    """What to print for a label summary as ``GET /v1/labels/<label>`` returns it."""
    lamb = summary.get("lamb") or {}
    plant = summary.get("plant") or {}
    origin = " ".join(str(x) for x in (lamb.get("banner_name") or lamb.get("banner"), lamb.get("sumu")) if x)
    return LabelInfo(
        label=str(summary["label"]),
        cut=str(summary["cut"]),
        net_mass_g=int(summary["net_mass_g"]),
        packed=str(summary["packed"]),
        plant=str(plant.get("name") or plant.get("id") or ""),
        banner=origin,
        site=site,
        fingerprint=fingerprint,
    )


def cmd_labels_print(args: argparse.Namespace) -> int:
    from api.client import Client

    formats = _formats(args.format)
    url: str | None = args.url
    expected_genesis: str | None = None
    if args.from_demo:
        labels, demo_url, expected_genesis = _from_demo(args.from_demo)
        url = url or demo_url
    else:
        labels = list(args.label)
    if not url:
        raise LedgerError("--url is required (the demo.json names no node)", code="bad_argument")
    if not labels:
        raise LedgerError("no labels to print", code="bad_argument")
    for lab in labels:
        if not _LABEL_ID.fullmatch(lab):
            raise LedgerError(f"not a label id: {lab!r}", code="bad_label")
    if not (args.columns >= 1 and args.columns * LABEL_W_MM <= A4_W_MM and args.rows >= 1
            and args.rows * LABEL_H_MM <= A4_H_MM):
        raise LedgerError(f"an A4 sheet takes 1–{int(A4_W_MM // LABEL_W_MM)} columns and "
                          f"1–{int(A4_H_MM // LABEL_H_MM)} rows of labels", code="bad_argument")
    if not 1 <= args.png_scale <= MAX_PNG_SCALE:
        # a QR code is at most 177 modules across: 100 px a module is already a 17700 px PNG
        raise LedgerError(f"--png-scale takes 1 to {MAX_PNG_SCALE} pixels per QR module, not {args.png_scale}",
                          code="bad_argument")
    if not re.match(r"https?://[^/\s]+", args.site):
        raise LedgerError(f"--site must be an http(s) URL, not {args.site!r}", code="bad_argument")

    client = Client(url, retries=2)
    try:
        with answer_of(url):
            genesis_hash = str(client.status()["genesis_hash"]).lower()
            if expected_genesis and expected_genesis.lower() != genesis_hash:
                raise LedgerError(f"the node at {url} serves genesis {genesis_hash[:16]}…, the demo's is "
                                  f"{expected_genesis[:16]}…", code="genesis_mismatch")
            fingerprint = genesis_hash[:FINGERPRINT_HEX]
            infos = [label_info(client.label(lab), site=args.site, fingerprint=fingerprint) for lab in labels]
    except TransportError as exc:
        raise LedgerError(f"cannot reach the node at {url}: {exc.message}", code="unreachable") from exc

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for info in infos:
        if "svg" in formats:
            path = out / f"{info.label}.svg"
            path.write_text(label_svg(info), encoding="utf-8")
            written.append(str(path))
        if "png" in formats:
            path = out / f"{info.label}.png"
            path.write_bytes(label_png(info, args.png_scale))
            written.append(str(path))
    if "pdf" in formats:
        path = out / "labels.pdf"
        path.write_bytes(sheet_pdf(infos, columns=args.columns, rows=args.rows))
        written.append(str(path))
    for path_s in written:
        print(f"wrote {path_s}")
    print(json.dumps({"labels": [i.label for i in infos], "genesis_fingerprint": fingerprint,
                      "links": {i.label: i.url for i in infos}, "written": written}, ensure_ascii=False))
    return 0
