"""Fuzz ``ledger.codec.decode``: untrusted bytes → a canonical value or ``DecodeError``.

Allowed: :class:`ledger.errors.DecodeError` (with one of its documented codes).  Beyond
not crashing, what decodes must be canonical: encoding it again gives the very bytes
(:func:`codec.encode` and :func:`codec.encode_canonical_value`), within the limits.

    .venv/bin/python tests/fuzz/fuzz_codec.py -max_total_time=600 /tmp/corpus-codec
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

with _harness.instrumented():
    from ledger import codec, events
    from ledger.errors import DecodeError
    from ledger.limits import DEFAULT_LIMITS, Limits
    from signer import generate

CODES = {"too_large", "too_deep", "malformed", "non_canonical"}
SMALL = Limits(max_depth=3, max_message_bytes=4096)


def _check(data: bytes, limits: Limits) -> None:
    try:
        value = codec.decode(data, limits)
    except DecodeError as exc:
        if exc.code not in CODES:
            raise _harness.Finding(f"DecodeError with an undocumented code {exc.code!r}") from exc
        return
    if codec.encode(value) != data or codec.encode_canonical_value(value) != data:
        raise _harness.Finding("decode accepted bytes that are not the canonical encoding of their value")
    if len(data) > limits.max_message_bytes:
        raise _harness.Finding("decode accepted more bytes than the limit")


def test_one_input(data: bytes) -> None:
    _check(data, DEFAULT_LIMITS)
    _check(data, SMALL)
    # decode must take any bytes-like value and only those
    _check(bytes(memoryview(data)), SMALL)


def seed_values() -> list[Any]:
    rng = random.Random(1)
    signer = generate("ed25519")
    env = events.envelope("fuzz-chain", "lamb.tag", "agent-1", 1_790_000_000_000, {
        "tag": "315252300000001", "herder": "h-1", "born": "2026-03-10", "breed": "苏尼特羊", "sex": "male",
        "sumu": "满都拉图镇"})
    signed = events.sign(env, signer)
    return [
        None, True, False, 0, 1, -1, 127, 128, -32, -33, 255, 256, 2**16, 2**32, 2**63 - 1, 2**64 - 1, -(2**63),
        "", "a", "x" * 31, "x" * 32, "x" * 256, "é中", b"", b"\x00", bytes(range(256)),
        [], [1, [2, [3, [4]]]], {}, {"a": 1, "b": [1, 2], "c": {"d": b"e"}},
        {"": 0, "a": None, "aa": True, "b": "x"},
        [[[[[[[[1]]]]]]]],
        signed,
        {"t": "vote", "chain": "c", "height": 3, "round": 0, "type": "prevote", "value": bytes(32), "from": "v",
         "sig": bytes(64)},
        [rng.randrange(2**64) for _ in range(20)],
        {str(i): i for i in range(20)},
    ]


def seeds() -> list[bytes]:
    out = [codec.encode(v) for v in seed_values()]
    out += [b"", b"\xc1", b"\xd4\x00\x00", b"\x81\x01\x02", b"\x82\xa1b\x01\xa1a\x02", b"\xcc\x01",
            b"\xca\x00\x00\x00\x00", b"\xa1\xff", b"\x92\x01"]
    return out


MUTATOR = _harness.Mutator(dictionary=seed_values(), canonical_share=0.6, byte_share=0.3)


if __name__ == "__main__":
    _harness.run(test_one_input, seeds, MUTATOR)
