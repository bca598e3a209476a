"""Field formats refuse look-alikes (a trailing newline is not an id)."""

from __future__ import annotations

import pytest

from ledger.errors import Rejected
from ledger.events import KINDS
from ledger.schema import check


@pytest.mark.parametrize("tag", ["315252300000001\n", "31525230000000", "415252300000001", "315299900000001"])
def test_bad_ear_tags(tag: str) -> None:
    with pytest.raises(Rejected) as e:
        check(KINDS["custody.receive"].body | {}, {"shipment": "ok"})  # a valid body passes
        check(KINDS["lamb.slaughter"].body, {"tag": tag, "carcass": "c", "carcass_mass_g": 1, "quarantine_cert": "q",
                                             "price_fen_per_kg": 1, "market_price_fen_per_kg": 1,
                                             "date": "2026-10-01"})
    assert e.value.code == "bad_field"


@pytest.mark.parametrize("ident", ["l-0001\n", "-lead", "", "x" * 65, "sp ace", "中文"])
def test_bad_ids(ident: str) -> None:
    with pytest.raises(Rejected) as e:
        check(KINDS["custody.receive"].body, {"shipment": ident})
    assert e.value.code == "bad_field"
