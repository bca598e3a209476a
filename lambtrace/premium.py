"""The traced-lamb premium audit (issue 6 item 4, DESIGN §1).

Plants buy traced lambs at, in principle, 1 yuan (100 fen) per kg of carcass above
the market price; every ``lamb.slaughter`` records ``price_fen_per_kg``,
``market_price_fen_per_kg`` and ``carcass_mass_g``.  For each slaughtered lamb:

* premium due  = 100 fen/kg x carcass kg
* premium paid = (price - market) fen/kg x carcass kg (negative when below market)
* shortfall    = max(0, due - paid): one lamb paid above the premium does not hide
  another paid below it.

Rows are summed per plant, per cooperative and per herder pseudonym (a herder id is
issued by its cooperative, so a herder row is keyed by cooperative *and* herder).  Money
is summed exactly in milli-fen (fen/kg x g) and rounded to whole fen once per row,
half away from zero.

Pure: :class:`PremiumAudit` folds committed events in log order (it learns each lamb's
cooperative and herder from its ``lamb.tag`` and the tagging actor's enrolment);
reading the chain is the caller's job.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from .epcis import Committed

PREMIUM_DUE_FEN_PER_KG = 100

CSV_COLUMNS = (
    "scope", "id", "cooperative", "lambs", "carcass_mass_g", "carcass_kg", "paid_fen", "market_value_fen",
    "avg_price_fen_per_kg", "avg_market_price_fen_per_kg", "premium_paid_fen", "premium_due_fen",
    "shortfall_fen", "lambs_short",
)


def _fen(milli_fen: int) -> int:
    """Milli-fen to fen, rounded half away from zero."""
    q, r = divmod(abs(milli_fen), 1000)
    q += 1 if r >= 500 else 0
    return q if milli_fen >= 0 else -q


@dataclass
class PremiumRow:
    """Sums for one plant, cooperative or herder (amounts in milli-fen until reported)."""

    scope: str
    id: str
    cooperative: str = ""
    lambs: int = 0
    carcass_mass_g: int = 0
    paid_mfen: int = 0
    market_mfen: int = 0
    premium_paid_mfen: int = 0
    premium_due_mfen: int = 0
    shortfall_mfen: int = 0
    lambs_short: int = 0

    def add(self, mass_g: int, price: int, market: int) -> None:
        due = PREMIUM_DUE_FEN_PER_KG * mass_g
        paid = (price - market) * mass_g
        self.lambs += 1
        self.carcass_mass_g += mass_g
        self.paid_mfen += price * mass_g
        self.market_mfen += market * mass_g
        self.premium_paid_mfen += paid
        self.premium_due_mfen += due
        if paid < due:
            self.shortfall_mfen += due - paid
            self.lambs_short += 1

    def to_dict(self) -> dict[str, Any]:
        """The reported row: whole fen, kg to the gram, prices per kg weighted by mass."""
        kg = self.carcass_mass_g
        return {
            "scope": self.scope,
            "id": self.id,
            "cooperative": self.cooperative,
            "lambs": self.lambs,
            "carcass_mass_g": self.carcass_mass_g,
            "carcass_kg": round(self.carcass_mass_g / 1000, 3),
            "paid_fen": _fen(self.paid_mfen),
            "market_value_fen": _fen(self.market_mfen),
            "avg_price_fen_per_kg": round(self.paid_mfen / kg, 2) if kg else None,
            "avg_market_price_fen_per_kg": round(self.market_mfen / kg, 2) if kg else None,
            "premium_paid_fen": _fen(self.premium_paid_mfen),
            "premium_due_fen": _fen(self.premium_due_mfen),
            "shortfall_fen": _fen(self.shortfall_mfen),
            "lambs_short": self.lambs_short,
        }


class PremiumAudit:
    """Fold committed events (from height 1, in log order) into premium rows."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}
        self._role: dict[str, str] = {}
        self._lamb: dict[str, tuple[str, str]] = {}
        """tag -> (cooperative, herder pseudonym)"""
        self.plants: dict[str, PremiumRow] = {}
        self.cooperatives: dict[str, PremiumRow] = {}
        self.herders: dict[tuple[str, str], PremiumRow] = {}
        self.total = PremiumRow("total", "all")
        self.height = 0

    def feed(self, c: Committed) -> None:
        ev = c.event
        b = ev.body
        self.height = max(self.height, c.height)
        if ev.kind == "actor.enroll":
            self._role[b["id"]] = b["role"]
            if b.get("parent"):
                self._parent[b["id"]] = b["parent"]
        elif ev.kind == "lamb.tag":
            coop = self._parent.get(ev.actor, ev.actor) if self._role.get(ev.actor) == "herder_agent" else ev.actor
            self._lamb[b["tag"]] = (coop, b["herder"])
        elif ev.kind == "lamb.slaughter":
            coop, herder = self._lamb.get(b["tag"], ("", ""))
            args = (b["carcass_mass_g"], b["price_fen_per_kg"], b["market_price_fen_per_kg"])
            rows = [
                self.plants.setdefault(ev.actor, PremiumRow("plant", ev.actor)),
                self.cooperatives.setdefault(coop, PremiumRow("cooperative", coop, coop)),
                self.herders.setdefault((coop, herder), PremiumRow("herder", herder, coop)),
                self.total,
            ]
            for row in rows:
                row.add(*args)

    def report(self) -> dict[str, Any]:
        """The JSON report: rows sorted by id, with totals."""
        return {
            "premium_due_fen_per_kg": PREMIUM_DUE_FEN_PER_KG,
            "height": self.height,
            "plants": [r.to_dict() for _k, r in sorted(self.plants.items())],
            "cooperatives": [r.to_dict() for _k, r in sorted(self.cooperatives.items())],
            "herders": [r.to_dict() for _k, r in sorted(self.herders.items())],
            "total": self.total.to_dict(),
        }


def premium_report(committed: Iterable[Committed]) -> dict[str, Any]:
    """:meth:`PremiumAudit.report` over ``committed`` (every committed event, in order)."""
    audit = PremiumAudit()
    for c in committed:
        audit.feed(c)
    return audit.report()


def write_csv(fp: IO[str], report: dict[str, Any]) -> int:
    """One row per plant, cooperative and herder, then the total; returns the row count."""
    w = csv.DictWriter(fp, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    rows = [*report["plants"], *report["cooperatives"], *report["herders"], report["total"]]
    for r in rows:
        w.writerow({k: ("" if r[k] is None else r[k]) for k in CSV_COLUMNS})
    return len(rows)


def csv_text(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    write_csv(buf, report)
    return buf.getvalue()
