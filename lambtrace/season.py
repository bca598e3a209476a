"""A seeded, realistic season of signed events for the demo, tests and benchmarks.

The story follows the league's 2018–2019 pilot (DESIGN §1).  The league trace office
enrols a cast — one office per pilot banner, one to three herders' cooperatives per
banner, herder agents with handheld terminals under each cooperative, up to 17
slaughter plants and a regulator — and files ear-tag ranges to the cooperatives.  Herder
agents tag the spring lambs of the households they serve (pseudonymous herder ids, real
sumu names, local breeds).  In late summer and autumn lambs travel by truck to the
cooperative or straight to a plant; plants slaughter about seven in ten of them, record
the price paid against the market price (the 1 yuan/kg premium; a few plants sometimes
pay less, so an audit has something to find) and pack labelled cuts whose scratch-off
check codes are committed to on the ledger.

Everything is pure: no network, no clock, no OS randomness.  Every choice comes from
the ``random.Random`` passed in, so a seed always gives the same cast and the same
events (ECDSA signature bytes differ run to run, event ids do not: ids exclude
signatures).  Keys derived from that ``Random`` are predictable from the seed — fine
for a demo, never for a real deployment; pass ``keys=`` to :func:`make_cast` to use
other keys (fresh ones, or key files saved by an earlier run).

Two calendars are kept apart.  *Business dates* (``born``, slaughter ``date``,
``packed``) lie in the season year's spring and autumn.  *Event times* (envelope
``time``) are compressed into ``[start_ms, start_ms + span_ms]`` (two days by default),
strictly increasing where the span allows, so that a chain started "a few days ago"
accepts every event: none is older than the lateness window nor in the future.

Identifiers never collide between a season and a later one on the same chain that
starts at ``first_lamb = season.next_lamb``: every lamb has a global index ``g``; chip
ids, shipment, carcass and label ids are functions of ``g``; and the ear-tag serials of
lambs ``[f, f + n)`` lie, in every banner, inside ``[serial_base(f), serial_base(f + n))``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.events import envelope, sign
from ledger.schema import COUNTIES
from ledger.sigs import P256_ORDER
from signer import Signer
from signer.software import SoftwareSigner, public_key_record

DAY_MS = 86_400_000
DEFAULT_SPAN_MS = 2 * DAY_MS
LEAGUE = "152500"
TRACE_OFFICE_ID = "league-trace-office"

KeySource = Callable[[str, str], Signer]
"""``(member id, alg) -> signer``: where a cast member's key comes from."""

# -- domain tables ------------------------------------------------------------------------

PILOT_BANNERS: tuple[str, ...] = ("152523", "152524", "152526", "152522", "152525", "152502", "152529")
"""The seven banners/cities of the 2018 pilot, in the order the pilot lists them."""

_BANNER_WEIGHTS: dict[str, int] = {
    "152523": 20,  # 苏尼特左旗
    "152524": 16,  # 苏尼特右旗
    "152526": 19,  # 西乌珠穆沁旗
    "152522": 12,  # 阿巴嘎旗
    "152525": 20,  # 东乌珠穆沁旗
    "152502": 5,  # 锡林浩特市
    "152529": 8,  # 正镶白旗
}
"""Relative share of the season's lambs per banner (the big pastoral banners lead)."""

SUMU: dict[str, tuple[str, ...]] = {
    "152523": ("满都拉图镇", "巴彦淖尔镇", "查干敖包镇", "洪格尔苏木", "达日罕乌拉苏木", "赛罕高毕苏木"),
    "152524": ("赛汉塔拉镇", "朱日和镇", "乌日根塔拉镇", "桑宝拉格苏木", "额仁淖尔苏木", "赛罕乌力吉苏木"),
    "152526": ("巴拉嘎尔高勒镇", "巴彦花镇", "浩勒图高勒镇", "高日罕镇", "吉仁高勒镇", "巴彦胡舒苏木"),
    "152522": ("别力古台镇", "洪格尔高勒镇", "查干淖尔镇", "伊和高勒苏木", "那仁宝拉格苏木", "吉尔嘎郎图苏木"),
    "152525": ("乌里雅斯太镇", "道特淖尔镇", "嘎达布其镇", "满都胡宝拉格镇", "额吉淖尔镇", "嘎海乐苏木"),
    "152502": ("阿尔善宝拉格镇", "朝克乌拉苏木", "宝力根苏木", "白音锡勒牧场", "毛登牧场"),
    "152529": ("明安图镇", "星耀镇", "伊和淖尔苏木", "乌兰察布苏木", "宝力根陶海苏木"),
}
"""Sumu (townships) and state pastures of each pilot banner."""

BREEDS: dict[str, tuple[tuple[str, int], ...]] = {
    "152523": (("苏尼特羊", 90), ("乌珠穆沁羊", 6), ("杜泊杂交羊", 4)),
    "152524": (("苏尼特羊", 90), ("察哈尔羊", 5), ("杜泊杂交羊", 5)),
    "152526": (("乌珠穆沁羊", 94), ("苏尼特羊", 3), ("杜泊杂交羊", 3)),
    "152522": (("乌珠穆沁羊", 60), ("阿巴嘎黑头羊", 35), ("苏尼特羊", 5)),
    "152525": (("乌珠穆沁羊", 95), ("杜泊杂交羊", 5)),
    "152502": (("乌珠穆沁羊", 55), ("苏尼特羊", 35), ("杜泊杂交羊", 10)),
    "152529": (("察哈尔羊", 80), ("苏尼特羊", 10), ("杜泊杂交羊", 10)),
}
"""Local breeds with their rough shares per banner."""

CUTS: dict[str, tuple[int, int]] = {
    "羊腿": (2200, 3600),
    "羊排": (1400, 2600),
    "羊肩": (1300, 2400),
    "羊蝎子": (1800, 3200),
    "羊腱子": (400, 900),
    "羊里脊": (250, 500),
}
"""Retail cuts and the net mass range (g) of one pack from a 20 kg carcass."""

CUT_NAMES_EN: dict[str, str] = {
    "羊腿": "leg",
    "羊排": "rack",
    "羊肩": "shoulder",
    "羊蝎子": "spine",
    "羊腱子": "shank",
    "羊里脊": "tenderloin",
}

_CUT_POOL: tuple[str, ...] = ("羊腿", "羊腿", "羊排", "羊肩", "羊蝎子", "羊腱子", "羊里脊")
"""A carcass has two legs; every other cut is packed once."""

_COOP_WORDS = (
    "额尔敦", "巴彦宝力格", "乌兰图雅", "赛罕", "宝力根", "呼和", "阿拉坦", "查干", "那仁",
    "乌力吉", "伊和", "吉日嘎朗", "白音", "塔拉", "朝鲁", "苏力德", "图门", "宝音",
)  # fmt: skip
_PLANT_BRANDS = (
    "牧源", "绿原", "白音塔拉", "金草原", "赛罕", "呼和", "查干诺尔", "宝日", "那达慕", "天骄",
    "乌兰", "巴彦", "塔林", "朝鲁", "苏力德", "额吉", "图雅",
)  # fmt: skip
_PLANT_SUFFIXES = ("肉食品有限公司", "羊业有限公司", "清真肉类加工有限公司", "食品有限责任公司")

_PLANT_SLOTS: tuple[str, ...] = (
    "152502", "152523", "152526", "152525", "152524", "152522", "152529", "152502", "152525",
    "152526", "152523", "152502", "152524", "152522", "152526", "152525", "152502",
)  # fmt: skip
"""Where the 17 plants stand, in the order a growing demo adds them (two or three
plants already cover the big banners; 锡林浩特市, the league seat, has the most)."""

MAX_PLANTS = len(_PLANT_SLOTS)
PREMIUM_FEN_PER_KG = 100
"""The pilot's premium: 1 yuan per kg of carcass above the market price."""

TAG_SERIAL_MAX = 99_999_999
_SPARE_DIVISOR = 10
"""Each cooperative's tag range holds its lambs plus one tag in ten spare."""

_MASK50 = (1 << 50) - 1
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_CHIP_MUL = 7_391_827_461_233  # odd and not a multiple of 5: a bijection mod 10**12
_CHIP_ADD = 284_019_556_731


# -- the cast -----------------------------------------------------------------------------


@dataclass
class CastMember:
    """One enrolled actor of the demo, with its key (software, or an HSM key for plants)."""

    id: str
    role: str
    banner: str
    signer: Signer
    name: str = ""
    parent: str | None = None
    sumu: str = ""
    """A herder agent's home sumu (where most households it serves graze)."""

    def enroll_body(self) -> dict[str, Any]:
        """The ``actor.enroll`` body for this member."""
        body: dict[str, Any] = {
            "id": self.id,
            "role": self.role,
            "banner": self.banner,
            "name": self.name,
            "keys": [public_key_record(self.signer)],
        }
        if self.parent is not None:
            body["parent"] = self.parent
        return body


@dataclass
class Cast:
    """The trace office and every actor it enrols, in enrolment order."""

    trace_office: CastMember
    members: list[CastMember]

    def by_role(self, role: str) -> list[CastMember]:
        """Members with ``role`` in enrolment order (the trace office for ``trace_office``)."""
        everyone = [self.trace_office, *self.members]
        return [m for m in everyone if m.role == role]

    def member(self, member_id: str) -> CastMember:
        """The member with ``member_id``; raises ``KeyError``."""
        for m in [self.trace_office, *self.members]:
            if m.id == member_id:
                return m
        raise KeyError(member_id)

    def agents_of(self, coop_id: str) -> list[CastMember]:
        return [m for m in self.members if m.role == "herder_agent" and m.parent == coop_id]


def _derive_signer(rng: random.Random, member_id: str, alg: str, keys: KeySource | None) -> Signer:
    """A key for ``member_id``: from ``keys`` if given, else derived from ``rng``.

    The 32 bytes are drawn from ``rng`` either way, so the rest of the cast does not
    depend on where the keys come from.
    """
    raw = rng.randbytes(32)
    if keys is not None:
        return keys(member_id, alg)
    if alg == "ecdsa-p256":
        scalar = int.from_bytes(raw, "big") % (P256_ORDER - 1) + 1
        raw = scalar.to_bytes(32, "big")
    return SoftwareSigner.from_private_bytes(alg, raw)


def make_trace_office(rng: random.Random, *, keys: KeySource | None = None) -> CastMember:
    """The league trace office (``league-trace-office``, banner 152500, Ed25519)."""
    return CastMember(
        id=TRACE_OFFICE_ID,
        role="trace_office",
        banner=LEAGUE,
        signer=_derive_signer(rng, TRACE_OFFICE_ID, "ed25519", keys),
        name="锡林郭勒盟农畜产品质量安全追溯中心",
    )


def plant_count(lambs: int) -> int:
    """How many plants a season of ``lambs`` lambs uses: 2 for a small demo, up to 17."""
    return max(2, min(MAX_PLANTS, 2 + lambs // 6000))


def make_cast(
    rng: random.Random, trace_office: CastMember, *, lambs: int, keys: KeySource | None = None
) -> Cast:
    """The season's actors, scaled to ``lambs``; the same ``rng`` state gives the same cast.

    Per pilot banner: its office (``office-<banner>``), one to three cooperatives
    (``coop-<banner>-NN``) each with herder agents (``agent-<banner>-NN-MM``, more of them
    for a bigger season); then the plants (``plant-<banner>-NN``, ECDSA P-256 keys, as
    they will move to HSMs) and the league regulator.  Everyone else holds Ed25519 keys.
    """
    if lambs < 0:
        raise ValueError("lambs must not be negative")
    members: list[CastMember] = []
    hi_agents = max(2, min(12, 1 + lambs // 5000))
    lo_agents = max(1, hi_agents // 2)
    coop_words = list(_COOP_WORDS)
    rng.shuffle(coop_words)
    for b in PILOT_BANNERS:
        bname = COUNTIES[b]
        oid = f"office-{b}"
        members.append(
            CastMember(oid, "banner_office", b, _derive_signer(rng, oid, "ed25519", keys), name=f"{bname}农牧局")
        )
        n_coops = rng.randint(1, 3) if lambs >= 1000 else rng.randint(1, 2)
        for c in range(1, n_coops + 1):
            cid = f"coop-{b}-{c:02d}"
            coop_sumu = rng.choice(SUMU[b])
            word = coop_words.pop() if coop_words else f"第{c}"
            coop = CastMember(
                cid,
                "cooperative",
                b,
                _derive_signer(rng, cid, "ed25519", keys),
                name=f"{bname}{coop_sumu}{word}牧民专业合作社",
                sumu=coop_sumu,
            )
            members.append(coop)
            for a in range(1, rng.randint(lo_agents, hi_agents) + 1):
                aid = f"agent-{b}-{c:02d}-{a:02d}"
                sumu = coop_sumu if rng.random() < 0.5 else rng.choice(SUMU[b])
                members.append(
                    CastMember(
                        aid,
                        "herder_agent",
                        b,
                        _derive_signer(rng, aid, "ed25519", keys),
                        name=f"{bname}{word}合作社{sumu}服务点{a:02d}",
                        parent=cid,
                        sumu=sumu,
                    )
                )
    brands = list(_PLANT_BRANDS)
    rng.shuffle(brands)
    per_banner: dict[str, int] = {}
    for b in _PLANT_SLOTS[: plant_count(lambs)]:
        per_banner[b] = per_banner.get(b, 0) + 1
        pid = f"plant-{b}-{per_banner[b]:02d}"
        name = f"{COUNTIES[b]}{brands.pop()}{rng.choice(_PLANT_SUFFIXES)}"
        members.append(CastMember(pid, "plant", b, _derive_signer(rng, pid, "ecdsa-p256", keys), name=name))
    rid = f"regulator-{LEAGUE}"
    members.append(
        CastMember(rid, "regulator", LEAGUE, _derive_signer(rng, rid, "ed25519", keys), name="锡林郭勒盟市场监督管理局")
    )
    return Cast(trace_office, members)


# -- identifiers ----------------------------------------------------------------------------


def serial_base(first_lamb: int) -> int:
    """First ear-tag serial, in every banner, of a season whose first lamb is ``first_lamb``.

    A season of ``n`` lambs issues at most ``n + n // 10`` serials per banner, which is
    never more than ``serial_base(f + n) - serial_base(f)``.
    """
    return 1 + (first_lamb * 5) // 4


def chip_id(g: int) -> str:
    """ISO 11784 id (``156`` + 12 digits) of lamb ``g``: unique per ``g``, scattered like a
    manufacturer's numbering."""
    return f"156{(_CHIP_MUL * g + _CHIP_ADD) % 10**12:012d}"


def _mix50(x: int) -> int:
    """A bijection of 50-bit integers that scatters consecutive inputs."""
    x &= _MASK50
    x = (x * 0x2545F4914F6CDD1D) & _MASK50
    x ^= x >> 27
    x = (x * 0x1B873593A5C3D67) & _MASK50
    x ^= x >> 23
    x = (x * 0x3C6EF372FE94F82B) & _MASK50
    x ^= x >> 25
    return x


def label_id(chain_key: int, n: int) -> str:
    """Label id for label number ``n`` on a chain: ``l`` + 10 Crockford base32 characters.

    Ids are lower case because actor/label ids on the ledger are (``ledger.schema.ID_RE``).
    Distinct ``n`` give distinct ids.
    """
    x = _mix50((_mix50(n) + chain_key) & _MASK50)
    return "l" + "".join(_CROCKFORD[(x >> (5 * i)) & 31] for i in range(9, -1, -1))


CHECK_TAG = b"lambtrace/check/v1"
CHECK_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford base32 without I, L, O, U: what is printed under the scratch-off."""
CHECK_LEN = 12
"""12 symbols of 32 = 60 bits: offline brute force of a public commitment is out of reach."""


def check_commitment(label: str, code: str) -> bytes:
    """``sha256("lambtrace/check/v1" 0x00 label 0x00 code)``: what ``label.issue`` carries
    of a label's scratch-off check code (``code`` in canonical form, 12 upper-case
    symbols of :data:`CHECK_ALPHABET`).  No secret salt: the label id separates labels and
    the code's 60 bits make guessing from the public commitment hopeless (docs/adr/0008)."""
    return hashlib.sha256(CHECK_TAG + b"\x00" + label.encode() + b"\x00" + code.encode()).digest()


def new_check_code(rng: random.Random) -> str:
    """A fresh check code in canonical form (print it with :func:`format_check_code`)."""
    return "".join(CHECK_ALPHABET[rng.randrange(32)] for _ in range(CHECK_LEN))


def format_check_code(code: str) -> str:
    """``ABCD-EFGH-JKMN``: the printed form, three groups of four."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def default_year(start_ms: int) -> int:
    """The season year for a chain starting at ``start_ms``: the last year whose season
    (lambs born March–May, slaughtered by November) is over, so no business date lies in
    the future."""
    d = dt.datetime.fromtimestamp(start_ms / 1000, tz=dt.UTC).date()
    return d.year if d.month == 12 else d.year - 1


# -- the plan --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Lamb:
    g: int
    tag: str
    chip: str | None
    coop: CastMember
    tagger: CastMember
    herder: str
    sumu: str
    born: dt.date
    breed: str
    sex: str
    hops: list[CastMember]
    slaughter: bool
    label: bool
    at: dt.date | None = None  # arrival date at the current holder


@dataclass(slots=True)
class _Shipment:
    id: str
    sender: CastMember
    to: CastMember
    lambs: list[str]
    shipped: dt.date
    arrives: dt.date
    hop: int


@dataclass(slots=True)
class _Kill:
    lamb: _Lamb
    plant: CastMember
    carcass: str
    carcass_mass_g: int
    cert: str
    price: int
    market: int
    date: dt.date


@dataclass(slots=True)
class _Pack:
    plant: CastMember
    carcass: str
    packed: dt.date
    labels: list[dict[str, Any]]


@dataclass
class _Plan:
    """Everything a batch of lambs goes through, before any event is signed."""

    issues: list[tuple[CastMember, str, int]] = field(default_factory=list)  # (coop, first tag, count)
    lambs: list[_Lamb] = field(default_factory=list)
    shipments: list[_Shipment] = field(default_factory=list)
    kills: list[_Kill] = field(default_factory=list)
    packs: list[_Pack] = field(default_factory=list)


Spec = tuple[CastMember, str, dict[str, Any]]
"""An unsigned event: (actor, kind, body)."""


@dataclass(frozen=True)
class DishonestAttempt:
    """A deliberately dishonest signed event, the code the rules refuse it with, and the
    alert kind (``GET /v1/alerts``) it shows up as."""

    event: dict[str, Any]
    code: str
    alert: str
    story: str


class Season:
    """Generates the season's signed events in an order that respects dependencies.

    Everything is planned in ``__init__`` (so ``tags``, ``labels``, ``check_codes`` are
    known from the start); :meth:`batches` signs the events lazily, phase by phase:
    enrolment, tag issue, tagging, custody, slaughter, labels.  Calling it again yields
    the same envelopes.  Raises ``ValueError`` when the lambs cannot fit the serial space
    or ``tag_quotas`` (ear tags each banner may still be issued this year).

    ``year`` defaults to :func:`default_year` of ``start_ms`` (the last season that is
    over), not simply the calendar year, so no birth, slaughter or pack date lies in the
    future.  ``first_lamb`` > 0 continues an earlier season of the same cast on the same
    chain (no enrolment unless ``enroll=True``; fresh serials, chips and ids).
    """

    PHASE_SHARES = (0.02, 0.02, 0.36, 0.30, 0.15, 0.15)
    """Share of the span each phase's event times take."""

    def __init__(
        self,
        cast: Cast,
        *,
        chain: str,
        start_ms: int,
        lambs: int,
        rng: random.Random,
        year: int | None = None,
        first_lamb: int = 0,
        span_ms: int = DEFAULT_SPAN_MS,
        enroll: bool | None = None,
        tag_quotas: Mapping[str, int] | None = None,
        slaughter_share: tuple[float, float] = (0.66, 0.74),
    ) -> None:
        if lambs < 0 or first_lamb < 0 or start_ms < 0 or span_ms < 0:
            raise ValueError("lambs, first_lamb, start_ms and span_ms must not be negative")
        self.cast = cast
        self.chain = chain
        self.start_ms = start_ms
        self.span_ms = span_ms
        self.lamb_count = lambs
        self.rng = rng
        self.year = year if year is not None else default_year(start_ms)
        self.first_lamb = first_lamb
        self.next_lamb = first_lamb
        """Global index of the next lamb; a later season on this chain starts here."""
        self.enroll = first_lamb == 0 if enroll is None else enroll
        self.quota_left: dict[str, int] | None = dict(tag_quotas) if tag_quotas is not None else None
        self.tags: list[str] = []
        self.labels: list[str] = []
        self.check_codes: dict[str, tuple[str, bytes]] = {}
        """label id -> (scratch-off check code in canonical form, its commitment on the ledger)."""
        self.underpaid: dict[str, int] = {}
        """ear tag -> fen/kg by which the plant paid less than market + 1 yuan/kg."""
        self.issued_per_banner: dict[str, int] = {}
        self._chain_key = int.from_bytes(hashlib.sha256(b"lambtrace/demo-labels\x00" + chain.encode()).digest()[:8])
        self._coops = cast.by_role("cooperative")
        self._plants = cast.by_role("plant")
        if not self._coops or not self._plants:
            raise ValueError("the cast needs cooperatives and plants")
        if serial_base(first_lamb + lambs) - 1 > TAG_SERIAL_MAX:
            raise ValueError("the season runs past the last ear-tag serial")
        self._market = self._market_prices()
        n_short = max(1, len(self._plants) // 6)
        self._stingy = {p.id for p in rng.sample(self._plants, n_short)}
        self._coop_plants = {c.id: self._plants_for(c) for c in self._coops}
        self._households: dict[str, list[tuple[str, str]]] = {}
        self._last_time = start_ms - 1
        """Time of the last event generated; the trickle (:meth:`extra_lambs`) follows it."""
        self._plan = self._plan_lambs(self._season_counts(lambs), slaughter_share)

    # -- planning ----------------------------------------------------------------------------
    def _market_prices(self) -> dict[dt.date, int]:
        """Reference market price (fen/kg of carcass) per day, July to December: a random
        walk between 60 and 70 yuan/kg."""
        out: dict[dt.date, int] = {}
        p = self.rng.randint(6250, 6550)
        d = dt.date(self.year, 7, 1)
        while d.year == self.year:
            p += self.rng.randint(-20, 20) + (6400 - p) // 40
            p = max(6000, min(7000, p))
            out[d] = p
            d += dt.timedelta(days=1)
        return out

    def _plants_for(self, coop: CastMember) -> list[CastMember]:
        """One or two plants a cooperative sells to: its own banner's first, if any."""
        local = [p for p in self._plants if p.banner == coop.banner]
        other = [p for p in self._plants if p.banner != coop.banner]
        self.rng.shuffle(local)
        self.rng.shuffle(other)
        ranked = local + other
        return ranked[: self.rng.randint(1, 2)]

    def _season_counts(self, lambs: int) -> dict[str, int]:
        """Lambs per cooperative: banners by their weight, cooperatives by chance."""
        weights: list[float] = []
        for c in self._coops:
            n_in_banner = sum(1 for x in self._coops if x.banner == c.banner)
            weights.append(_BANNER_WEIGHTS.get(c.banner, 5) / n_in_banner * self.rng.uniform(0.6, 1.4))
        return _split(self.rng, lambs, [c.id for c in self._coops], weights)

    def _household(self, tagger: CastMember) -> list[tuple[str, str]]:
        """The (pseudonymous herder id, sumu) households a tagger serves, made on first use."""
        homes = self._households.get(tagger.id)
        if homes is None:
            n = self.rng.randint(2, 6)
            homes = []
            for _ in range(n):
                sumu = tagger.sumu if tagger.sumu and self.rng.random() < 0.75 else self.rng.choice(SUMU[tagger.banner])
                homes.append((f"h-{self.rng.getrandbits(32):08x}", sumu))
            self._households[tagger.id] = homes
        return homes

    def _plan_lambs(self, per_coop: Mapping[str, int], slaughter_share: tuple[float, float] | None) -> _Plan:
        """Plan ``sum(per_coop)`` new lambs from global index ``next_lamb`` on.

        ``slaughter_share=None`` sends every lamb through to a label (the trickle);
        otherwise that share (drawn from the range) is slaughtered in the season.
        """
        rng = self.rng
        plan = _Plan()
        g0 = self.next_lamb
        n_total = sum(per_coop.values())
        base = serial_base(g0)
        next_serial = {b: base for b in PILOT_BANNERS}
        # 1. ear-tag ranges, one per cooperative with lambs (split at 100,000 tags)
        ranges: dict[str, tuple[str, int]] = {}
        for coop in self._coops:
            n = per_coop.get(coop.id, 0)
            if n == 0:
                continue
            want = n + n // _SPARE_DIVISOR
            if self.quota_left is not None:
                left = self.quota_left.get(coop.banner)
                if left is not None:
                    if left < n:
                        raise ValueError(f"banner {coop.banner} has {left} ear tags of quota left, needs {n}")
                    want = min(want, left)
                    self.quota_left[coop.banner] = left - want
            s = next_serial.setdefault(coop.banner, base)
            next_serial[coop.banner] = s + want
            ranges[coop.id] = (coop.banner, s)
            self.issued_per_banner[coop.banner] = self.issued_per_banner.get(coop.banner, 0) + want
            done = 0
            while done < want:
                count = min(100_000, want - done)
                plan.issues.append((coop, f"3{coop.banner}{s + done:08d}", count))
                done += count
        # 2. lambs: who tags them, whose they are, where they go
        g = g0
        slaughtered: set[int] = set()
        if slaughter_share is None:
            slaughtered = set(range(g0, g0 + n_total))
        elif n_total:
            k = round(n_total * rng.uniform(*slaughter_share))
            slaughtered = {g0 + i for i in rng.sample(range(n_total), k)}
        for coop in self._coops:
            n = per_coop.get(coop.id, 0)
            if n == 0:
                continue
            banner, serial = ranges[coop.id]
            agents = self.cast.agents_of(coop.id)
            taggers = [coop, *agents] if agents else [coop]
            tw = [0.4 if t is coop else rng.uniform(0.5, 1.5) for t in taggers] if agents else [1.0]
            split = _split(rng, n, [t.id for t in taggers], tw)
            plants = self._coop_plants[coop.id]
            breeds = BREEDS.get(banner, (("乌珠穆沁羊", 1),))
            for tagger in taggers:
                homes = self._household(tagger) if split[tagger.id] else []
                for _ in range(split[tagger.id]):
                    herder, sumu = rng.choice(homes)
                    born = dt.date(self.year, 3, 1) + dt.timedelta(days=_spring_day(rng))
                    slaughter = g in slaughtered
                    fate = "plant" if slaughter else rng.choices(("herd", "coop", "plant"), (70, 20, 10))[0]
                    plant = rng.choice(plants)
                    hops: list[CastMember] = []
                    if fate == "plant":
                        via_coop = tagger is not coop and rng.random() < 0.6
                        hops = [coop, plant] if via_coop else [plant]
                    elif fate == "coop" and tagger is not coop:
                        hops = [coop]
                    lamb = _Lamb(
                        g=g,
                        tag=f"3{banner}{serial:08d}",
                        chip=chip_id(g) if rng.random() < 0.97 else None,
                        coop=coop,
                        tagger=tagger,
                        herder=herder,
                        sumu=sumu,
                        born=born,
                        breed=rng.choices([b for b, _ in breeds], [w for _, w in breeds])[0],
                        sex="male" if rng.random() < 0.55 else "female",
                        hops=hops,
                        slaughter=slaughter,
                        label=slaughter and (slaughter_share is None or rng.random() < 0.88),
                    )
                    plan.lambs.append(lamb)
                    serial += 1
                    g += 1
        self.next_lamb = g
        self.tags.extend(lamb.tag for lamb in plan.lambs)
        # 3. custody: trucks from taggers, then from cooperatives
        plan.shipments = self._ship(plan.lambs, 0) + self._ship(plan.lambs, 1)
        # 4. slaughter and 5. labels
        for lamb in plan.lambs:
            if lamb.slaughter:
                self._kill(plan, lamb)
        return plan

    def _ship(self, lambs: Sequence[_Lamb], hop: int) -> list[_Shipment]:
        """Group the lambs that make hop ``hop`` into trucks, by sender and destination."""
        rng = self.rng
        groups: dict[tuple[str, str], list[_Lamb]] = {}
        senders: dict[str, CastMember] = {}
        for lamb in lambs:
            if len(lamb.hops) > hop:
                sender = lamb.tagger if hop == 0 else lamb.hops[hop - 1]
                senders[sender.id] = sender
                groups.setdefault((sender.id, lamb.hops[hop].id), []).append(lamb)
        out: list[_Shipment] = []
        lo, hi = (8, 60) if hop == 0 else (40, 220)
        for (sender_id, _to), group in groups.items():
            group.sort(key=lambda x: (x.at or x.born, x.g))
            i = 0
            while i < len(group):
                truck = group[i : i + rng.randint(lo, hi)]
                i += len(truck)
                to = truck[0].hops[hop]
                if hop == 0:
                    earliest = max(x.born for x in truck) + dt.timedelta(days=75)
                    day = max(earliest, dt.date(self.year, 8, 1) + dt.timedelta(days=rng.randint(0, 85)))
                else:
                    day = max(x.at for x in truck if x.at is not None) + dt.timedelta(days=rng.randint(0, 5))
                arrives = day + dt.timedelta(days=1 if rng.random() < 0.3 else 0)
                for x in truck:
                    x.at = arrives
                out.append(
                    _Shipment(
                        id=f"shp-{self.year}-{min(x.g for x in truck):08d}-{hop + 1}",
                        sender=senders[sender_id],
                        to=to,
                        lambs=[x.tag for x in truck],
                        shipped=day,
                        arrives=arrives,
                        hop=hop,
                    )
                )
        return out

    def _kill(self, plan: _Plan, lamb: _Lamb) -> None:
        rng = self.rng
        plant = lamb.hops[-1]
        if lamb.at is None:  # pragma: no cover - every slaughtered lamb was shipped
            raise RuntimeError("a slaughtered lamb never reached its plant")
        day = lamb.at + dt.timedelta(days=rng.randint(0, 2))
        mode = 18_500 + (700 if lamb.sex == "male" else 0)
        mass = round(rng.triangular(15_000, 25_000, mode) / 10) * 10
        market = self._market.get(day, 6400)
        price = market + PREMIUM_FEN_PER_KG
        if plant.id in self._stingy and rng.random() < 0.25:
            price = market + rng.choice((0, 20, 50, 80))
            self.underpaid[lamb.tag] = market + PREMIUM_FEN_PER_KG - price
        elif rng.random() < 0.05:
            price = market + rng.choice((120, 150, 200))
        carcass = f"car-{plant.id.removeprefix('plant-')}-{self.year}-{lamb.g:08d}"
        cert = f"15{plant.banner[2:]}{day:%y%m%d}{rng.randrange(10**4):04d}"
        plan.kills.append(_Kill(lamb, plant, carcass, mass, cert, price, market, day))
        if not lamb.label:
            return
        cuts = rng.sample(_CUT_POOL, rng.randint(2, 4))
        packed = day + dt.timedelta(days=rng.randint(0, 2))
        labels: list[dict[str, Any]] = []
        total = 0
        for k, cut in enumerate(cuts):
            lo, hi = CUTS[cut]
            net = max(1, round(rng.randint(lo, hi) * mass / 20_000 / 5) * 5)
            if total + net > mass:  # pragma: no cover - the cut ranges leave a third of the carcass
                break
            total += net
            lid = label_id(self._chain_key, lamb.g * 8 + k)
            code = new_check_code(rng)
            check = check_commitment(lid, code)
            self.check_codes[lid] = (code, check)
            self.labels.append(lid)
            labels.append(
                {
                    "label": lid,
                    "cut": cut,
                    "net_mass_g": net,
                    "packed": packed.isoformat(),
                    "check": check,
                }
            )
        if len(labels) >= 3 and rng.random() < 0.1:  # packed over two days
            cut_at = rng.randint(1, len(labels) - 1)
            later = packed + dt.timedelta(days=1)
            rest = [dict(x, packed=later.isoformat()) for x in labels[cut_at:]]
            plan.packs.append(_Pack(plant, carcass, packed, labels[:cut_at]))
            plan.packs.append(_Pack(plant, carcass, later, rest))
        else:
            plan.packs.append(_Pack(plant, carcass, packed, labels))

    # -- events ------------------------------------------------------------------------------
    def _phases(self, plan: _Plan, *, enroll: bool) -> list[tuple[int, Iterator[Spec]]]:
        """The phases as (event count, unsigned events in order)."""
        office = self.cast.trace_office
        members = self.cast.members if enroll else []
        custody = _custody_order(plan.shipments)
        kills = sorted(plan.kills, key=lambda k: (k.date, k.lamb.g))
        packs = sorted(plan.packs, key=lambda p: (p.packed, p.carcass))
        return [
            (len(members), ((office, "actor.enroll", m.enroll_body()) for m in members)),
            (
                len(plan.issues),
                (
                    (office, "tags.issue", {"to": c.id, "first": first, "count": n, "year": self.year})
                    for c, first, n in plan.issues
                ),
            ),
            (len(plan.lambs), (self._tag_spec(x) for x in sorted(plan.lambs, key=lambda x: (x.born, x.g)))),
            (len(custody), iter(custody)),
            (len(kills), (self._kill_spec(k) for k in kills)),
            (
                len(packs),
                ((p.plant, "label.issue", {"carcass": p.carcass, "labels": p.labels}) for p in packs),
            ),
        ]

    def _tag_spec(self, x: _Lamb) -> Spec:
        body: dict[str, Any] = {
            "tag": x.tag,
            "herder": x.herder,
            "born": x.born.isoformat(),
            "breed": x.breed,
            "sex": x.sex,
            "sumu": x.sumu,
        }
        if x.chip is not None:
            body["chip"] = x.chip
        return (x.tagger, "lamb.tag", body)

    @staticmethod
    def _kill_spec(k: _Kill) -> Spec:
        return (
            k.plant,
            "lamb.slaughter",
            {
                "tag": k.lamb.tag,
                "carcass": k.carcass,
                "carcass_mass_g": k.carcass_mass_g,
                "quarantine_cert": k.cert,
                "price_fen_per_kg": k.price,
                "market_price_fen_per_kg": k.market,
                "date": k.date.isoformat(),
            },
        )

    def _sign(self, spec: Spec, time_ms: int) -> dict[str, Any]:
        actor, kind, body = spec
        return sign(envelope(self.chain, kind, actor.id, time_ms, body), actor.signer)

    def batches(self, max_batch: int = 500) -> Iterator[list[dict[str, Any]]]:
        """The season's signed events, at most ``max_batch`` a list, dependencies first.

        Event times are strictly increasing (non-decreasing only if the span has fewer
        milliseconds than events) and lie in ``[start_ms, start_ms + span_ms]``.
        """
        if max_batch < 1:
            raise ValueError("max_batch must be positive")
        phases = self._phases(self._plan, enroll=self.enroll)
        end = self.start_ms + self.span_ms
        last = self.start_ms - 1
        batch: list[dict[str, Any]] = []
        lo = 0.0
        for share, (count, specs) in zip(self.PHASE_SHARES, phases):
            p_start = self.start_ms + int(self.span_ms * lo)
            lo += share
            p_len = max(0, int(self.span_ms * min(lo, 1.0)) + self.start_ms - p_start)
            for k, spec in enumerate(specs):
                t = p_start + (k * p_len) // max(1, count)
                t = min(end, max(t, last + 1))
                last = t
                batch.append(self._sign(spec, t))
                if len(batch) >= max_batch:
                    yield batch
                    batch = []
        self._last_time = max(self._last_time, last)
        if batch:
            yield batch

    def dishonest_attempts(self, *, clock: Callable[[], int] | None = None) -> list[DishonestAttempt]:
        """A few deliberately dishonest events for after the season (the demo submits them).

        Each is signed by a real cast member and refused by the rules with a fraud-relevant
        code, so it never reaches the ledger but the node records it as an alert
        (``GET /v1/alerts``): a herder agent applying an ear tag issued to another banner's
        cooperative (``tag_wrong_owner``), a plant slaughtering a lamb twice
        (``lamb_slaughtered``), a tagger re-tagging a slaughtered lamb's tag
        (``tag_already_applied``), a tagger shipping a lamb it already shipped away
        (``not_holder``), a plant receiving a shipment twice (``shipment_received``) and a
        plant slaughtering a lamb it never received (``not_holder``).  Attempts the season
        gives no material for are left out.  Uses no randomness (the season's ``rng`` and
        so every later draw stay as they were); event times follow the season's last event
        (or ``clock()`` if later), one millisecond apart.
        """
        plan = self._plan
        specs: list[tuple[Spec, str, str, str]] = []
        used = set(self.tags)
        kills = sorted(plan.kills, key=lambda k: k.lamb.g)
        # 1. an ear tag applied outside the banner it was issued to (tag resale)
        for coop, first, count in plan.issues:
            spare = next((t for t in (f"{first[:7]}{int(first[7:]) + i:08d}" for i in range(count)) if t not in used),
                         None)
            thief = next((m for m in self.cast.members if m.role == "herder_agent" and m.banner != coop.banner), None)
            if spare is not None and thief is not None:
                body = {"tag": spare, "herder": "h-resold", "born": f"{self.year}-04-01", "breed": "苏尼特羊",
                        "sex": "male", "sumu": SUMU[thief.banner][0]}
                specs.append(((thief, "lamb.tag", body), "tag_wrong_owner", "tag_outside_banner",
                              f"{thief.id} applies ear tag {spare}, issued to {coop.id}"))
                break
        if kills:
            k = kills[0]
            # 2. a slaughtered lamb's tag presented again: slaughtered twice, then re-tagged
            body = dict(self._kill_spec(k)[2], carcass=f"{k.carcass}-again")
            specs.append(((k.plant, "lamb.slaughter", body), "lamb_slaughtered", "tag_after_slaughter",
                          f"{k.plant.id} slaughters lamb {k.lamb.tag} a second time"))
            specs.append((self._tag_spec(k.lamb), "tag_already_applied", "tag_after_slaughter",
                          f"{k.lamb.tagger.id} tags slaughtered lamb {k.lamb.tag}'s ear tag again"))
        # 3. a lamb shipped by a second holder: its tagger ships it again after it left
        moved = next((x for x in plan.lambs if x.hops and not x.slaughter), None)
        if moved is not None:
            spec = (moved.tagger, "custody.ship",
                    {"shipment": f"shp-{self.year}-{moved.g:08d}-x", "to": moved.hops[-1].id, "lambs": [moved.tag]})
            specs.append((spec, "not_holder", "double_shipment",
                          f"{moved.tagger.id} ships lamb {moved.tag} it no longer holds"))
        # 4. a shipment received twice
        to_plant = next((x for x in plan.shipments if x.to.role == "plant"), None)
        if to_plant is not None:
            specs.append(((to_plant.to, "custody.receive", {"shipment": to_plant.id}), "shipment_received",
                          "double_receipt", f"{to_plant.to.id} receives shipment {to_plant.id} again"))
        # 5. a plant slaughtering a lamb it never received (one still with its herder)
        home = next((x for x in plan.lambs if not x.hops), None)
        if home is not None and self._plants:
            plant = self._plants[0]
            forged: dict[str, Any] = {
                "tag": home.tag, "carcass": f"car-{plant.id.removeprefix('plant-')}-{self.year}-x{home.g:08d}",
                    "carcass_mass_g": 18_000, "quarantine_cert": "QC-FORGED", "price_fen_per_kg": 6500,
                    "market_price_fen_per_kg": 6400, "date": f"{self.year}-10-01"}
            specs.append(((plant, "lamb.slaughter", forged), "not_holder", "slaughter_without_receipt",
                          f"{plant.id} slaughters lamb {home.tag} that never left its herder"))
        t = max(self._last_time, self.start_ms + self.span_ms) + 1
        if clock is not None:
            t = max(t, clock())
        out = []
        for spec, code, alert, story in specs:
            out.append(DishonestAttempt(self._sign(spec, t), code, alert, story))
            t += 1
        self._last_time = t - 1
        return out

    def recall(self, *, clock: Callable[[], int] | None = None) -> tuple[dict[str, Any], str, list[str]] | None:
        """A ``recall`` by the trace office of one labelled carcass of the season (its
        sampled quarantine retest came back positive): the signed event, the carcass and
        its labels.  The carcass is the last one packed, so the season's first labels
        (the ones the demo prints) stay unrecalled.  None if nothing was packed.  Uses no
        randomness; times follow the season's last event as in :meth:`dishonest_attempts`."""
        packs = self._plan.packs
        if not packs:
            return None
        carcass = packs[-1].carcass
        labels = [x["label"] for p in packs if p.carcass == carcass for x in p.labels]
        office = self.cast.trace_office
        body = {"targets": [{"type": "carcass", "id": carcass}], "reason": "兽药残留抽检阳性"}
        t = max(self._last_time, self.start_ms + self.span_ms) + 1
        if clock is not None:
            t = max(t, clock())
        self._last_time = t
        return self._sign((office, "recall", body), t), carcass, labels

    def extra_lambs(
        self, n: int, *, clock: Callable[[], int] | None = None, chunk: int = 20
    ) -> Iterator[list[dict[str, Any]]]:
        """``n`` more lambs, ``chunk`` at a time, each through tag → ship → receive →
        slaughter → label; one list of signed events (dependencies first) per chunk.

        Each chunk belongs to one cooperative and starts with a fresh tag range for it;
        its lambs take global indexes from :attr:`next_lamb` on, so they never collide
        with the season's (a later ``Season`` on this chain must start at the final
        ``next_lamb``).  Event times follow the last event generated (the season's last,
        or ``start_ms`` if :meth:`batches` has not run), or ``clock()`` if that is later,
        one millisecond apart.  Stops early when no banner has quota left for a chunk.
        """
        if chunk < 1:
            raise ValueError("chunk must be positive")
        rng = self.rng
        weights = [_BANNER_WEIGHTS.get(c.banner, 5) for c in self._coops]
        left = n
        while left > 0:
            m = min(chunk, left)
            candidates = [
                (c, w)
                for c, w in zip(self._coops, weights)
                if self.quota_left is None or self.quota_left.get(c.banner, m) >= m
            ]
            if not candidates:
                return
            coop = rng.choices([c for c, _ in candidates], [w for _, w in candidates])[0]
            if serial_base(self.next_lamb + m) - 1 > TAG_SERIAL_MAX:
                return
            plan = self._plan_lambs({coop.id: m}, None)
            t = self._last_time + 1
            if clock is not None:
                t = max(t, clock())
            out: list[dict[str, Any]] = []
            for _count, specs in self._phases(plan, enroll=False):
                for spec in specs:
                    out.append(self._sign(spec, t))
                    t += 1
            self._last_time = t - 1
            left -= m
            yield out


# -- helpers -----------------------------------------------------------------------------------


def _split(rng: random.Random, n: int, keys: Sequence[str], weights: Sequence[float]) -> dict[str, int]:
    """Share ``n`` items among ``keys`` at random in proportion to ``weights``."""
    out = dict.fromkeys(keys, 0)
    if n <= 0 or not keys:
        return out
    total = sum(weights)
    # largest remainder on the expected shares, then a little noise by random draws
    exact = [n * w / total for w in weights]
    floors = [math.floor(x) for x in exact]
    for k, f in zip(keys, floors):
        out[k] = f
    rest = n - sum(floors)
    for k in rng.choices(list(keys), weights=[x - f for x, f in zip(exact, floors)], k=rest):
        out[k] += 1
    return out


def _spring_day(rng: random.Random) -> int:
    """Days after 1 March of a spring birth (March–May, peaking in late March)."""
    return min(91, max(0, int(rng.triangular(0, 92, 20))))


def _custody_order(shipments: Sequence[_Shipment]) -> list[Spec]:
    """Ship and receive events by business day; on one day, a tagger's trucks and their
    receipt come before the cooperatives' trucks onward, so custody is always in place."""
    keyed: list[tuple[tuple[dt.date, int, str], Spec]] = []
    for s in shipments:
        body = {"shipment": s.id, "to": s.to.id, "lambs": s.lambs}
        keyed.append(((s.shipped, 2 * s.hop, s.id), (s.sender, "custody.ship", body)))
        keyed.append(((s.arrives, 2 * s.hop + 1, s.id), (s.to, "custody.receive", {"shipment": s.id})))
    keyed.sort(key=lambda x: x[0])
    return [spec for _k, spec in keyed]
