"""The trace offices' dashboard ``GET /dashboard`` (issue 6, item 5) and its live feed.

``GET /dashboard`` is a page (Chinese first, ``?lang=en`` or the page's switch for
English) showing the season as the committed ledger tells it: tags issued, lambs tagged,
shipped, received, slaughtered and labelled, in total and by banner, cooperative and
plant (the rules' counters, :func:`api.queries.stats`); quota use per banner for the
season's year (``q/<banner>/<year>`` against genesis ``params.tag_quotas``); the ledger's
growth over the season (sampled block headers); consensus health; and the alerts feed
``GET /v1/alerts`` when this node has one.  It is rendered from :func:`summary`, so it
reads at once; ``static/dashboard.js`` then follows ``GET /dashboard/stream``.

``GET /dashboard/summary`` is that summary as JSON.  ``GET /dashboard/stream`` is a
``text/event-stream``: a ``summary`` event at once and after every committed block
(``id:`` the height), a ``: heartbeat`` comment every :data:`HEARTBEAT_S` seconds.
Each client has a queue of at most :data:`QUEUE_SIZE` commit notices, the oldest dropped
when full (the summary sent is always the tip's, so nothing is lost but intermediate
states); at most ``app.config["dashboard_max_streams"]`` (default
:data:`MAX_STREAMS`) streams at once (a 503 beyond), each closed after
:data:`MAX_STREAM_S` seconds (browsers reconnect on their own).  The summary is
computed once per height and shared by every client.
"""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, render_template, request
from flask.blueprints import BlueprintSetupState

from ledger import codec
from ledger.schema import COUNTIES

from .. import queries
from ..encoding import respond
from ..errors import ApiError
from ..runtime import EXTENSION, Runtime, runtime
from .pages import PAGE_HEADERS
from .pages import STRINGS as PAGE_STRINGS

if TYPE_CHECKING:  # pragma: no cover
    from ledger.blocks.header import Header
    from node.node import Node

bp = Blueprint("dashboard", __name__)

HUB_EXTENSION = "lambtrace.dashboard"
HEARTBEAT_S = 5.0
"""Also how soon a gone client is noticed and its slot freed: a write or a few after it left."""
QUEUE_SIZE = 4
MAX_STREAMS = 4
"""Default bound on open streams: each holds a server thread (waitress runs 8)."""
MAX_STREAM_S = 3600.0
SERIES_POINTS = 240
"""Block headers sampled for the season chart (evenly over the heights, with the tip)."""
MAX_ROWS = 200
"""Cooperatives and plants listed (the busiest first); totals always count all."""
COUNTERS = ("tags_issued", "tagged", "shipped", "received", "slaughtered", "labelled")
LANGS = ("zh", "en")
_CHINA = dt.timezone(dt.timedelta(hours=8))

STRINGS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "追溯办看板 · 锡林郭勒羊肉溯源",
        "brand": "锡林郭勒羊肉溯源",
        "brand_sub": "追溯办看板",
        "switch": "English",
        "switch_label": "Switch to English",
        "live.connecting": "正在连接…",
        "live.live": "实时",
        "live.offline": "已断开，正在重连",
        "updated": "区块高度",
        "c.tags_issued": "已发放耳标",
        "c.tagged": "已佩标羊只",
        "c.shipped": "已发运",
        "c.received": "已接收",
        "c.slaughtered": "已屠宰",
        "c.labelled": "已贴标签",
        "sec.banners": "各旗县",
        "sec.quota": "耳标配额使用",
        "sec.season": "本季账本记录",
        "sec.funnel": "全程环节",
        "sec.coops": "合作社",
        "sec.plants": "屠宰企业",
        "sec.alerts": "异常预警",
        "sec.health": "共识状态",
        "col.banner": "旗县",
        "col.coop": "合作社",
        "col.plant": "屠宰企业",
        "quota.of": "配额",
        "quota.none": "未设配额",
        "quota.year": "年度",
        "season.records": "账本记录数",
        "season.empty": "尚无区块",
        "alerts.none": "暂无预警",
        "alerts.missing": "本节点没有预警数据源",
        "alerts.error": "无法获取预警",
        "alerts.evidence": "条证据记录",
        "alert.premium_shortfall": "溢价未足额支付",
        "alert.slaughter_without_receipt": "屠宰多于接收",
        "alert.tag_outside_banner": "耳标跨旗使用",
        "alert.tag_after_slaughter": "屠宰后耳标再现",
        "alert.tag_reapplied": "耳标重复佩戴",
        "alert.double_shipment": "重复发运",
        "alert.double_receipt": "重复接收",
        "alert.label_suspect_clone": "疑似克隆标签",
        "health.height": "区块高度",
        "health.log": "账本记录",
        "health.validators": "在线验证节点",
        "health.single": "单验证节点",
        "health.round": "共识轮次",
        "health.step": "阶段",
        "health.node": "本节点",
        "health.last_block": "最新区块时间",
        "step.idle": "等待新事件",
        "step.propose": "提议",
        "step.prevote": "预投票",
        "step.precommit": "预提交",
        "empty": "暂无数据",
        "footer": "锡林郭勒盟羊肉质量安全追溯 · 数据来自联盟链已确认的记录",
    },
    "en": {
        "title": "Trace office dashboard · Xilingol Lamb Trace",
        "brand": "Xilingol Lamb Trace",
        "brand_sub": "Trace office",
        "switch": "中文",
        "switch_label": "切换到中文",
        "live.connecting": "Connecting…",
        "live.live": "Live",
        "live.offline": "Disconnected, reconnecting",
        "updated": "Block height",
        "c.tags_issued": "Tags issued",
        "c.tagged": "Lambs tagged",
        "c.shipped": "Shipped",
        "c.received": "Received",
        "c.slaughtered": "Slaughtered",
        "c.labelled": "Labelled",
        "sec.banners": "By banner",
        "sec.quota": "Ear-tag quota use",
        "sec.season": "Ledger records this season",
        "sec.funnel": "Through the chain",
        "sec.coops": "Cooperatives",
        "sec.plants": "Plants",
        "sec.alerts": "Alerts",
        "sec.health": "Consensus health",
        "col.banner": "Banner",
        "col.coop": "Cooperative",
        "col.plant": "Plant",
        "quota.of": "quota",
        "quota.none": "no quota",
        "quota.year": "Year",
        "season.records": "Ledger records",
        "season.empty": "No block yet",
        "alerts.none": "No alerts",
        "alerts.missing": "No alerts feed on this node",
        "alerts.error": "Could not fetch alerts",
        "alerts.evidence": "evidence records",
        "alert.premium_shortfall": "Premium shortfall",
        "alert.slaughter_without_receipt": "Slaughtered more than received",
        "alert.tag_outside_banner": "Tag used outside its banner",
        "alert.tag_after_slaughter": "Tag seen after slaughter",
        "alert.tag_reapplied": "Tag applied twice",
        "alert.double_shipment": "Shipped twice",
        "alert.double_receipt": "Received twice",
        "alert.label_suspect_clone": "Suspected cloned label",
        "health.height": "Height",
        "health.log": "Ledger records",
        "health.validators": "Validators up",
        "health.single": "single validator",
        "health.round": "Round",
        "health.step": "Step",
        "health.node": "This node",
        "health.last_block": "Last block",
        "step.idle": "waiting for events",
        "step.propose": "propose",
        "step.prevote": "prevote",
        "step.precommit": "precommit",
        "empty": "No data yet",
        "footer": "Xilingol League lamb traceability · from the committed records of the permissioned ledger",
    },
}
for _lg in LANGS:
    for _code in COUNTIES:
        STRINGS[_lg][f"banner.{_code}"] = PAGE_STRINGS[_lg][f"banner.{_code}"]


# -- the summary ------------------------------------------------------------------------------


def _counters(rec: dict[str, Any]) -> dict[str, int]:
    return {c: int(rec.get(c, 0)) for c in COUNTERS if c in rec}


def _year_of(ms: int) -> int:
    return dt.datetime.fromtimestamp(ms / 1000, _CHINA).year


def _quota_use(node: Node, tip_time: int | None) -> dict[str, Any]:
    """Tags issued per banner in the season's year against genesis quotas.

    The season's year is the tip's year (China time), or the latest year issued for
    when nothing was issued in that year yet."""
    store = node.store
    used: dict[tuple[str, int], int] = {}
    for k, raw in store.kv.scan(b"Sq/"):
        parts = k[1:].decode().split("/")
        if len(parts) == 3 and parts[2].isdigit():
            used[(parts[1], int(parts[2]))] = int(codec.decode_trusted(raw))
    years = {y for _b, y in used}
    year = _year_of(tip_time if tip_time is not None else int(time.time() * 1000))
    if years and year not in years:
        year = max(years)
    quotas = node.genesis.params.tag_quotas
    codes = sorted(set(quotas) | {b for b, y in used if y == year})
    return {
        "year": year,
        "banners": [
            {"code": c, "name": COUNTIES.get(c), "issued": used.get((c, year), 0), "quota": quotas.get(c)}
            for c in codes
        ],
    }


def _series(node: Node) -> list[dict[str, int]]:
    """At most :data:`SERIES_POINTS` headers, evenly spaced, always with the first and the tip."""
    store = node.store
    tip = store.height
    if tip <= 0:
        return []
    n = min(tip, SERIES_POINTS)
    heights = sorted({1 + (tip - 1) * i // max(n - 1, 1) for i in range(n)} | {tip})
    out = []
    for h in heights:
        header = store.header(h)
        if header is not None:
            out.append({"height": h, "time": header.time, "log_size": header.log_size})
    return out


def _names(node: Node, ids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for aid in ids:
        rec = node.store.state_get(f"a/{aid}") or {}
        out[aid] = {"name": rec.get("name") or "", "banner": rec.get("banner")}
    return out


def _rows(node: Node, group: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    ranked = sorted(group.items(), key=lambda kv: (-sum(int(kv[1].get(c, 0)) for c in COUNTERS), kv[0]))
    shown = ranked[:MAX_ROWS]
    names = _names(node, [aid for aid, _ in shown])
    return {
        "count": len(group),
        "rows": [{"id": aid, **names[aid], **_counters(rec)} for aid, rec in shown],
        "key": key,
    }


def ledger_summary(node: Node) -> dict[str, Any]:
    """The part of the summary that changes only with a commit (memoised per height)."""
    stats = queries.stats(node.store)
    header = node.store.last_header
    tip_time = header.time if header else None
    banners = [
        {"code": code, "name": COUNTIES.get(code), **_counters(rec)}
        for code, rec in sorted(stats["banners"].items())
    ]
    return {
        "chain": node.genesis.chain,
        "height": stats["height"],
        "log_size": header.log_size if header else 0,
        "time": tip_time,
        "counters": list(COUNTERS),
        "totals": {c: int(stats["totals"].get(c, 0)) for c in COUNTERS},
        "banners": banners,
        "cooperatives": _rows(node, stats["cooperatives"], "coop"),
        "plants": _rows(node, stats["plants"], "plant"),
        "quota": _quota_use(node, tip_time),
        "series": _series(node),
    }


def consensus_health(rt: Runtime, consensus_status: Any) -> dict[str, Any]:
    """Validators named in genesis, how many are up as this node sees it, the state machine."""
    node = rt.node
    validators = [v.name for v in node.genesis.validators]
    out: dict[str, Any] = {"node": node.name, "role": rt.role, "validators": validators,
                           "mode": "single" if len(validators) <= 1 else "multi"}
    if consensus_status is None:
        out["up"] = [node.name] if node.is_validator else []
        out["peers_connected"] = None
        out["consensus"] = None
        return out
    st = consensus_status()
    connected = sorted(str(p) for p in st.get("connected", []))
    up = sorted({*connected, *([node.name] if node.is_validator else [])} & set(validators))
    out.update(up=up, peers_connected=connected, consensus=st.get("consensus"))
    return out


class Hub:
    """Commit notices to the open streams, and the summary memoised per height."""

    def __init__(self, node: Node, max_streams: int) -> None:
        self.node = node
        self.max_streams = max_streams
        self._lock = threading.Lock()
        self._clients: set[queue.Queue[int | None]] = set()
        self._memo: tuple[int, int, dict[str, Any]] | None = None
        self._memo_lock = threading.Lock()

    def notify(self, header: Header) -> None:
        """Commit listener: a notice to every client, dropping its oldest when full."""
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            _put_dropping(q, header.height)

    def subscribe(self) -> queue.Queue[int | None]:
        q: queue.Queue[int | None] = queue.Queue(maxsize=QUEUE_SIZE)
        with self._lock:
            if len(self._clients) >= self.max_streams:
                raise ApiError("too_many_streams", f"at most {self.max_streams} dashboard streams are open at once",
                               status=503)
            self._clients.add(q)
        return q

    def unsubscribe(self, q: queue.Queue[int | None]) -> None:
        with self._lock:
            self._clients.discard(q)

    @property
    def streams(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        """End every open stream (each gets a ``None`` notice)."""
        with self._lock:
            clients = list(self._clients)
        for q in clients:
            _put_dropping(q, None)

    def ledger_summary(self) -> dict[str, Any]:
        store = self.node.store
        with self._memo_lock:
            key = (store.height, store.log_size)
            if self._memo is None or self._memo[:2] != key:
                self._memo = (*key, ledger_summary(self.node))
            return self._memo[2]


def _put_dropping(q: queue.Queue[int | None], item: int | None) -> None:
    while True:
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            try:
                q.get_nowait()
            except queue.Empty:
                pass


@bp.record_once
def _hook(state: BlueprintSetupState) -> None:
    rt = state.app.extensions.get(EXTENSION)
    if not isinstance(rt, Runtime):
        return
    hub = Hub(rt.node, int(state.app.config.get("dashboard_max_streams") or MAX_STREAMS))
    state.app.extensions[HUB_EXTENSION] = hub
    rt.node.commit_listeners.append(hub.notify)


def hub() -> Hub:
    h = current_app.extensions.get(HUB_EXTENSION)
    if not isinstance(h, Hub):
        raise RuntimeError("the dashboard blueprint was registered on an app without a LambTrace runtime")
    return h


def summary() -> dict[str, Any]:
    """What the dashboard shows: the ledger part (per height) and consensus health (now)."""
    rt = runtime()
    out = dict(hub().ledger_summary())
    out["node"] = rt.node.name
    out["health"] = consensus_health(rt, current_app.config.get("consensus_status"))
    out["now"] = int(time.time() * 1000)
    return out


# -- routes -----------------------------------------------------------------------------------


def _lang() -> str:
    asked = request.args.get("lang", "")
    return asked if asked in LANGS else "zh"


@bp.get("/dashboard")
def dashboard_page() -> Response:
    lang = _lang()
    data = summary()
    html = render_template("dashboard.html", lang=lang, t=STRINGS[lang], s=data, counters=COUNTERS,
                           page_data={"lang": lang, "strings": STRINGS, "summary": data})
    return Response(html, mimetype="text/html", headers=PAGE_HEADERS)


@bp.get("/dashboard/summary")
def dashboard_summary() -> Response:
    return respond(summary())


def _sse(event: str, data: dict[str, Any], ident: int | None = None) -> str:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


@bp.get("/dashboard/stream")
def dashboard_stream() -> Response:
    h = hub()
    q = h.subscribe()
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def events() -> Iterator[str]:
        try:
            with app.app_context():
                started = time.monotonic()
                yield "retry: 3000\n\n"
                data = summary()
                yield _sse("summary", data, data["height"])
                while time.monotonic() - started < MAX_STREAM_S:
                    try:
                        notice = q.get(timeout=HEARTBEAT_S)
                    except queue.Empty:
                        yield ": heartbeat\n\n"
                        continue
                    closing = notice is None
                    while not closing:  # coalesce: one summary for every notice queued
                        try:
                            closing = q.get_nowait() is None
                        except queue.Empty:
                            break
                    if closing:
                        break
                    data = summary()
                    yield _sse("summary", data, data["height"])
                yield _sse("bye", {"reason": "closed"})
        finally:
            h.unsubscribe(q)

    resp = Response(events(), mimetype="text/event-stream", headers={
        "Cache-Control": "no-store", "X-Accel-Buffering": "no", "X-Content-Type-Options": "nosniff"})
    resp.call_on_close(lambda: h.unsubscribe(q))  # also when the generator never started
    return resp
