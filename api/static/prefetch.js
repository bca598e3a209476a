// Starts the consumer page's two downloads, the label's proof bundle and the genesis
// document, as soon as this small module arrives (it is loaded `async`), while label.js
// and verify.js are still on their way: on a slow mobile link that is a round trip or
// two sooner.  label.js takes the answers from `window.lambtracePrefetch` (and fetches
// itself whatever is not there).  Nothing is trusted or checked here; the requests are
// the ones label.js makes, with the same options.
const FETCH_TIMEOUT_MS = 20_000;
const started = {};

function timeoutSignal(ms) {
  // as label.js's: AbortSignal.timeout is Safari 16 and Chrome 103
  if (typeof AbortSignal.timeout === "function") return AbortSignal.timeout(ms);
  const controller = new AbortController();
  setTimeout(() => controller.abort(new DOMException("the request timed out", "TimeoutError")), ms);
  return controller.signal;
}

// label.js sets lambtracePrefetchTaken when it fetched for itself: on a busy phone this
// async module may run after it, and then fetching again would be a waste
const metas = window.lambtracePrefetchTaken ? [] : document.querySelectorAll('meta[name="lambtrace-fetch"]');
for (const meta of metas) {
  const url = meta.content;
  const answer = fetch(url, {
    headers: { Accept: "application/json" },
    cache: "no-store",
    credentials: "omit",
    signal: timeoutSignal(FETCH_TIMEOUT_MS),
  });
  answer.catch(() => {}); // label.js reports the failure when it takes this answer
  started[url] = answer;
}
window.lambtracePrefetch = started;
