// The consumer page's script (api/routes/pages.py, templates/label.html).
//
// 1. Language: Chinese by default; `?lang=en|zh` in the address wins, else the choice
//    remembered in localStorage; the switch button flips every [data-i18n] element
//    without a reload, using the strings the page embeds (pages.STRINGS).
// 2. Verdict, computed here and nowhere else: fetch the label's proof bundle and the
//    genesis document it references by hash (GET /v1/genesis; untrusted like the
//    bundle), verify both with verify.js against the genesis fingerprint in the link's
//    fragment (#g=...): the fingerprint must be a prefix of the bundle's genesis_hash,
//    and the genesis document must hash to it;
//    check that the story the server rendered is the one the signed events tell, then
//    render the story from the verified events.  The verdict element's data-verdict
//    goes pending -> verified | failed (data-reason holds the failure's code).
//    Where WebCrypto lacks Ed25519 (phones with an older browser engine), the page checks
//    those signatures in JavaScript under the same rules (verify.js, docs/adr/0016;
//    data-checked-by="browser", data-ed25519="js"); only where that cannot run either are
//    they left to the server's verdict (/l/<label>/verdict), and the page says so
//    (data-checked-by="server").  A v3 bundle
//    proves its recalls complete (the header's recall map, docs/label-proof.md): a
//    quiet note under the verdict (#verdict-recalls) says that there is none, or that
//    the recall warning lists them all, up to the checkpoint's time, and the technical
//    details name the proof.
// 3. Scans and the check code (docs/adr/0008): opening the page counts a scan
//    (POST /v1/labels/<label>/scans); the form checks the scratch-off code
//    (POST /v1/labels/<label>/check).  #scan-stats shows "first verified at ...", the
//    scan count and any clone warning once the label has been verified or is flagged.
//    These are the node's own records, not part of the verified story.

import { applyStrings, otherLang, pickLang, translate } from "./i18n.js";
import * as V from "./verify.js";

const data = JSON.parse(document.getElementById("page-data").textContent);
const STRINGS = data.strings;
// Strings of the check-code form and scan records; the server's (pages.STRINGS) win.
const CHECK_STRINGS = {
  zh: {
    "check.heading": "验证防伪码",
    "check.hint": "刮开标签上的涂层，输入下面的 12 位验证码。",
    "check.code": "验证码",
    "check.place": "所在城市（选填）",
    "check.submit": "验证",
    "check.ok_first": "验证码正确。您是第一位验证此标签的人。",
    "check.ok_again": "验证码正确，但此标签已于 {at}{place}被验证过。如果不是您本人，这件产品可能是仿冒品。",
    "check.wrong": "验证码不正确，请仔细核对后再试（还可尝试 {n} 次）。",
    "check.format": "验证码为 12 位字母和数字（如 ABCD-EFGH-JKMN）。",
    "check.place_bad": "城市名称最多 64 个字符。",
    "check.limited": "错误次数过多，请 {min} 分钟后再试。",
    "check.error": "暂时无法验证，请稍后再试。",
    "scan.first": "首次验证：{at}{place}",
    "scan.place": "，{place}",
    "scan.never": "此标签的验证码尚未被验证过。",
    "scan.count": "本标签已被扫描 {n} 次。",
    "scan.clone": "警告：此标签可能被复制。",
    "scan.reason.scans_over_threshold": "扫描次数异常多",
    "scan.reason.verified_in_several_places": "在多个地点被验证",
    "scan.note": "以上记录由本节点保存，不在账本上。",
  },
  en: {
    "check.heading": "Check the scratch-off code",
    "check.hint": "Scratch off the coating on the label and enter the 12-character code beneath.",
    "check.code": "Check code",
    "check.place": "Your city (optional)",
    "check.submit": "Check",
    "check.ok_first": "The code is correct. You are the first to check this label.",
    "check.ok_again": "The code is correct, but this label was first verified on {at}{place}. If that was not you, this pack may be a copy.",
    "check.wrong": "The code is wrong. Check it and try again ({n} tries left).",
    "check.format": "A check code is 12 letters and digits (like ABCD-EFGH-JKMN).",
    "check.place_bad": "A city name is at most 64 characters.",
    "check.limited": "Too many wrong codes. Try again in {min} minutes.",
    "check.error": "The code could not be checked now; try again later.",
    "scan.first": "First verified on {at}{place}",
    "scan.place": " in {place}",
    "scan.never": "This label's code has not been verified yet.",
    "scan.count": "This label has been scanned {n} times.",
    "scan.clone": "Warning: this label may have been copied.",
    "scan.reason.scans_over_threshold": "it has been scanned unusually often",
    "scan.reason.verified_in_several_places": "it was verified in more than one place",
    "scan.note": "These records are kept by this node; they are not on the ledger.",
  },
};
// Strings of the recall map's proof (format v3); the server's win here too.
const RECALL_STRINGS = {
  zh: {
    "recalls.none_proven": "账本证明：截至 {at}，本标签及其胴体、羊只均无召回记录。",
    "recalls.all_proven": "账本证明：召回警告所列即截至 {at} 本标签及其胴体、羊只的全部召回记录。",
    "tech.recalls": "召回记录",
    "tech.recalls.proven": "完整，已由账本证明",
    "reason.recalls": "召回记录未获账本证明",
  },
  en: {
    "recalls.none_proven": "The ledger proves that no recall of this label, its carcass or its lamb was recorded up to {at}.",
    "recalls.all_proven": "The ledger proves the recall warning lists every recall of this label, its carcass and its lamb recorded up to {at}.",
    "tech.recalls": "Recalls",
    "tech.recalls.proven": "complete, proven by the ledger",
    "reason.recalls": "The label's recall record is not proven by the ledger",
  },
};
for (const extra of [CHECK_STRINGS, RECALL_STRINGS]) {
  for (const [l, table] of Object.entries(extra)) STRINGS[l] = { ...table, ...STRINGS[l] };
}
let lang = pickLang();

function t(key) {
  return translate(STRINGS, lang, key);
}

function applyLang() {
  applyStrings(STRINGS, lang);
}

function switchLang() {
  lang = otherLang(lang);
  applyLang();
}

// ------------------------------------------------------------------ formatting

const DAY_OFFSET_MS = 8 * 3600 * 1000; // dates as seen in China (UTC+8), as the server renders them

function date(ms) {
  return typeof ms === "number" ? new Date(ms + DAY_OFFSET_MS).toISOString().slice(0, 10) : "";
}

function kg(grams) {
  const centi = Math.floor((grams + 5) / 10);
  return `${Math.floor(centi / 100)}.${String(centi % 100).padStart(2, "0")} kg`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "i18n") node.dataset.i18n = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  if (attrs.i18n) node.textContent = t(attrs.i18n);
  return node;
}

function setField(name, text, i18n = null) {
  for (const node of document.querySelectorAll(`[data-field="${name}"]`)) {
    if (i18n) node.dataset.i18n = i18n;
    else delete node.dataset.i18n;
    node.textContent = i18n ? t(i18n) : text;
  }
}

// ------------------------------------------------------------- the verified story

/** Fields where the server's summary (rendered into the page) and the verified story
 * must agree; any difference fails the page.  They never change once committed; a
 * recall may (one committed between the page and the bundle), so recalls are not
 * compared but shown from the verified bundle. */
function summaryDiffs(s, story) {
  const same = [
    ["label", s.label, story.label],
    ["cut", s.cut, story.cut],
    ["net_mass_g", s.net_mass_g, story.net_mass_g],
    ["packed", s.packed, story.packed],
    ["check_commitment", s.check_commitment, story.check_commitment],
    ["carcass", s.carcass, story.carcass],
    ["tag", s.tag, story.tag],
    ["lamb.banner", s.lamb?.banner, story.lamb.banner],
    ["lamb.sumu", s.lamb?.sumu, story.lamb.sumu],
    ["lamb.born", s.lamb?.born, story.lamb.born],
    ["lamb.breed", s.lamb?.breed, story.lamb.breed],
    ["lamb.sex", s.lamb?.sex, story.lamb.sex],
    ["lamb.cooperative", s.lamb?.cooperative, story.lamb.cooperative],
    ["lamb.tagged_at", s.lamb?.tagged_at, story.lamb.tagged_at],
    ["plant.id", s.plant?.id, story.plant.id],
    ["plant.name", s.plant?.name || "", story.plant.name],
    ["plant.banner", s.plant?.banner, story.plant.banner],
    ["slaughter.date", s.slaughter?.date, story.slaughter.date],
    ["slaughter.quarantine_cert", s.slaughter?.quarantine_cert, story.slaughter.quarantine_cert],
    ["slaughter.carcass_mass_g", s.slaughter?.carcass_mass_g, story.slaughter.carcass_mass_g],
    ["slaughter.event", s.slaughter?.event, story.events.slaughter],
    ["issued.event", s.issued?.event, story.events.issue],
  ];
  return same.filter(([, a, b]) => a !== b).map(([name]) => name);
}

/** An organisation by its enrolled name; one without (a herder's agent: no personal
 * names on the ledger) by its role and pseudonymous id. */
function party(name, role, id) {
  return name ? [name] : [el("span", { i18n: `role.${role}` }), ` ${id}`];
}

function renderStory(story) {
  setField("cut", story.cut);
  setField("net_mass", kg(story.net_mass_g));
  setField("packed", story.packed);
  setField("label", story.label);
  setField("banner", story.lamb.banner, `banner.${story.lamb.banner}`);
  setField("sumu", story.lamb.sumu);
  setField("born", story.lamb.born);
  setField("breed", story.lamb.breed);
  setField("sex", story.lamb.sex, `sex.${story.lamb.sex}`);
  setField("tagged", date(story.lamb.tagged_at));
  setField("cooperative", story.lamb.cooperative_name || story.lamb.cooperative);
  setField("tag", story.tag);
  setField("plant", story.plant.name || story.plant.id);
  setField("slaughtered", story.slaughter.date);
  setField("quarantine", story.slaughter.quarantine_cert);
  setField("carcass_mass", kg(story.slaughter.carcass_mass_g));

  const custody = document.getElementById("custody");
  const legs = document.getElementById("custody-list");
  legs.replaceChildren(
    ...story.custody.map((leg) =>
      el(
        "li",
        {},
        el("p", { class: "leg-route" }, ...party(leg.fromName, leg.fromRole, leg.from), " → ",
           ...party(leg.toName, leg.toRole, leg.to)),
        el(
          "p",
          { class: "leg-dates" },
          el("span", { i18n: "custody.shipped" }),
          ` ${date(leg.shippedAt)} · `,
          el("span", { i18n: "custody.received" }),
          ` ${date(leg.receivedAt)}`,
        ),
      ),
    ),
  );
  custody.hidden = story.custody.length === 0;

  const recall = document.getElementById("recall");
  document.getElementById("recall-list").replaceChildren(
    ...story.recalls.map((r) =>
      el("li", {}, el("span", { i18n: `recall.target.${r.type}` }), ` · ${date(r.at)} · ${r.reason}`),
    ),
  );
  recall.hidden = story.recalls.length === 0;
}

function renderTech(report, fingerprint, checkedBy, ed25519) {
  const rows = [
    ["tech.checked_by", null, checkedBy === "browser" && ed25519 === "js" ? "tech.checked_by.browser_js" : `tech.checked_by.${checkedBy}`],
    ["tech.chain", report.chain],
    ["tech.block", `#${report.checkpoint.height} · ${report.checkpoint.hash.slice(0, 16)}…`],
    ["tech.log_size", String(report.checkpoint.log_size)],
    ["tech.genesis", report.genesisHash],
    ["tech.fingerprint", fingerprint, fingerprint ? null : "tech.none"],
    ["tech.events", String(report.events)],
    ["tech.signatures", String(report.signatures + report.deferred)],
    ["tech.label_event", report.story.events.issue],
  ];
  if (report.recalls_complete) rows.push(["tech.recalls", null, "tech.recalls.proven"]);
  document.getElementById("tech-list").replaceChildren(
    ...rows.map(([key, value, i18n]) =>
      el("div", {}, el("dt", { i18n: key }), i18n ? el("dd", { i18n }) : el("dd", { class: "mono" }, value)),
    ),
  );
}

/** What a v3 bundle proves about recalls, up to the checkpoint's time: {key, at} with
 * key recalls.none_proven (nothing recalled) or recalls.all_proven (the recalls #recall
 * shows are all of them); null without such a proof. */
let recallProof = null;

/** The note under the verdict that no recall is recorded (made here: the template has no
 * place for it).  Its text has a time in it, so it is re-rendered on a language switch. */
function renderRecallNote() {
  let note = document.getElementById("verdict-recalls");
  if (recallProof === null) {
    if (note) note.hidden = true;
    return;
  }
  if (!note) {
    note = el("p", { id: "verdict-recalls", class: "verdict-note" });
    document.getElementById("verdict-anchor").after(note);
  }
  note.textContent = fill(recallProof.key, { at: dateTime(recallProof.at) });
  note.hidden = false;
}

// ---------------------------------------------------------------------- verdict

const REASONS = {
  // page and transport
  fetch_failed: "fetch",
  not_found: "not_found",
  no_crypto: "crypto",
  bad_fingerprint: "fingerprint",
  fingerprint_mismatch: "other_chain",
  no_genesis: "anchor",
  summary_mismatch: "summary",
  server_failed: "server",
  server_unavailable: "server_unavailable",
  // verify.js, with verify/errors.py's codes
  malformed_bundle: "malformed",
  unsupported_format: "malformed",
  bad_event: "malformed",
  incomplete_bundle: "story",
  wrong_label: "label",
  wrong_genesis: "anchor",
  chain_mismatch: "anchor",
  bad_certificate: "commit",
  insufficient_signatures: "commit",
  inclusion_failed: "inclusion",
  bad_event_signature: "signature",
  key_not_proven: "signer",
  key_not_valid_at_time: "signer",
  actor_not_proven: "signer",
  not_authorised: "signer",
  inconsistent_story: "story",
  missing_event: "story",
  unexpected_event: "story",
  recalls_not_proven: "recalls",
};

function setText(id, key) {
  const node = document.getElementById(id);
  node.dataset.i18n = key;
  node.textContent = t(key);
}

function setVerdict(state, { code = null, message = "", anchor, checkedBy }) {
  const box = document.getElementById("verdict");
  box.dataset.anchor = anchor;
  box.dataset.checkedBy = checkedBy;
  setText("verdict-title", `verdict.${state}`);
  setText("verdict-detail", `verdict.${state}_detail`);
  const reason = document.getElementById("verdict-reason");
  reason.hidden = state !== "failed";
  if (state === "failed") {
    box.dataset.reason = code;
    setText("verdict-reason-text", `reason.${REASONS[code] ?? "other"}`);
    document.getElementById("verdict-reason-detail").textContent = message;
  }
  const note = document.getElementById("verdict-anchor");
  note.hidden = !(anchor === "server" || state === "verified");
  if (!note.hidden) setText("verdict-anchor", `anchor.${anchor}`);
  document.getElementById("verdict-server").hidden = checkedBy !== "server";
  document.getElementById("story").dataset.state = state;
  if (state === "failed") setText("story-unverified", "story.failed");
  box.dataset.verdict = state; // last: tests and monitors wait on this attribute
}

const FETCH_TIMEOUT_MS = 20_000;

/** A signal that aborts after ``ms`` (AbortSignal.timeout is Safari 16 and Chrome 103). */
function timeoutSignal(ms) {
  if (typeof AbortSignal.timeout === "function") return AbortSignal.timeout(ms);
  const controller = new AbortController();
  setTimeout(() => controller.abort(new DOMException("the request timed out", "TimeoutError")), ms);
  return controller.signal;
}

/** The answer prefetch.js already asked for (once), or null. */
function prefetched(url) {
  const started = window.lambtracePrefetch;
  if (!started) window.lambtracePrefetchTaken = true; // prefetch.js, if it runs later, fetches nothing
  if (!started || !(url in started)) return null;
  const answer = started[url];
  delete started[url];
  window.lambtracePrefetchHits = (window.lambtracePrefetchHits ?? 0) + 1;
  return answer;
}

async function getJson(url, what) {
  let resp;
  try {
    resp = await (prefetched(url) ?? fetch(url, {
      headers: { Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      signal: timeoutSignal(FETCH_TIMEOUT_MS),
    }));
  } catch (e) {
    throw new V.VerificationError("fetch_failed", `could not fetch ${what}: ${e.message}`);
  }
  if (!resp.ok) {
    throw new V.VerificationError(resp.status === 404 ? "not_found" : "fetch_failed", `${what}: the node answered ${resp.status}`);
  }
  try {
    return await resp.json();
  } catch {
    throw new V.VerificationError("malformed", `${what} is not JSON`);
  }
}

async function serverVerdict() {
  const v = await getJson(data.verdict_url, "the server's verdict").catch((e) => {
    throw new V.VerificationError("server_unavailable", e.message);
  });
  if (v.verdict === "verified") return;
  if (v.verdict === "failed") throw new V.VerificationError("server_failed", String(v.reason));
  throw new V.VerificationError("server_unavailable", String(v.reason ?? "no verdict"));
}

async function verifyPage() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fingerprint = fragment.has("g") ? fragment.get("g") : null;
  const anchor = fingerprint === null ? "server" : "link";
  let checkedBy = "browser";
  try {
    const [bundle, genesis] = await Promise.all([
      getJson(data.proof_url, "the proof"),
      getJson(data.genesis_url, "the genesis document"),
    ]);
    const ed25519 = (await V.ed25519Available()) ? "webcrypto" : (await V.ed25519JsAvailable()) ? "js" : "defer";
    document.getElementById("verdict").dataset.ed25519 = ed25519;
    const report = await V.verifyLabelBundle(bundle, { label: data.label, fingerprint, genesis, ed25519 });
    if (report.deferred > 0) {
      checkedBy = "server";
      await serverVerdict();
    }
    const diffs = summaryDiffs(data.summary, report.story);
    if (diffs.length) {
      throw new V.VerificationError("summary_mismatch", `the page showed other values for ${diffs.join(", ")}`);
    }
    renderStory(report.story);
    renderTech(report, fingerprint, checkedBy, ed25519);
    recallProof = !report.recalls_complete ? null : {
      key: report.story.recalls.length === 0 ? "recalls.none_proven" : "recalls.all_proven",
      at: report.checkpoint.time,
    };
    renderRecallNote();
    document.getElementById("tech").hidden = false;
    setVerdict("verified", { anchor, checkedBy });
  } catch (e) {
    const known = e instanceof V.VerificationError;
    setVerdict("failed", { code: known ? e.code : "other", message: known ? e.message : String(e), anchor, checkedBy });
  }
}

// ------------------------------------------------------- scans and the check code

const LABEL_API = data.proof_url ? data.proof_url.replace(/\/proof$/, "") : null;
let lastStats = null;
let lastResult = null;

function fill(key, params = {}) {
  return t(key).replace(/\{(\w+)\}/g, (_, k) => String(params[k] ?? ""));
}

function dateTime(ms) {
  return new Date(ms + DAY_OFFSET_MS).toISOString().slice(0, 16).replace("T", " ");
}

function firstText(s) {
  const place = s.first_place ? fill("scan.place", { place: s.first_place }) : "";
  return { at: dateTime(s.first_verified_at), place };
}

async function postJson(url, body) {
  const resp = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    signal: timeoutSignal(FETCH_TIMEOUT_MS),
  });
  let json = null;
  try {
    json = await resp.json();
  } catch {
    // an answer without JSON is handled as an error below
  }
  return { status: resp.status, json };
}

/** Fill #scan-stats; it stays hidden until the label has been verified or is flagged. */
function renderScanStats(s) {
  lastStats = s;
  const box = document.getElementById("scan-stats");
  const parts = [el("h2", { i18n: "scan.heading" })];
  if (s.suspect_clone) {
    const why = s.reasons.map((r) => t(`scan.reason.${r}`)).join(lang === "zh" ? "；" : "; ");
    parts.push(el("p", { class: "scan-clone", role: "alert" }, `${t("scan.clone")} (${why})`));
  }
  parts.push(
    s.first_verified_at === null
      ? el("p", { class: "scan-first", i18n: "scan.never" })
      : el("p", { class: "scan-first" }, fill("scan.first", firstText(s))),
    el("p", { class: "scan-count" }, fill("scan.count", { n: s.scans })),
    el("p", { class: "scan-note", i18n: "scan.note" }),
  );
  box.replaceChildren(...parts);
  box.dataset.state = s.suspect_clone ? "suspect" : s.first_verified_at === null ? "scanned" : "verified";
  box.hidden = !(s.suspect_clone || s.first_verified_at !== null);
}

function showResult(state, key, params = {}) {
  lastResult = { state, key, params };
  const out = document.getElementById("check-result");
  out.dataset.state = state;
  out.textContent = fill(key, params);
  out.hidden = false;
}

async function checkCode(event) {
  event.preventDefault();
  const code = document.getElementById("check-input").value.trim();
  const place = document.getElementById("check-place").value.trim();
  const button = document.getElementById("check-submit");
  button.disabled = true;
  try {
    const { status, json } = await postJson(`${LABEL_API}/check`, place ? { code, place } : { code });
    const err = json?.error ?? {};
    if (status === 200 && json?.ok) {
      if (json.first) showResult("ok", "check.ok_first");
      else showResult("again", "check.ok_again", firstText(json));
      renderScanStats(json);
    } else if (status === 429) {
      showResult("limited", "check.limited", { min: Math.max(1, Math.ceil((err.retry_after_s ?? 600) / 60)) });
    } else if (err.code === "bad_code" && err.reason === "mismatch") {
      showResult("wrong", "check.wrong", { n: err.attempts_left ?? 0 });
    } else if (err.code === "bad_code") {
      showResult("wrong", "check.format");
    } else if (err.code === "bad_place") {
      showResult("wrong", "check.place_bad");
    } else {
      showResult("error", "check.error");
    }
  } catch {
    showResult("error", "check.error");
  } finally {
    button.disabled = false;
  }
}

async function recordScan() {
  try {
    const { status, json } = await postJson(`${LABEL_API}/scans`, {});
    if (status === 200 && json) renderScanStats(json);
  } catch {
    // counting is best effort: the page works without it
  }
}

function rerenderChecks() {
  if (lastStats) renderScanStats(lastStats);
  if (lastResult) {
    const again = lastResult.key === "check.ok_again" && lastStats;
    showResult(lastResult.state, lastResult.key, again ? firstText(lastStats) : lastResult.params);
  }
}

applyLang();
document.getElementById("lang-switch").addEventListener("click", switchLang);
document.getElementById("lang-switch").addEventListener("click", rerenderChecks);
document.getElementById("lang-switch").addEventListener("click", renderRecallNote);
if (data.summary) {
  verifyPage();
  if (LABEL_API) {
    document.getElementById("check-form").addEventListener("submit", checkCode);
    document.getElementById("check-code").hidden = false;
    recordScan();
  }
}
