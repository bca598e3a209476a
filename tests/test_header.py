"""A block header parses from exactly one encoding (DESIGN §5): every field typed and sized,
``state_root`` either absent or 32 bytes."""

from __future__ import annotations

from typing import Any

import pytest

from ledger import codec
from ledger.blocks.header import Header
from ledger.errors import Rejected


def _header(state_root: bytes | None) -> Header:
    return Header(chain="xilingol-test", height=7, time=1_700_000_000_000, prev=b"\x01" * 32,
                  log_size=120, log_root=b"\x02" * 32, validators=b"\x03" * 32, proposer="league",
                  state_root=state_root)


@pytest.mark.parametrize("state_root", [None, b"\x04" * 32])
def test_a_header_survives_its_encoding(state_root: bytes | None) -> None:
    h = _header(state_root)
    data = h.encode()
    again = Header.decode(data)
    assert again == h and again.encode() == data and again.hash == h.hash
    assert ("state_root" in codec.decode(data)) is (state_root is not None)


@pytest.mark.parametrize("change", [
    {"state_root": None},           # an explicit nil: the same header as without the field
    {"state_root": b"\x04" * 31},
    {"state_root": "04" * 32},
    {"height": -1}, {"height": 2**63}, {"height": True},
    {"prev": b"\x01" * 33}, {"log_root": None},
    {"proposer": b"league"}, {"chain": 1}, {"extra": 1},
])
def test_a_header_with_a_field_out_of_shape_is_refused(change: dict[str, Any]) -> None:
    d = {**_header(None).to_dict(), **change}
    with pytest.raises(Rejected) as exc:
        Header.from_dict(d)
    assert exc.value.code == "bad_header"
    with pytest.raises(Rejected) as exc:  # the same, arriving as bytes
        Header.decode(codec.encode(d))
    assert exc.value.code == "bad_header"


@pytest.mark.parametrize("change", [{"time": 1.5}, {"validators": bytearray(32)}])
def test_a_header_value_no_decoder_yields_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(Rejected):
        Header.from_dict({**_header(None).to_dict(), **change})


def test_a_header_missing_a_field_is_refused() -> None:
    for k in _header(None).to_dict():
        d = _header(None).to_dict()
        del d[k]
        with pytest.raises(Rejected):
            Header.from_dict(d)
