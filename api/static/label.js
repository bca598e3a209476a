// The consumer page's script (api/routes/pages.py, templates/label.html).
//
// 1. Language: Chinese by default; `?lang=en|zh` in the address wins, else the choice
//    remembered in localStorage; the switch button flips every [data-i18n] element
//    without a reload, using the strings the page embeds (pages.STRINGS).
// 2. Verdict, computed here and nowhere else: fetch the label's proof bundle, verify it
//    with verify.js against the genesis fingerprint in the link's fragment (#g=...),
//    check that the story the server rendered is the one the signed events tell, then
//    render the story from the verified events.  The verdict element's data-verdict
//    goes pending -> verified | failed (data-reason holds the failure's code).
//    Where WebCrypto lacks Ed25519, those signatures are left to the server's verdict
//    (/l/<label>/verdict) and the page says so (data-checked-by="server").

import * as V from "./verify.js";

const data = JSON.parse(document.getElementById("page-data").textContent);
const STRINGS = data.strings;
const LANG_KEY = "lambtrace.lang";
let lang = pickLang();

function pickLang() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked === "zh" || asked === "en") return asked;
  try {
    const kept = localStorage.getItem(LANG_KEY);
    if (kept === "zh" || kept === "en") return kept;
  } catch {
    // storage may be disabled (private mode): Chinese it is
  }
  return "zh";
}

function t(key) {
  return STRINGS[lang][key] ?? STRINGS.zh[key] ?? key;
}

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) {
    const text = STRINGS[lang][el.dataset.i18n];
    if (text !== undefined) el.textContent = text;
  }
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  document.title = t("title");
}

function switchLang() {
  lang = lang === "zh" ? "en" : "zh";
  try {
    localStorage.setItem(LANG_KEY, lang);
  } catch {
    // not remembered, still switched
  }
  const url = new URL(location.href);
  if (url.searchParams.has("lang")) {
    url.searchParams.set("lang", lang);
    history.replaceState(null, "", url);
  }
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

function renderTech(report, fingerprint, checkedBy) {
  const rows = [
    ["tech.checked_by", null, `tech.checked_by.${checkedBy}`],
    ["tech.chain", report.chain],
    ["tech.block", `#${report.checkpoint.height} · ${report.checkpoint.hash.slice(0, 16)}…`],
    ["tech.log_size", String(report.checkpoint.log_size)],
    ["tech.genesis", report.genesisHash],
    ["tech.fingerprint", fingerprint, fingerprint ? null : "tech.none"],
    ["tech.events", String(report.events)],
    ["tech.signatures", String(report.signatures + report.deferred)],
    ["tech.label_event", report.story.events.issue],
  ];
  document.getElementById("tech-list").replaceChildren(
    ...rows.map(([key, value, i18n]) =>
      el("div", {}, el("dt", { i18n: key }), i18n ? el("dd", { i18n }) : el("dd", { class: "mono" }, value)),
    ),
  );
}

// ---------------------------------------------------------------------- verdict

const REASONS = {
  // page and transport
  fetch_failed: "fetch",
  not_found: "not_found",
  no_crypto: "crypto",
  bad_fingerprint: "fingerprint",
  fingerprint_mismatch: "other_chain",
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

async function getJson(url, what) {
  let resp;
  try {
    resp = await fetch(url, {
      headers: { Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
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
    const bundle = await getJson(data.proof_url, "the proof");
    const ed25519 = (await V.ed25519Available()) ? "webcrypto" : "defer";
    const report = await V.verifyLabelBundle(bundle, { label: data.label, fingerprint, ed25519 });
    if (report.deferred > 0) {
      checkedBy = "server";
      await serverVerdict();
    }
    const diffs = summaryDiffs(data.summary, report.story);
    if (diffs.length) {
      throw new V.VerificationError("summary_mismatch", `the page showed other values for ${diffs.join(", ")}`);
    }
    renderStory(report.story);
    renderTech(report, fingerprint, checkedBy);
    document.getElementById("tech").hidden = false;
    setVerdict("verified", { anchor, checkedBy });
  } catch (e) {
    const known = e instanceof V.VerificationError;
    setVerdict("failed", { code: known ? e.code : "other", message: known ? e.message : String(e), anchor, checkedBy });
  }
}

applyLang();
document.getElementById("lang-switch").addEventListener("click", switchLang);
if (data.summary) verifyPage();
