"""The browser's verifier (api/static/verify.js) refuses what the Python verifier and the
node refuse: its ``LIMITS`` are the same numbers as theirs."""

from __future__ import annotations

import re
from pathlib import Path

from ledger.blocks.certificate import MAX_PRECOMMITS
from ledger.genesis import FINGERPRINT_HEX
from ledger.limits import DEFAULT_LIMITS
from verify import label

JS = Path(__file__).resolve().parent.parent / "api" / "static" / "verify.js"


def js_limits() -> dict[str, int]:
    src = JS.read_text()
    block = re.search(r"export const LIMITS = Object\.freeze\(\{(.*?)\}\);", src, re.S)
    assert block, "verify.js has no LIMITS"
    out = {}
    for name, expr in re.findall(r"^\s*(\w+):\s*([0-9 *]+),", block.group(1), re.M):
        value = 1
        for factor in expr.split("*"):
            value *= int(factor)
        out[name] = value
    return out


def test_the_browser_verifier_has_the_python_limits() -> None:
    got = js_limits()
    assert got == {
        "maxEventBytes": DEFAULT_LIMITS.max_event_bytes,
        "maxDepth": DEFAULT_LIMITS.max_depth,
        "maxStrChars": DEFAULT_LIMITS.max_str_chars,
        "maxListItems": DEFAULT_LIMITS.max_list_items,
        "maxSigsPerEvent": DEFAULT_LIMITS.max_sigs_per_event,
        "maxProofNodes": label.MAX_PROOF_HASHES,
        "maxEvents": label.MAX_EVENTS,
        "maxPrecommits": MAX_PRECOMMITS,
        "minFingerprintHex": FINGERPRINT_HEX,
    }
