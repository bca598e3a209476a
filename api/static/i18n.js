// Language for the consumer page and the dashboard: ?lang= first, then the reader's
// earlier choice (localStorage), else Chinese.  Each page keeps its own string tables.

const LANG_KEY = "lambtrace.lang";

export function pickLang() {
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

export function translate(strings, lang, key) {
  return strings[lang][key] ?? strings.zh[key] ?? key;
}

// Fill every [data-i18n] text and [data-i18n-label] aria-label, the page language and title.
export function applyStrings(strings, lang) {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) {
    const text = strings[lang][el.dataset.i18n];
    if (text !== undefined) el.textContent = text;
  }
  for (const el of document.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", translate(strings, lang, el.dataset.i18nLabel));
  }
  document.title = translate(strings, lang, "title");
}

// The other language, remembered for next time and kept in the URL if it names one.
export function otherLang(lang) {
  const next = lang === "zh" ? "en" : "zh";
  try {
    localStorage.setItem(LANG_KEY, next);
  } catch {
    // not remembered, still switched
  }
  const url = new URL(location.href);
  if (url.searchParams.has("lang")) {
    url.searchParams.set("lang", next);
    history.replaceState(null, "", url);
  }
  return next;
}
