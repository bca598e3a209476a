// The trace offices' dashboard (api/routes/dashboard.py).
//
// Renders the summary in #page-data at once, then follows GET /dashboard/stream
// (server-sent events: a `summary` event after every committed block) and re-renders.
// The alerts panel reads GET /v1/alerts when the node has it (a 404 says it has none);
// consensus health is refreshed from GET /v1/status every 10 s, since it changes
// between blocks.  Charts are inline SVG drawn here; nothing is loaded from elsewhere.
// Language: Chinese by default; ?lang= wins, else the choice remembered in localStorage.

import { applyStrings, otherLang, pickLang, translate } from "./i18n.js";

const DATA = JSON.parse(document.getElementById("page-data").textContent);
const STRINGS = DATA.strings;
const SVG = "http://www.w3.org/2000/svg";
let lang = pickLang();
let current = DATA.summary;
let alertsState = { kind: "loading" };
let statusExtra = null;

function t(key) {
  return translate(STRINGS, lang, key);
}

function applyLang() {
  applyStrings(STRINGS, lang);
}

function switchLang() {
  lang = otherLang(lang);
  applyLang();
  render(current);
}

// ------------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "i18n") {
      node.dataset.i18n = v;
      node.textContent = t(v);
    } else if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

function fmt(n) {
  return Number(n || 0).toLocaleString(lang === "zh" ? "zh-CN" : "en-US");
}

function bannerName(code) {
  const key = `banner.${code}`;
  return STRINGS[lang][key] ?? code;
}

function dateTime(ms, withTime = true) {
  if (ms === null || ms === undefined) return "—";
  // China Standard Time, as the offices read it
  const d = new Date(ms + 8 * 3600 * 1000);
  const pad = (x) => String(x).padStart(2, "0");
  const day = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  return withTime ? `${day} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}` : day;
}

// ------------------------------------------------------------------ panels

function renderTotals(s) {
  for (const c of s.counters) {
    const node = document.getElementById(`total-${c}`);
    const v = s.totals[c] ?? 0;
    if (node.dataset.count !== String(v)) {
      node.classList.remove("bump");
      void node.offsetWidth; // restart the highlight
      node.classList.add("bump");
    }
    node.dataset.count = String(v);
    node.textContent = fmt(v);
  }
  const h = document.getElementById("height");
  h.dataset.height = String(s.height);
  h.textContent = fmt(s.height);
  document.getElementById("chain").textContent = `· ${s.chain} · ${s.node}`;
}

function table(id, head, rows) {
  const tableEl = document.getElementById(id);
  tableEl.replaceChildren();
  const thead = el("thead", {}, el("tr", {}, ...head.map(([key, cls]) => el("th", { i18n: key, class: cls || "" }))));
  const tbody = el("tbody");
  if (!rows.length) tbody.append(el("tr", {}, el("td", { class: "empty", colspan: String(head.length), i18n: "empty" })));
  for (const r of rows) tbody.append(el("tr", {}, ...r));
  tableEl.append(thead, tbody);
}

function counterCells(s, rec) {
  return s.counters.map((c) => el("td", { class: "num", "data-counter": c }, c in rec ? fmt(rec[c]) : "·"));
}

function renderBanners(s) {
  table(
    "banner-table",
    [["col.banner", "name"], ...s.counters.map((c) => [`c.${c}`, "num"])],
    s.banners.map((b) => [
      el("td", { class: "name", "data-banner": b.code }, el("span", {}, bannerName(b.code)), el("small", { class: "muted" }, b.code)),
      ...counterCells(s, b),
    ]),
  );
}

function renderActors(s, group, tableId, countId, colKey) {
  const rows = group.rows.map((r) => [
    el(
      "td",
      { class: "name", "data-id": r.id },
      el("span", {}, r.name || r.id),
      el("small", { class: "muted" }, r.name ? `${r.id}${r.banner ? " · " + bannerName(r.banner) : ""}` : r.banner ? bannerName(r.banner) : ""),
    ),
    ...counterCells(s, r),
  ]);
  table(tableId, [[colKey, "name"], ...s.counters.map((c) => [`c.${c}`, "num"])], rows);
  document.getElementById(countId).textContent = group.count > group.rows.length ? `${group.rows.length} / ${fmt(group.count)}` : fmt(group.count);
}

function renderQuota(s) {
  document.getElementById("quota-year").textContent = String(s.quota.year);
  const list = document.getElementById("quota-list");
  list.replaceChildren();
  if (!s.quota.banners.length) list.append(el("li", { class: "empty", i18n: "empty" }));
  for (const q of s.quota.banners) {
    const pct = q.quota ? Math.min(100, (100 * q.issued) / q.quota) : 0;
    const hasQuota = q.quota !== null && q.quota !== undefined;
    const level = !hasQuota ? "none" : pct >= 95 ? "full" : pct >= 80 ? "high" : "ok";
    const fill = el("span");
    fill.style.width = `${pct.toFixed(1)}%`; // CSSOM, which the page's CSP allows (a style attribute it would not)
    const bar = el("div", { class: "meter", "data-level": level }, fill);
    list.append(
      el(
        "li",
        { "data-banner": q.code },
        el(
          "div",
          { class: "quota-head" },
          el("span", { class: "quota-name" }, bannerName(q.code)),
          el(
            "span",
            { class: "quota-num" },
            !hasQuota
              ? `${fmt(q.issued)} · ${t("quota.none")}`
              : `${fmt(q.issued)} / ${fmt(q.quota)} · ${pct.toFixed(pct < 10 ? 1 : 0)}%`,
          ),
        ),
        bar,
      ),
    );
  }
}

function renderSeason(s) {
  const box = document.getElementById("season-chart");
  box.replaceChildren();
  const pts = s.series;
  if (!pts.length) {
    box.setAttribute("aria-label", t("season.empty"));
    box.append(el("p", { class: "empty", i18n: "season.empty" }));
    return;
  }
  const W = Math.max(300, Math.round(box.clientWidth || 640)), H = W < 520 ? 190 : 230, L = 48, R = 14, T = 14, B = 30;
  const byTime = pts[pts.length - 1].time > pts[0].time;
  const xs = pts.map((p) => (byTime ? p.time : p.height));
  const x0 = xs[0], x1 = Math.max(xs[xs.length - 1], x0 + 1);
  const yMax = Math.max(1, ...pts.map((p) => p.log_size));
  const X = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => H - B - (v / yMax) * (H - T - B);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "season-svg" });
  // the box is the image (role="img"); what it shows, in words
  box.setAttribute("aria-label", `${t("season.records")}: ${fmt(pts[pts.length - 1].log_size)}`);
  chart.setAttribute("aria-hidden", "true");
  const defs = svg("defs");
  const grad = svg("linearGradient", { id: "season-fill", x1: 0, y1: 0, x2: 0, y2: 1 });
  grad.append(svg("stop", { offset: "0%", "stop-color": "#24603f", "stop-opacity": 0.45 }));
  grad.append(svg("stop", { offset: "100%", "stop-color": "#24603f", "stop-opacity": 0.03 }));
  defs.append(grad);
  chart.append(defs);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4;
    const y = Y(v);
    chart.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid-line" }));
    chart.append(svg("text", { x: L - 8, y: y + 4, class: "axis", "text-anchor": "end" }, fmt(Math.round(v))));
  }
  let line = "";
  pts.forEach((p, i) => {
    line += `${i ? "L" : "M"}${X(xs[i]).toFixed(1)},${Y(p.log_size).toFixed(1)}`;
  });
  const area = `${line}L${X(xs[xs.length - 1]).toFixed(1)},${Y(0)}L${X(xs[0]).toFixed(1)},${Y(0)}Z`;
  chart.append(svg("path", { d: area, fill: "url(#season-fill)" }));
  chart.append(svg("path", { d: line, class: "season-line" }));
  const last = pts[pts.length - 1];
  chart.append(svg("circle", { cx: X(xs[xs.length - 1]), cy: Y(last.log_size), r: 4.5, class: "season-dot" }));
  const label = (v) => (byTime ? dateTime(v, x1 - x0 > 3 * 86400000 ? false : true) : `#${v}`);
  chart.append(svg("text", { x: L, y: H - 8, class: "axis", "text-anchor": "start" }, label(x0)));
  chart.append(svg("text", { x: W - R, y: H - 8, class: "axis", "text-anchor": "end" }, label(xs[xs.length - 1])));
  box.append(chart);
}

function renderFunnel(s) {
  const box = document.getElementById("funnel-chart");
  box.replaceChildren();
  const max = Math.max(1, ...s.counters.map((c) => s.totals[c] || 0));
  const rowH = 30, W = Math.max(280, Math.round(box.clientWidth || 360)), L = lang === "zh" ? 76 : 104, R = 64;
  const H = rowH * s.counters.length + 4;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "funnel-svg" });
  s.counters.forEach((c, i) => {
    const v = s.totals[c] || 0;
    const y = 2 + i * rowH;
    const w = Math.max(v ? 3 : 0, ((W - L - R) * v) / max);
    chart.append(svg("text", { x: L - 8, y: y + 19, class: "axis label", "text-anchor": "end" }, t(`c.${c}`)));
    chart.append(svg("rect", { x: L, y: y + 5, width: W - L - R, height: rowH - 10, rx: 5, class: "bar-bg" }));
    chart.append(svg("rect", { x: L, y: y + 5, width: w, height: rowH - 10, rx: 5, class: `bar bar-${c}` }));
    chart.append(svg("text", { x: L + w + 6, y: y + 19, class: "axis value" }, fmt(v)));
  });
  box.append(chart);
}

function renderHealth(s) {
  const h = s.health;
  const list = document.getElementById("health-list");
  list.replaceChildren();
  const extra = statusExtra || {};
  const height = extra.height ?? s.height;
  const logSize = extra.log_size ?? s.log_size;
  let up = h.up;
  if (extra.peers_connected && h.mode === "multi") {
    const valid = new Set(h.validators);
    up = [...new Set([...extra.peers_connected, ...(h.role === "validator" ? [h.node] : [])])].filter((n) => valid.has(n));
  }
  const consensus = extra.consensus ?? h.consensus;
  const validatorsText = h.mode === "single" ? t("health.single") : `${up.length} / ${h.validators.length}`;
  const quorum = Math.floor((2 * h.validators.length) / 3) + 1;
  const state = h.mode === "single" ? "ok" : up.length >= quorum ? (up.length === h.validators.length ? "ok" : "warn") : "bad";
  document.getElementById("health").dataset.state = state;
  const rows = [
    ["health.height", fmt(height)],
    ["health.log", fmt(logSize)],
    ["health.validators", validatorsText, state],
    ["health.node", `${h.node} (${h.role})`],
    ["health.last_block", dateTime(extra.last_block_time ?? s.time)],
  ];
  if (consensus) {
    const step = String(consensus.step);
    rows.push(["health.round", `${consensus.height} / ${consensus.round}`], ["health.step", STRINGS[lang][`step.${step}`] ?? step]);
  }
  for (const [key, value, st] of rows) {
    list.append(el("div", {}, el("dt", { i18n: key }), el("dd", st ? { "data-state": st, id: "validators-up" } : {}, value)));
  }
  const chips = document.getElementById("health-chips");
  chips.replaceChildren();
  if (h.mode === "multi") {
    for (const v of h.validators) chips.append(el("span", { class: "chip", "data-up": String(up.includes(v)) }, v));
  }
}

function renderAlerts() {
  const box = document.getElementById("alerts-body");
  box.replaceChildren();
  box.dataset.state = alertsState.kind;
  if (alertsState.kind === "missing") box.append(el("p", { class: "empty", i18n: "alerts.missing" }));
  else if (alertsState.kind === "error") box.append(el("p", { class: "empty", i18n: "alerts.error" }));
  else if (alertsState.kind === "loading") box.append(el("p", { class: "empty" }, "…"));
  else if (!alertsState.items.length) box.append(el("p", { class: "empty ok", i18n: "alerts.none" }));
  else {
    const counts = el("div", { class: "chips" });
    for (const [kind, n] of Object.entries(alertsState.counts || {})) {
      if (n) counts.append(el("span", { class: "chip", "data-kind": kind }, `${alertName(kind)} ${fmt(n)}`));
    }
    if (counts.childElementCount) box.append(counts);
    const list = el("ul", { class: "alert-list", tabindex: "0", "aria-labelledby": "h-alerts" });
    for (const a of alertsState.items.slice(0, 50)) {
      const kind = String(a.kind ?? "alert");
      list.append(
        el(
          "li",
          { "data-kind": kind },
          el("div", { class: "alert-head" }, el("strong", {}, alertName(kind)), el("small", { class: "muted" }, dateTime(a.time))),
          subjectText(a.subject) ? el("p", { class: "mono" }, subjectText(a.subject)) : null,
          a.message ? el("p", { class: "alert-msg", lang: "en" }, String(a.message)) : null,
          el("small", { class: "muted" }, `${evidenceCount(a.evidence)} ${t("alerts.evidence")}`),
        ),
      );
    }
    box.append(list);
  }
}

function alertName(kind) {
  return STRINGS[lang][`alert.${kind}`] ?? kind.split("_").join(" ");
}

function subjectText(subject) {
  if (!subject || typeof subject !== "object") return subject ? String(subject) : "";
  return Object.entries(subject)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .slice(0, 4)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.slice(0, 3).join(", ") + (v.length > 3 ? " …" : "") : v}`)
    .join(" · ");
}

function evidenceCount(evidence) {
  if (Array.isArray(evidence)) return evidence.length;
  if (!evidence || typeof evidence !== "object") return 0;
  let n = 0;
  for (const v of Object.values(evidence)) n += Array.isArray(v) ? v.length : v ? 1 : 0;
  return n;
}

async function loadAlerts() {
  try {
    const r = await fetch("/v1/alerts", { headers: { Accept: "application/json" } });
    if (r.status === 404 || r.status === 405) {
      alertsState = { kind: "missing" };
    } else if (!r.ok) {
      alertsState = { kind: "error" };
    } else {
      const body = await r.json();
      const items = Array.isArray(body) ? body : Array.isArray(body.alerts) ? body.alerts : [];
      alertsState = { kind: "loaded", items, counts: body.counts || {}, total: body.total ?? items.length };
    }
  } catch {
    alertsState = { kind: "error" };
  }
  renderAlerts();
}

async function loadStatus() {
  try {
    const r = await fetch("/v1/status", { headers: { Accept: "application/json" } });
    if (r.ok) {
      statusExtra = await r.json();
      renderHealth(current);
    }
  } catch {
    // keep what the summary said
  }
}

function render(s) {
  current = s;
  renderTotals(s);
  renderSeason(s);
  renderFunnel(s);
  renderQuota(s);
  renderBanners(s);
  renderActors(s, s.cooperatives, "coop-table", "coop-count", "col.coop");
  renderActors(s, s.plants, "plant-table", "plant-count", "col.plant");
  renderHealth(s);
  renderAlerts();
}

function setLive(state) {
  const live = document.getElementById("live");
  live.dataset.state = state;
  const text = document.getElementById("live-text");
  text.dataset.i18n = `live.${state}`;
  text.textContent = t(`live.${state}`);
}

function follow() {
  if (!("EventSource" in window)) return;
  const source = new EventSource("/dashboard/stream");
  let alertsDue = 0;
  source.addEventListener("open", () => setLive("live"));
  source.addEventListener("error", () => setLive(source.readyState === EventSource.CLOSED ? "offline" : "connecting"));
  source.addEventListener("summary", (e) => {
    setLive("live");
    const s = JSON.parse(e.data);
    statusExtra = null; // the summary is newer
    render(s);
    if (Date.now() >= alertsDue) {
      alertsDue = Date.now() + 5000;
      loadAlerts();
    }
  });
}

document.getElementById("lang-switch").addEventListener("click", switchLang);
let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    renderSeason(current);
    renderFunnel(current);
  }, 150);
});
applyLang();
render(current);
loadAlerts();
follow();
setInterval(loadStatus, 10000);
