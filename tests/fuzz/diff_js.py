"""Run a fuzz corpus through both label verifiers and print where they disagree.

``verify.verify_label`` and the consumer page's ``api/static/verify.js`` must give every
bundle the same code (ADR 0019).  This takes the corpus of ``fuzz_verify_label.py``
(bundles: msgpack ones in their JSON form) or of ``fuzz_verify_forged.py`` (logs: the
bundle the harness certifies over each), verifies each in Python against the genesis of
both worlds, then in node, and lists the inputs whose codes differ.  Exit 1 when any do.

    .venv/bin/python tests/fuzz/diff_js.py label /tmp/corpus-label
    .venv/bin/python tests/fuzz/diff_js.py forged /tmp/corpus-forged

Needs node (``/usr/bin/node``); not atheris.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _worlds

from helpers_api import ApiWorld, forge_bundle
from ledger import codec
from ledger.errors import DecodeError
from ledger.schema import to_json
from verify import VerificationError, verify_label
from verify.label import MAX_EVENTS

VERIFY_JS = Path(__file__).resolve().parents[2] / "api" / "static" / "verify.js"

_HARNESS = r"""
import { readFileSync } from "node:fs";

const V = await import(process.argv[2]);
const v = JSON.parse(readFileSync(process.argv[3], "utf8"));
const out = [];
for (const c of v.cases) {
  let b;
  try { b = JSON.parse(c.text); } catch { out.push("malformed_bundle"); continue; }
  try {
    await V.verifyLabelBundle(b, { label: c.label, fingerprint: null, genesis: v.genesis[c.world] });
    out.push(null);
  } catch (e) {
    out.push(e instanceof V.VerificationError ? e.code : `crash: ${e && e.stack || e}`);
  }
}
process.stdout.write(JSON.stringify(out));
"""


def _worlds_by_name() -> dict[str, ApiWorld]:
    return {"seasoned": _worlds.seasoned(), "legacy": _worlds.make_world("legacy", recall_map=False)}


def _label_of(text: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    label = value.get("label") if type(value) is dict else None
    return label if type(label) is str else None


def label_inputs(data: bytes, worlds: dict[str, ApiWorld]) -> list[tuple[str, str, str | None]]:
    """``(world, JSON text, label)`` for a ``fuzz_verify_label`` input, against both worlds."""
    if data.lstrip()[:1] == b"{":
        text = data.decode("utf-8", "replace")
    else:
        try:
            text = json.dumps(to_json(codec.decode(data)))
        except (DecodeError, TypeError, ValueError):
            return []
    label = _label_of(text)
    return [(name, text, label) for name in worlds]


def forged_inputs(data: bytes, worlds: dict[str, ApiWorld]) -> list[tuple[str, str, str | None]]:
    """The bundle ``fuzz_verify_forged`` certifies over an input log, as JSON, or nothing."""
    try:
        value = codec.decode(data)
    except DecodeError:
        return []
    if type(value) is not dict:
        return []
    evs, picks, label = value.get("events"), value.get("picks"), value.get("label")
    if type(evs) is not list or not evs or len(evs) > 64 or type(picks) is not list or type(label) is not str:
        return []
    leaves = [_worlds.leaf_of(e) for e in evs]
    chosen = sorted({p for p in picks if type(p) is int and 0 <= p < len(leaves)})
    if not chosen or len(chosen) > MAX_EVENTS or not 0 < len(label) <= 64:
        return []
    name = "legacy" if value.get("form") == 1 else "seasoned"
    bundle = forge_bundle(worlds[name], leaves, chosen, label=label)
    return [(name, json.dumps(to_json(codec.decode(bundle))), label)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("harness", choices=("label", "forged"))
    ap.add_argument("corpus", type=Path, help="a corpus directory (or one input file)")
    ap.add_argument("--show", type=int, default=20, help="differences to print (default 20)")
    args = ap.parse_args(argv)
    node = shutil.which("node")
    if node is None:
        print("node is not installed", file=sys.stderr)
        return 2
    worlds = _worlds_by_name()
    make = label_inputs if args.harness == "label" else forged_inputs
    files = sorted(args.corpus.iterdir()) if args.corpus.is_dir() else [args.corpus]
    cases: list[dict[str, Any]] = []
    want: list[str | None] = []
    for f in files:
        try:
            data = f.read_bytes()
        except FileNotFoundError:
            continue  # a fuzzer still running on the corpus replaced it
        for world, text, label in make(data, worlds):
            try:
                verify_label(text, worlds[world].genesis, label=label)
                want.append(None)
            except VerificationError as exc:
                want.append(exc.code)
            cases.append({"file": f.name, "world": world, "text": text, "label": label})
    with tempfile.TemporaryDirectory() as tmp:
        vectors, harness = Path(tmp) / "cases.json", Path(tmp) / "harness.mjs"
        geneses = {name: to_json(w.genesis.to_dict()) for name, w in worlds.items()}
        vectors.write_text(json.dumps({"cases": cases, "genesis": geneses}), encoding="utf-8")
        harness.write_text(_HARNESS, encoding="utf-8")
        run = subprocess.run([node, str(harness), VERIFY_JS.as_uri(), str(vectors)],
                             capture_output=True, text=True, check=False)
    if run.returncode != 0:
        print(run.stderr[-4000:], file=sys.stderr)
        return 2
    got: list[str | None] = json.loads(run.stdout)
    differ = [(c, w, g) for c, w, g in zip(cases, want, got) if w != g]
    for c, w, g in differ[: args.show]:
        print(f"{c['file'][:16]} ({c['world']}): verify_label {w}, verify.js {str(g)[:200]}")
    codes = sorted({str(w) for w in want})
    print(json.dumps({"inputs": len(files), "cases": len(cases), "differ": len(differ), "python_codes": codes}))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
