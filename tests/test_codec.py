"""Canonical codec: one encoding per value, limits, read-then-write identity."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import codec
from ledger.errors import DecodeError
from ledger.hashing import TAG_EVENT, TAG_KEY, H, key_id
from ledger.limits import Limits

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@given(values)
def test_read_then_write_is_byte_identical(v: object) -> None:
    data = codec.encode(v)
    back = codec.decode(data, Limits(max_depth=64))
    assert codec.encode(back) == data
    assert back == codec.canonicalize(v)


@given(st.dictionaries(st.text(min_size=1, max_size=6), st.integers(0, 5), min_size=2, max_size=6))
def test_unsorted_maps_are_refused(d: dict[str, int]) -> None:
    keys = sorted(d, key=lambda k: k.encode())
    unsorted = {k: d[k] for k in reversed(keys)}
    data = msgpack.packb(unsorted, use_bin_type=True)
    with pytest.raises(DecodeError) as e:
        codec.decode(data)
    assert e.value.code == "non_canonical"


def test_keys_sort_by_utf8_bytes() -> None:
    data = codec.encode({"é": 1, "z": 2, "a": 3, "中": 4})
    assert list(msgpack.unpackb(data)) == ["a", "z", "é", "中"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (msgpack.packb(1.5), "non_canonical"),
        (b"\xcd\x00\x01", "non_canonical"),  # uint16 holding 1: not the smallest form
        (b"\xd9\x01a", "non_canonical"),  # str8 where fixstr fits
        (msgpack.packb("x", use_bin_type=False) + b"\x00", "malformed"),
        (b"\xc7\x01\x05a", "malformed"),  # ext type
        (b"\xc1", "malformed"),
        (msgpack.packb({1: 2}), "malformed"),  # non-str key
        (msgpack.packb({"a": 1, "a ": 2})[:-1], "malformed"),
        (b"\x82\xa1a\x01\xa1a\x02", "non_canonical"),  # duplicate key
    ],
)
def test_non_canonical_or_malformed(data: bytes, code: str) -> None:
    with pytest.raises(DecodeError) as e:
        codec.decode(data)
    assert e.value.code == code


def test_limits() -> None:
    with pytest.raises(DecodeError) as e:
        codec.decode(codec.encode(b"x" * 100), Limits(max_message_bytes=50))
    assert e.value.code == "too_large"
    deep: object = 1
    for _ in range(10):
        deep = [deep]
    with pytest.raises(DecodeError) as e:
        codec.decode(codec.encode(deep), Limits(max_depth=8))
    assert e.value.code == "too_deep"
    with pytest.raises(DecodeError):
        codec.decode(b"\x91" * 200_000 + b"\x01")


def test_encode_refuses_values_without_canonical_form() -> None:
    for bad in (1.0, {1: 2}, 2**64, -(2**63) - 1, object()):
        with pytest.raises(DecodeError):
            codec.encode(bad)


def test_domain_hash_and_key_id() -> None:
    import hashlib

    assert H(TAG_EVENT, b"abc") == hashlib.sha256(b"lambtrace/event/v1\x00abc").digest()
    pub = bytes(range(32))
    assert key_id("ed25519", pub) == H(TAG_KEY, b"ed25519\x00" + pub)[:16].hex()
    assert len(key_id("ed25519", pub)) == 32
