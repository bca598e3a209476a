"""The consumer page ``GET /l/<label>`` in real headless Chromium (issue 4, part 3).

A seasoned chain (tests/helpers_api.py's season, plus a second lamb slaughtered and
labelled with an ECDSA P-256 plant key, whose carcass is then recalled) is served by a
real werkzeug server (tests/helpers.py ``Served``).  Chromium opens
``/l/<label>#g=<genesis hash>`` and the page must reach ``data-verdict="verified"`` —
computed in the browser by ``api/static/verify.js`` over the v2 bundle and the genesis
document it fetches from ``/v1/genesis`` — while a second server that rewrites the
proof bundle (a flipped signature, a changed cut, a dropped event re-proven, ...), the
genesis document it serves or the page must drive it to ``failed`` with the right
reason, and so must a wrong genesis fingerprint.  The language switch, the recall
warning and the fallback to the server's verdict when WebCrypto lacks Ed25519 are
checked too.

``test_js_verifier_matches_python`` keeps the two implementations in step: it runs
verify.js's canonical msgpack, hashes, Merkle and signature code in Chromium against
vectors computed here by ledger/ (and tests/vectors/*.json), and runs ~130 mutated
bundles through both verify.js and ``verify.verify_label``, requiring the same error
code from each.

Screenshots (phone viewport 390x844 at 2x) go to ``$LAMBTRACE_ARTIFACTS/consumer-page``
(default ``<tmp>/lambtrace-artifacts/consumer-page``); their paths are printed.  Without
Chromium, chromedriver or selenium the browser tests skip and say which is missing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from api import create_app
from browser import (
    ARTIFACTS,
    PHONE,
    accessibility_violations,
    axe_missing,
    browser_missing,
    full_page_screenshot,
    start_chromium,
)
from helpers import Served
from helpers_api import AGENT, OFFICE, PLANT, TAG_B, ApiWorld
from ledger import codec, merkle
from ledger.blocks.certificate import vote_bytes
from ledger.errors import DecodeError, ProofError, VerificationError
from ledger.events import parse_leaf
from ledger.hashing import key_id
from ledger.sigs import P256_ORDER
from node.kv import MemoryKV
from signer import generate

SHOTS = ARTIFACTS / "consumer-page"
VECTORS = Path(__file__).parent / "vectors"
ROOT = Path(__file__).resolve().parent.parent
RECALL_REASON = "抽检发现兽药残留超标"
ED25519_L = 2**252 + 27742317777372353535851937790883648493


# -- the chain --------------------------------------------------------------------------------


class Chain:
    """A seasoned chain: l-0001 (ed25519 all the way), l-0003 (ECDSA plant key, recalled);
    afterwards the plant's first key and the herder agent are revoked."""

    def __init__(self) -> None:
        w = ApiWorld(MemoryKV())
        self.ids = w.season()
        ecdsa = generate("ecdsa-p256")
        self.ecdsa = ecdsa
        w.submit([w.ev("key.rotate", OFFICE, {
            "id": PLANT, "add": [{"alg": ecdsa.alg, "pub": ecdsa.public_key, "storage": "hsm"}]})])
        w.commit()
        w.submit([w.ev("custody.ship", AGENT, {"shipment": "shp-2", "to": PLANT, "lambs": [TAG_B]})])
        w.commit()
        w.submit([w.ev("custody.receive", PLANT, {"shipment": "shp-2"}, signer=ecdsa)])
        w.commit()
        w.submit([w.ev("lamb.slaughter", PLANT, {
            "tag": TAG_B, "carcass": "c-2", "carcass_mass_g": 17_500, "quarantine_cert": "QC-2026-0002",
            "price_fen_per_kg": 6700, "market_price_fen_per_kg": 6500, "date": "2026-10-03"}, signer=ecdsa)])
        w.commit()
        w.submit([w.label("c-2", [("l-0003", 2800)], signer=ecdsa)])
        w.commit()
        w.submit([w.ev("recall", OFFICE, {"targets": [{"type": "carcass", "id": "c-2"}], "reason": RECALL_REASON})])
        w.commit()
        # revocations after the fact: the bundles must carry them, and the page accept them
        w.submit([w.ev("key.rotate", OFFICE, {"id": PLANT, "revoke": [w.keys[PLANT].key_id]}),
                  w.ev("actor.revoke", OFFICE, {"id": AGENT, "reason": "合作社调整"})])
        w.commit()
        self.world = w
        self.genesis_hex = w.genesis.hash.hex()


@pytest.fixture(scope="module")
def chain() -> Chain:
    c = Chain()
    CHAIN_GENESIS[:] = [json.loads(json.dumps(c.world.genesis.to_dict(), default=bytes.hex))]
    return c


@pytest.fixture(scope="module")
def served(chain: Chain) -> Iterator[Served]:
    s = Served(chain.world.node)
    yield s
    s.close()


class TamperingServer:
    """``create_app(node)`` behind a WSGI filter that can rewrite the proof bundle
    (``mutate`` gets the JSON value and changes it in place), the genesis document it
    serves (``mutate_genesis``, likewise) and the consumer page (``rewrite_page`` maps
    its HTML): a server that lies."""

    def __init__(self, node: Any) -> None:
        self.app = create_app(node)
        self.mutate: Callable[[dict[str, Any]], None] | None = None
        self.mutate_genesis: Callable[[dict[str, Any]], None] | None = None
        self.rewrite_page: Callable[[str], str] | None = None
        self.delay_s: dict[str, float] = {}
        """Seconds to hold the answer for a path ending in the key (a slow download)."""
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path: str = environ.get("PATH_INFO", "")
        for end, seconds in self.delay_s.items():
            if path.endswith(end):
                time.sleep(seconds)
        proof = path.startswith("/v1/labels/") and path.endswith("/proof") and self.mutate is not None
        genesis = path == "/v1/genesis" and self.mutate_genesis is not None
        page = path.startswith("/l/") and path.count("/") == 2 and self.rewrite_page is not None
        if not (proof or genesis or page):
            return self.app(environ, start_response)
        # the liar rewrites plain text: ask the app for an uncompressed answer
        environ = {k: v for k, v in environ.items() if k != "HTTP_ACCEPT_ENCODING"}
        got: dict[str, Any] = {}

        def no_write(data: bytes) -> object:
            raise AssertionError("the app wrote through start_response's write()")

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None, /) -> Callable[[bytes], object]:
            got["status"], got["headers"] = status, headers
            return no_write

        answer = self.app(environ, capture)
        try:
            body = b"".join(answer)
        finally:
            getattr(answer, "close", lambda: None)()
        if got["status"].startswith("200"):
            if proof and self.mutate is not None:
                value = json.loads(body)
                self.mutate(value)
                body = json.dumps(value).encode()
            elif genesis and self.mutate_genesis is not None:
                value = json.loads(body)
                self.mutate_genesis(value)
                body = json.dumps(value).encode()
            elif self.rewrite_page is not None:
                body = self.rewrite_page(body.decode()).encode()
        headers = [(k, v) for k, v in got["headers"] if k.lower() != "content-length"]
        start_response(got["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def liar(chain: Chain) -> Iterator[TamperingServer]:
    s = TamperingServer(chain.world.node)
    yield s
    s.close()


# -- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    missing = browser_missing()
    if missing:
        pytest.skip(f"no headless browser for the consumer page tests: {missing}")
    d = start_chromium(tmp_path_factory.mktemp("chromium-profile"), window="390,844", script_timeout_s=120)
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    yield d
    d.quit()


def open_page(driver: Any, url: str, timeout_s: float = 30) -> Any:
    """Load ``url`` afresh (a fragment-only change would not reload) and wait for the verdict."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(url)
    WebDriverWait(driver, timeout_s).until(
        lambda d: d.find_element(By.ID, "verdict").get_attribute("data-verdict") != "pending")
    return driver.find_element(By.ID, "verdict")


def open_lying(driver: Any, liar: TamperingServer, url: str, mutate: Callable[[dict[str, Any]], None]) -> Any:
    """:func:`open_page` while ``liar`` serves the proof bundle as ``mutate`` leaves it."""
    liar.mutate = mutate
    try:
        return open_page(driver, url)
    finally:
        liar.mutate = None


def text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def screenshot(driver: Any, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A full-page PNG at the phone viewport, in tmp_path and copied to SHOTS (printed)."""
    return full_page_screenshot(driver, name, PHONE, tmp_path, SHOTS, capsys)


def clear_language(driver: Any, base: str) -> None:
    driver.get(base + "/healthz")
    driver.execute_script("localStorage.clear()")


# -- without a browser: the server side of the page ---------------------------------------------


def test_page_html_and_static_files(chain: Chain, served: Served) -> None:
    r = requests.get(served.url + "/l/l-0001", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    html = r.text
    assert 'lang="zh-CN"' in html and 'data-verdict="pending"' in html
    for zh in ("这只羊的故事", "苏尼特左旗", "满都拉图镇", "满都拉图合作社", "锡林浩特肉联厂", "QC-2026-0001", "羊腿",
               "3.00 kg", "2026-10-02"):
        assert zh in html, zh
    assert '<section id="scan-stats" class="scan-stats" data-state="unavailable" hidden></section>' in html
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "default-src 'none'" in csp
    assert "https://" not in html and "http://" not in html  # nothing is loaded from elsewhere
    en = requests.get(served.url + "/l/l-0001?lang=en", timeout=10).text
    assert 'lang="en"' in en and "This lamb&#39;s story" in en and "Sonid Left Banner" in en
    for path in ("/static/verify.js", "/static/label.js", "/static/base.css", "/static/label.css"):
        s = requests.get(served.url + path, timeout=10)
        assert s.status_code == 200 and s.text, path
    assert "javascript" in requests.get(served.url + "/static/verify.js", timeout=10).headers["Content-Type"]
    # every module the page script imports is preloaded beside it (no round trip waits on
    # another), and the page names its icon
    imports = re.findall(r'^import .* from "\./([a-z0-9]+\.js)";$', requests.get(served.url + "/static/label.js",
                                                                             timeout=10).text, re.M)
    preloaded = re.findall(r'<link rel="modulepreload" href="/static/v/[0-9a-f]{16}/([a-z0-9]+\.js)">', html)
    assert imports and sorted(imports) == sorted(preloaded), (imports, preloaded)
    (icon_url,) = re.findall(r'<link rel="icon" href="(/static/v/[0-9a-f]{16}/icon\.svg)"', html)
    assert requests.get(served.url + icon_url, timeout=10).headers["Content-Type"].startswith("image/svg+xml")
    # everything the page links is under one version of the static files, kept for a year
    linked = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert len(linked) >= 7 and len({u.split("/")[3] for u in linked}) == 1, linked
    for u in linked:
        a = requests.get(served.url + u, timeout=10)
        assert a.status_code == 200 and a.headers["Cache-Control"] == "public, max-age=31536000, immutable", u
    old = requests.get(served.url + "/static/v/0000000000000000/label.js", timeout=10)
    assert old.status_code == 200 and old.headers["Cache-Control"] == "no-cache"  # another version: revalidated
    gone = requests.get(served.url + "/l/l-9999", timeout=10)
    assert gone.status_code == 404 and 'data-verdict="failed"' in gone.text and "查无此标签" in gone.text
    assert requests.get(served.url + "/l/bad%20label", timeout=10).status_code == 400
    verdict = requests.get(served.url + "/l/l-0001/verdict", timeout=10).json()
    assert verdict == {"verdict": "verified", "code": None, "reason": None, "checked_by": "server"}
    assert requests.get(served.url + "/l/l-9999/verdict", timeout=10).status_code == 404


def test_bundle_references_the_genesis_the_page_fetches(chain: Chain, served: Served) -> None:
    b = requests.get(served.url + "/v1/labels/l-0001/proof", timeout=10).json()
    assert b["format"] == "lambtrace-label-proof/v3" and "genesis" not in b and "recalls" in b
    assert b["genesis_hash"] == chain.genesis_hex
    want = json.loads(json.dumps(chain.world.genesis.to_dict(), default=bytes.hex))
    assert requests.get(served.url + "/v1/genesis", timeout=10).json() == want
    full = requests.get(served.url + "/v1/labels/l-0001/proof?genesis=1", timeout=10).json()
    assert full == {**b, "genesis": want}
    page = requests.get(served.url + "/l/l-0001", timeout=10).text
    assert '"genesis_url": "/v1/genesis"' in page


# -- in Chromium ------------------------------------------------------------------------------


def test_genuine_label_verifies_in_the_browser(chain: Chain, served: Served, driver: Any, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    clear_language(driver, served.url)
    t0 = time.monotonic()
    box = open_page(driver, f"{served.url}/l/l-0001#g={chain.genesis_hex}")
    elapsed = time.monotonic() - t0
    assert box.get_attribute("data-verdict") == "verified", text(driver, "#verdict")
    assert box.get_attribute("data-anchor") == "link" and box.get_attribute("data-checked-by") == "browser"
    assert text(driver, "#verdict-title") == "记录真实可信"
    assert "二维码中的创世指纹" in text(driver, "#verdict-anchor")
    assert driver.execute_script("return document.documentElement.lang") == "zh-CN"
    story = text(driver, "#story")
    for zh in ("这只羊的故事", "苏尼特左旗", "满都拉图镇", "满都拉图合作社", "锡林浩特肉联厂", "QC-2026-0001",
               "315252300000001", "羊腿", "18.00 kg"):
        assert zh in story, zh
    assert driver.execute_script("return document.getElementById('story').dataset.state") == "verified"
    assert "牧户代理 agent-1 → 锡林浩特肉联厂" in text(driver, "#custody")
    assert driver.execute_script("return document.getElementById('recall').hidden") is True
    # the recall map proves there is no recall, and the page says so, up to the checkpoint
    assert "账本证明" in text(driver, "#verdict-recalls") and "均无召回记录" in text(driver, "#verdict-recalls")
    assert driver.execute_script("return document.getElementById('scan-stats').hidden") is True
    screenshot(driver, "verified-zh", tmp_path, capsys)
    # the bundle and the genesis were fetched once each: by prefetch.js when it ran before
    # the page script, and the page script took both answers; else by the page script
    # alone, and prefetch.js, running later, fetched nothing (which of the two ran first
    # is the browser's choice: test_prefetch_serves_the_page_script makes it prefetch.js)
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map((r) => new URL(r.name).pathname)")
    assert fetched.count("/v1/labels/l-0001/proof") == 1 and fetched.count("/v1/genesis") == 1, fetched
    hits, taken = driver.execute_script(
        "return [window.lambtracePrefetchHits ?? 0, window.lambtracePrefetchTaken === true]")
    assert (hits, taken) in ((2, False), (0, True)), (hits, taken)
    # the page's scripts load from one version, their relative imports included
    assert len({u.split("/")[3] for u in fetched if u.startswith("/static/")}) == 1, fetched
    assert driver.execute_script("return Object.keys(window.lambtracePrefetch)") == []
    driver.execute_script("document.getElementById('tech').open = true")
    assert chain.genesis_hex in text(driver, "#tech")
    screenshot(driver, "verified-zh-details", tmp_path, capsys)
    with capsys.disabled():
        print(f"  genuine label verified in Chromium in {elapsed:.2f} s (page load included)")
    # the demo's QR links carry a 32-hex-character prefix of the genesis hash
    assert open_page(driver, f"{served.url}/l/l-0001#g={chain.genesis_hex[:32]}").get_attribute(
        "data-verdict") == "verified"


def test_recalled_label_warns_and_ecdsa_keys_verify(chain: Chain, served: Served, driver: Any, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    clear_language(driver, served.url)
    box = open_page(driver, f"{served.url}/l/l-0003#g={chain.genesis_hex}")
    assert box.get_attribute("data-verdict") == "verified", text(driver, "#verdict")
    assert driver.execute_script("return document.getElementById('recall').hidden") is False
    recall = text(driver, "#recall")
    assert "召回警告" in recall and "请勿食用" in recall and RECALL_REASON in recall and "胴体" in recall
    assert "QC-2026-0002" in text(driver, "#story")
    assert "召回警告所列即" in text(driver, "#verdict-recalls") and "全部召回记录" in text(driver, "#verdict-recalls")
    screenshot(driver, "recalled-zh", tmp_path, capsys)


def test_a_leaf_committed_after_its_signers_revocation_fails_in_the_browser(
        chain: Chain, liar: TamperingServer, driver: Any) -> None:
    """The chain's own leaves, with the herder agent's revocation (dated after its events)
    moved before the first of them, re-certified by the chain's validator: validators that
    took those events broke the rules (nothing from a revoked actor is accepted, backdated or
    not), and the page must refuse the label, as verify_label does."""
    from helpers_api import forge_bundle
    from ledger.schema import to_json
    from verify import errors as VE
    from verify import verify_label

    w = chain.world
    r = w.http.get("/v1/labels/l-0001/proof", headers={"Accept": "application/msgpack"})
    picks = [e[0] for e in codec.decode(r.get_data())["events"]]
    leaves = [leaf for _i, leaf in w.store.leaves(0, w.store.log_size)]
    kinds = {i: parse_leaf(leaves[i]) for i in picks}
    rev = next(i for i, ev in kinds.items() if ev.kind == "actor.revoke" and ev.body["id"] == AGENT)
    first = min(i for i, ev in kinds.items() if ev.actor == AGENT)  # the agent's first signed event
    assert first < rev and kinds[rev].time > max(ev.time for ev in kinds.values() if ev.actor == AGENT)
    order = [j for j in range(first)] + [rev] + [j for j in range(first, len(leaves)) if j != rev]
    where = {old: new for new, old in enumerate(order)}
    bundle = forge_bundle(w, [leaves[j] for j in order], sorted(where[i] for i in picks), label="l-0001")
    with pytest.raises(VE.KeyNotValidAtTime, match="revoked earlier in the log"):
        verify_label(bundle, w.genesis, label="l-0001")
    forged = to_json(codec.decode(bundle))

    def serve_forged(b: dict[str, Any]) -> None:
        b.clear()
        b.update(forged)

    clear_language(driver, liar.url)
    box = open_lying(driver, liar, f"{liar.url}/l/l-0001#g={chain.genesis_hex}", serve_forged)
    assert box.get_attribute("data-verdict") == "failed", text(driver, "#verdict")
    assert box.get_attribute("data-reason") == "key_not_valid_at_time", text(driver, "#verdict")
    assert "revoked earlier in the log" in text(driver, "#verdict-reason-detail")


def test_a_consumer_checks_the_scratch_off_code_on_the_page(driver: Any, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The form under the story, in the browser: a wrong code is refused with the tries
    left; the right one records the first verification with its place, and the page (and
    the next visitor's) says when and where the label was first verified."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    from test_checks import CODE, LABEL, issue

    from helpers import World
    from test_rejections_http import base, slaughtered

    w = World()
    s = Served(w.new_node(MemoryKV()))
    try:
        for batch in (base(w), slaughtered(w), [issue(w)]):
            assert all(r["status"] == "accepted" for r in s.submit(batch))
            s.commit()
        clear_language(driver, s.url)
        url = f"{s.url}/l/{LABEL}#g={w.genesis.hash.hex()}"
        assert open_page(driver, url).get_attribute("data-verdict") == "verified", text(driver, "#verdict")
        assert driver.execute_script("return document.getElementById('check-code').hidden") is False
        assert driver.execute_script("return document.getElementById('scan-stats').hidden") is True

        def submit(code: str, place: str = "") -> str:
            for field, value in (("check-input", code), ("check-place", place)):
                box = driver.find_element(By.ID, field)
                box.clear()
                box.send_keys(value)
            driver.execute_script("document.getElementById('check-result').dataset.state = 'idle'")
            driver.find_element(By.ID, "check-submit").click()
            WebDriverWait(driver, 15).until(
                lambda d: d.find_element(By.ID, "check-result").get_attribute("data-state") != "idle")
            return str(driver.find_element(By.ID, "check-result").get_attribute("data-state"))

        assert submit("AAAA-AAAA-AAAA") == "wrong"
        assert "4" in text(driver, "#check-result")  # tries left before the lockout
        assert submit("7KQ2") == "wrong" and "12" in text(driver, "#check-result")  # not a code's shape
        assert submit(CODE.lower(), "锡林浩特") == "ok", text(driver, "#check-result")
        assert driver.execute_script("return document.getElementById('scan-stats').dataset.state") == "verified"
        stats = text(driver, "#scan-stats")
        assert "锡林浩特" in stats and "首次" in stats, stats
        screenshot(driver, "checked-zh", tmp_path, capsys)
        # the next visitor sees the first verification without entering anything
        assert open_page(driver, url).get_attribute("data-verdict") == "verified"
        WebDriverWait(driver, 15).until(
            lambda d: d.execute_script("return document.getElementById('scan-stats').hidden") is False)
        assert "锡林浩特" in text(driver, "#scan-stats")
        assert submit(CODE) == "again"
    finally:
        s.close()


def test_language_switch_is_remembered(chain: Chain, served: Served, driver: Any, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.by import By

    clear_language(driver, served.url)
    url = f"{served.url}/l/l-0001#g={chain.genesis_hex}"
    open_page(driver, url)
    switch = driver.find_element(By.ID, "lang-switch")
    assert switch.text == "English" and "这只羊的故事" in text(driver, "#story")
    switch.click()
    assert driver.execute_script("return document.documentElement.lang") == "en"
    assert "This lamb's story" in text(driver, "#story") and "Sonid Left Banner" in text(driver, "#story")
    assert text(driver, "#verdict-title") == "Authentic record" and switch.text == "中文"
    assert driver.execute_script("return localStorage.getItem('lambtrace.lang')") == "en"
    open_page(driver, url)  # remembered across loads
    assert driver.execute_script("return document.documentElement.lang") == "en"
    assert "Cut and packed" in text(driver, "#story")
    screenshot(driver, "verified-en", tmp_path, capsys)
    open_page(driver, f"{served.url}/l/l-0001?lang=zh#g={chain.genesis_hex}")  # ?lang wins
    assert "这只羊的故事" in text(driver, "#story")
    clear_language(driver, served.url)
    open_page(driver, f"{served.url}/l/l-0001?lang=en#g={chain.genesis_hex}")
    assert text(driver, "#verdict-title") == "Authentic record"


NEWER_APIS = ("AbortSignal.timeout", "AbortSignal.any", "Object.hasOwn", "Object.groupBy", "structuredClone",
               "Array.prototype.at", "Array.prototype.findLast", "Array.prototype.findLastIndex",
               "Array.prototype.toSorted", "String.prototype.at", "String.prototype.replaceAll")
"""What browsers added after Safari 14 and Chrome 86, the oldest the pages are for (phones
that are not updated any more, and in-app browsers that lag)."""


# AbortSignal.timeout goes (the pages must work without it); the others stay for the
# browser driver's own scripts, and a call to one from a page's script is written down
OLDER_BROWSER = """
delete AbortSignal.timeout; delete AbortSignal.any;
window.__newerApiCalls = [];
for (const name of %s) {
  const parts = name.split("."), prop = parts.pop();
  const owner = parts.reduce((o, p) => (o ? o[p] : undefined), window);
  const original = owner && owner[prop];
  if (typeof original !== "function") continue;
  owner[prop] = function (...args) {
    if ((new Error().stack || "").includes("/static/")) window.__newerApiCalls.push(name);
    return original.apply(this, args);
  };
}
"""


def test_a_phone_without_the_newest_browser_apis_still_verifies(chain: Chain, served: Served, driver: Any) -> None:
    source = OLDER_BROWSER % json.dumps([n for n in NEWER_APIS if not n.startswith("AbortSignal.")])
    added = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": source})
    try:
        clear_language(driver, served.url)
        box = open_page(driver, f"{served.url}/l/l-0001#g={chain.genesis_hex}")
        assert driver.execute_script("return typeof AbortSignal.timeout") == "undefined"
        assert box.get_attribute("data-verdict") == "verified", text(driver, "#verdict")
        assert driver.execute_script("return window.__newerApiCalls") == []
        # the page's own requests work too: a code typed into the form is checked
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        assert driver.execute_script("return document.getElementById('check-code').hidden") is False
        driver.find_element(By.ID, "check-input").send_keys("AAAA-AAAA-AAAA")
        driver.execute_script("document.getElementById('check-result').dataset.state = 'idle'")
        driver.find_element(By.ID, "check-submit").click()
        WebDriverWait(driver, 15).until(
            lambda d: d.find_element(By.ID, "check-result").get_attribute("data-state") != "idle")
        assert driver.find_element(By.ID, "check-result").get_attribute("data-state") == "wrong", text(
            driver, "#check-result")
        assert open_page(driver, f"{served.url}/l/l-0003#g={chain.genesis_hex}").get_attribute(
            "data-verdict") == "verified"
        assert driver.execute_script("return document.getElementById('recall').hidden") is False
        assert driver.execute_script("return window.__newerApiCalls") == []
        other = ("0" if chain.genesis_hex[0] != "0" else "1") + chain.genesis_hex[1:32]
        box = open_page(driver, f"{served.url}/l/l-0001#g={other}")
        assert (box.get_attribute("data-verdict"), box.get_attribute("data-reason")) == (
            "failed", "fingerprint_mismatch")
        assert driver.execute_script("return window.__newerApiCalls") == []
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})


def test_without_fingerprint_the_page_says_it_used_the_servers_genesis(chain: Chain, served: Served,
                                                                       driver: Any) -> None:
    clear_language(driver, served.url)
    box = open_page(driver, f"{served.url}/l/l-0001")
    assert box.get_attribute("data-verdict") == "verified"
    assert box.get_attribute("data-anchor") == "server"
    assert "无法与独立的信任锚核对" in text(driver, "#verdict-anchor")


def test_wrong_genesis_fingerprint_fails(chain: Chain, served: Served, driver: Any, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    clear_language(driver, served.url)
    other = ("0" if chain.genesis_hex[0] != "0" else "1") + chain.genesis_hex[1:32]
    box = open_page(driver, f"{served.url}/l/l-0001#g={other}")
    assert box.get_attribute("data-verdict") == "failed"
    assert box.get_attribute("data-reason") == "fingerprint_mismatch"
    assert text(driver, "#verdict-title") == "核验未通过" and "二维码所指的账本" in text(driver, "#verdict-reason")
    assert driver.execute_script("return document.getElementById('story').dataset.state") == "failed"
    screenshot(driver, "failed-fingerprint-zh", tmp_path, capsys)
    box = open_page(driver, f"{served.url}/l/l-0001#g={chain.genesis_hex[:16]}")
    assert (box.get_attribute("data-verdict"), box.get_attribute("data-reason")) == ("failed", "bad_fingerprint")


def test_every_state_of_the_page_is_accessible(chain: Chain, served: Served, driver: Any) -> None:
    """axe-core finds nothing wrong (WCAG 2.x A/AA and best practices: contrast, names,
    landmarks, headings, language) in each state a consumer can meet, in both languages:
    verified with the details open, recalled, failed, a wrong check code, no such label."""
    missing = axe_missing()
    if missing:
        pytest.skip(missing)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    found: dict[str, list[str]] = {}
    other = ("0" if chain.genesis_hex[0] != "0" else "1") + chain.genesis_hex[1:32]
    for lang in ("zh", "en"):
        clear_language(driver, served.url)
        q = "" if lang == "zh" else "?lang=en"
        open_page(driver, f"{served.url}/l/l-0001{q}#g={chain.genesis_hex}")
        driver.execute_script("document.getElementById('tech').open = true")
        found[f"verified, details open ({lang})"] = accessibility_violations(driver)
        if driver.execute_script("return document.getElementById('check-code').hidden") is False:
            driver.find_element(By.ID, "check-input").send_keys("AAAA-AAAA-AAAA")
            driver.execute_script("document.getElementById('check-result').dataset.state = 'idle'")
            driver.find_element(By.ID, "check-submit").click()
            WebDriverWait(driver, 15).until(
                lambda d: d.find_element(By.ID, "check-result").get_attribute("data-state") != "idle")
            found[f"wrong check code ({lang})"] = accessibility_violations(driver)
        assert open_page(driver, f"{served.url}/l/l-0003{q}#g={chain.genesis_hex}").get_attribute(
            "data-verdict") == "verified"
        found[f"recalled ({lang})"] = accessibility_violations(driver)
        assert open_page(driver, f"{served.url}/l/l-0001{q}#g={other}").get_attribute("data-verdict") == "failed"
        found[f"failed ({lang})"] = accessibility_violations(driver)
        driver.get(f"{served.url}/l/l-0404{q}")
        found[f"no such label ({lang})"] = accessibility_violations(driver)
    assert len(found) >= 8
    bad = {state: lines for state, lines in found.items() if lines}
    assert not bad, json.dumps(bad, ensure_ascii=False, indent=1)


# -- a server that lies -----------------------------------------------------------------------


def _leaf(e: Any) -> str:
    """An event entry's leaf (hex): v3 sends [index, leaf], v2 and v1 maps."""
    return str(e[1] if type(e) is list else e["leaf"])


def _index(e: Any) -> int:
    return int(e[0] if type(e) is list else e["index"])


def _set_leaf(e: Any, leaf: str) -> None:
    if type(e) is list:
        e[1] = leaf
    else:
        e["leaf"] = leaf


def _set_index(e: Any, index: int) -> None:
    if type(e) is list:
        e[0] = index
    else:
        e["index"] = index


def _as_maps(events: list[Any]) -> list[dict[str, Any]]:
    return [{"leaf": _leaf(e), "index": _index(e)} for e in events]


def _entry(bundle: dict[str, Any], kind: str) -> Any:
    for e in bundle["events"]:
        if parse_leaf(bytes.fromhex(_leaf(e))).kind == kind:
            return e
    raise AssertionError(f"no {kind} in the bundle")


def _flip(hex_text: str, pos: int) -> str:
    b = bytearray.fromhex(hex_text)
    b[pos] ^= 0x01
    return b.hex()


def _hashes(text: str) -> list[str]:
    """v3's hashes in one string (hex), one by one."""
    return [text[i : i + 64] for i in range(0, len(text), 64)]


def _flip_multiproof(b: dict[str, Any], k: int, pos: int) -> None:
    """Flip a bit of the multiproof's hash ``k`` (v3: one hex string; v2: a list)."""
    if type(b["proof"]) is str:
        b["proof"] = _flip(b["proof"], 32 * k + pos)
    else:
        b["proof"][k] = _flip(b["proof"][k], pos)


def _header_of(hj: dict[str, Any]) -> Any:
    from ledger.blocks.header import Header

    fields: dict[str, Any] = {k: (bytes.fromhex(v) if k in ("prev", "log_root", "validators", "state_root") else v)
                              for k, v in hj.items()}
    return Header(**fields)


def _full_certificate(b: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's certificate in full (v3 leaves out what its header gives)."""
    cert = b["checkpoint"]["certificate"]
    if "block" in cert:
        return copy.deepcopy(cert)
    h = _header_of(b["checkpoint"]["header"])
    return {**copy.deepcopy(cert), "height": h.height, "block": h.hash.hex()}


def _flip_precommit(b: dict[str, Any]) -> None:
    pc = b["checkpoint"]["certificate"]["precommits"][0]
    pc["sig"] = _flip(pc["sig"], 7)


def _flip_event_signature(b: dict[str, Any]) -> None:
    e = _entry(b, "label.issue")
    _set_leaf(e, _flip(_leaf(e), len(_leaf(e)) // 2 - 3))  # inside the last signature


def _change_cut(b: dict[str, Any]) -> None:
    e = _entry(b, "label.issue")
    value = codec.decode(bytes.fromhex(_leaf(e)))
    value["event"]["body"]["labels"][0]["cut"] = "羊排"
    _set_leaf(e, codec.encode(value).hex())


def _reprove(b: dict[str, Any], store: Any) -> None:
    """What a careful liar does after editing the events: a fresh multiproof for the
    events left (if their indexes still make a proof at all)."""
    try:
        size = b["checkpoint"]["header"]["log_size"]
        hashes = [h.hex() for h in merkle.multiproof([_index(e) for e in b["events"]], size, store.get_node)]
        b["proof"] = "".join(hashes) if type(b["proof"]) is str else hashes
    except (ProofError, KeyError, TypeError):
        pass


def _drop(kind: str) -> Callable[[dict[str, Any]], None]:
    def drop(b: dict[str, Any]) -> None:
        b["events"].remove(_entry(b, kind))

    return drop


def _drop_plant_enrolment(b: dict[str, Any]) -> None:
    for e in b["events"]:
        ev = parse_leaf(bytes.fromhex(_leaf(e)))
        if ev.kind == "actor.enroll" and ev.body["id"] == PLANT:
            b["events"].remove(e)
            return
    raise AssertionError("no enrolment of the plant")


def _swap_validator_key(g: dict[str, Any]) -> None:
    v = g["validators"][0]
    v["pub"] = generate("ed25519").public_key.hex()


def _reorder(b: dict[str, Any]) -> None:
    b["events"][0], b["events"][1] = b["events"][1], b["events"][0]


def _embed_other_genesis(b: dict[str, Any]) -> None:
    b["genesis"] = json.loads(json.dumps(CHAIN_GENESIS[0]))
    _swap_validator_key(b["genesis"])


CHAIN_GENESIS: list[dict[str, Any]] = []
"""The chain's genesis as JSON (set by the ``chain`` fixture), for tampers that need it."""

TAMPERS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("flipped precommit signature", _flip_precommit, "bad_certificate"),
    ("flipped event signature", _flip_event_signature, "inclusion_failed"),
    ("changed cut", _change_cut, "inclusion_failed"),
    ("dropped custody.receive", _drop("custody.receive"), "missing_event"),
    ("dropped plant enrolment", _drop_plant_enrolment, "actor_not_proven"),
    ("embedded other genesis", _embed_other_genesis, "wrong_genesis"),
    ("reordered events", _reorder, "malformed_bundle"),
    ("multiproof hash flipped", lambda b: _flip_multiproof(b, 0, 5), "inclusion_failed"),
]


@pytest.mark.parametrize(("name", "mutate", "code"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampered_bundle_fails_in_the_browser(name: str, mutate: Callable[[dict[str, Any]], None], code: str,
                                              chain: Chain, liar: TamperingServer, driver: Any, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    clear_language(driver, liar.url)

    def lie(b: dict[str, Any]) -> None:
        mutate(b)
        if not name.startswith("multiproof"):
            _reprove(b, chain.world.store)

    box = open_lying(driver, liar, f"{liar.url}/l/l-0001#g={chain.genesis_hex}", lie)
    assert box.get_attribute("data-verdict") == "failed", (name, text(driver, "#verdict"))
    assert box.get_attribute("data-reason") == code, (name, text(driver, "#verdict"))
    assert not driver.execute_script("return document.getElementById('verdict-reason').hidden")
    if name == "changed cut":
        screenshot(driver, "failed-tampered-zh", tmp_path, capsys)


def test_a_server_hiding_a_recall_fails_in_the_browser(chain: Chain, liar: TamperingServer, driver: Any,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The recalled label l-0003 served without its recall (a fresh multiproof for the
    events left, and a recall-map path claiming another entry there): the page must not
    say "verified" without the warning; the recall map in the certified header fails it."""
    clear_language(driver, liar.url)

    def hide_recall(b: dict[str, Any]) -> None:
        _drop("recall")(b)
        _reprove(b, chain.world.store)
        b["recalls"].update(other="33" * 32 + "22" * 32)

    box = open_lying(driver, liar, f"{liar.url}/l/l-0003#g={chain.genesis_hex}", hide_recall)
    assert box.get_attribute("data-verdict") == "failed", text(driver, "#verdict")
    assert box.get_attribute("data-reason") == "recalls_not_proven", text(driver, "#verdict")
    assert "召回记录未获账本证明" in text(driver, "#verdict")
    screenshot(driver, "failed-hidden-recall-zh", tmp_path, capsys)


GENESIS_TAMPERS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("other validator key", _swap_validator_key, "wrong_genesis"),
    ("other trace office name", lambda g: g["trace_office"].update(name="假追溯办"), "wrong_genesis"),
    ("later genesis time", lambda g: g.update(time=g["time"] + 1), "wrong_genesis"),
    ("not a genesis", lambda g: g.pop("validators"), "wrong_genesis"),
]


@pytest.mark.parametrize(("name", "mutate", "code"), GENESIS_TAMPERS, ids=[t[0] for t in GENESIS_TAMPERS])
def test_served_genesis_that_does_not_match_the_fingerprint_fails(
        name: str, mutate: Callable[[dict[str, Any]], None], code: str, chain: Chain, liar: TamperingServer,
        driver: Any) -> None:
    """The bundle is genuine, but the genesis document the node serves is not the one
    the QR link's fingerprint names: the page must refuse it."""
    clear_language(driver, liar.url)
    liar.mutate_genesis = mutate
    try:
        box = open_page(driver, f"{liar.url}/l/l-0001#g={chain.genesis_hex[:32]}")
    finally:
        liar.mutate_genesis = None
    assert box.get_attribute("data-verdict") == "failed", (name, text(driver, "#verdict"))
    assert box.get_attribute("data-reason") == code, (name, text(driver, "#verdict"))
    assert "信任锚" in text(driver, "#verdict-reason")


def test_a_liar_serving_its_own_genesis_and_bundle_fails_on_the_fingerprint(chain: Chain, liar: TamperingServer,
                                                                            driver: Any) -> None:
    """Genesis and bundle rewritten to agree with each other (another validator set, the
    bundle's genesis_hash to match): the QR link's fingerprint still names the real chain."""
    fake = json.loads(json.dumps(CHAIN_GENESIS[0]))
    _swap_validator_key(fake)
    fake_hash = _genesis_hash_of_json(fake)

    def mutate_genesis(g: dict[str, Any]) -> None:
        g.clear()
        g.update(copy.deepcopy(fake))

    liar.mutate_genesis = mutate_genesis
    liar.mutate = lambda b: b.update(genesis_hash=fake_hash)
    try:
        box = open_page(driver, f"{liar.url}/l/l-0001#g={chain.genesis_hex}")
    finally:
        liar.mutate_genesis = None
        liar.mutate = None
    assert (box.get_attribute("data-verdict"), box.get_attribute("data-reason")) == ("failed", "fingerprint_mismatch")


def _genesis_hash_of_json(g: dict[str, Any]) -> str:
    from ledger.genesis import Genesis
    from verify import load_genesis_value

    genesis: Genesis = load_genesis_value(g)
    return genesis.hash.hex()


def test_prefetch_serves_the_page_script(chain: Chain, liar: TamperingServer, driver: Any) -> None:
    """On a slow link prefetch.js (small, loaded async) runs before label.js and its modules
    arrive; the page script then takes the bundle and the genesis prefetch.js asked for
    instead of fetching them again."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    liar.delay_s = {"/label.js": 0.8}
    try:
        box = open_page(driver, f"{liar.url}/l/l-0001#g={chain.genesis_hex}")
        assert box.get_attribute("data-verdict") == "verified", text(driver, "#verdict")
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map((r) => new URL(r.name).pathname)")
        assert fetched.count("/v1/labels/l-0001/proof") == 1 and fetched.count("/v1/genesis") == 1, fetched
        hits, taken = driver.execute_script(
            "return [window.lambtracePrefetchHits ?? 0, window.lambtracePrefetchTaken === true]")
        assert (hits, taken) == (2, False)
        assert driver.execute_script("return Object.keys(window.lambtracePrefetch)") == []
    finally:
        liar.delay_s = {}
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})


def test_page_that_lies_about_the_story_fails(chain: Chain, liar: TamperingServer, driver: Any) -> None:
    """A genuine bundle but a page whose rendered story (and embedded summary) says 羊排."""
    real, fake = "羊腿", "羊排"
    liar.rewrite_page = lambda html: html.replace(real, fake).replace(json.dumps(real)[1:-1], json.dumps(fake)[1:-1])
    try:
        box = open_page(driver, f"{liar.url}/l/l-0001#g={chain.genesis_hex}")
    finally:
        liar.rewrite_page = None
    assert (box.get_attribute("data-verdict"), box.get_attribute("data-reason")) == ("failed", "summary_mismatch")


_NO_WEBCRYPTO_ED25519 = """
    const importKey = SubtleCrypto.prototype.importKey;
    SubtleCrypto.prototype.importKey = function (format, key, alg, ...rest) {
      const name = typeof alg === "string" ? alg : alg && alg.name;
      if (String(name).toLowerCase() === "ed25519") {
        return Promise.reject(new DOMException("Unrecognized name.", "NotSupportedError"));
      }
      return importKey.call(this, format, key, alg, ...rest);
    };"""
"""What a phone whose browser engine predates WebCrypto's Ed25519 (Chromium before 137,
Safari before 17, many in-app browsers) answers."""


def _without_webcrypto_ed25519(driver: Any, url: str, *, block_js: bool = False) -> Any:
    hide = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _NO_WEBCRYPTO_ED25519})
    if block_js:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*noble-ed25519*"]})
    try:
        return open_page(driver, url)
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": hide["identifier"]})
        if block_js:
            driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})


def test_without_webcrypto_ed25519_the_page_checks_ed25519_in_javascript(chain: Chain, served: Served,
                                                                        driver: Any) -> None:
    clear_language(driver, served.url)
    box = _without_webcrypto_ed25519(driver, f"{served.url}/l/l-0001#g={chain.genesis_hex}")
    assert box.get_attribute("data-verdict") == "verified", text(driver, "#verdict")
    assert (box.get_attribute("data-checked-by"), box.get_attribute("data-ed25519")) == ("browser", "js")
    assert driver.execute_script("return document.getElementById('verdict-server').hidden")
    assert "页面脚本" in driver.execute_script("return document.getElementById('tech').textContent")


def test_a_forged_signature_fails_in_javascript_too(chain: Chain, liar: TamperingServer, driver: Any) -> None:
    def lie(b: dict[str, Any]) -> None:
        _flip_precommit(b)
        _reprove(b, chain.world.store)

    liar.mutate = lie
    try:
        box = _without_webcrypto_ed25519(driver, f"{liar.url}/l/l-0001#g={chain.genesis_hex}")
    finally:
        liar.mutate = None
    assert box.get_attribute("data-ed25519") == "js"
    assert (box.get_attribute("data-verdict"), box.get_attribute("data-reason")) == ("failed", "bad_certificate")


def test_without_any_ed25519_the_page_uses_the_servers_verdict_and_says_so(chain: Chain, served: Served,
                                                                           driver: Any) -> None:
    """No WebCrypto Ed25519 and the JavaScript one cannot load: the server's verdict, said."""
    clear_language(driver, served.url)
    box = _without_webcrypto_ed25519(driver, f"{served.url}/l/l-0001#g={chain.genesis_hex}", block_js=True)
    assert (box.get_attribute("data-checked-by"), box.get_attribute("data-ed25519")) == ("server", "defer")
    assert "服务器的核验结论" in text(driver, "#verdict-server")
    assert box.get_attribute("data-verdict") == "verified", text(driver, "#verdict")


def test_the_vendored_ed25519_library_is_the_pinned_package() -> None:
    """api/static/vendor/noble-ed25519.js is @noble/ed25519 as tests/js/package-lock.json pins
    it, byte for byte (the lock's integrity hash is over the package's tarball)."""
    lock = json.loads((ROOT / "tests" / "js" / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/@noble/ed25519"]["version"]
    vendored = (ROOT / "api" / "static" / "vendor" / "noble-ed25519.js").read_bytes()
    assert vendored.startswith(b"/*! noble-ed25519 - MIT License")
    assert (ROOT / "api" / "static" / "vendor" / "noble-ed25519.LICENSE").read_text().startswith("The MIT License")
    installed = ROOT / "tests" / "js" / "node_modules" / "@noble" / "ed25519"
    if not installed.is_dir():
        pytest.skip("tests/js is not installed (npm ci --prefix tests/js; scripts/bootstrap does it)")
    assert json.loads((installed / "package.json").read_text())["version"] == pinned
    assert (installed / "index.js").read_bytes() == vendored


# -- verify.js against the Python side --------------------------------------------------------


def _tagged(v: Any) -> Any:
    """A JSON form of a canonical value that keeps bytes and big integers apart."""
    if isinstance(v, bytes):
        return {"$bytes": v.hex()}
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, int):
        return {"$int": str(v)}
    if isinstance(v, list):
        return [_tagged(x) for x in v]
    if isinstance(v, dict):
        return {"$map": {k: _tagged(x) for k, x in v.items()}}
    raise TypeError(type(v))


def _codec_vectors() -> tuple[list[dict[str, Any]], list[str]]:
    ints = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, 2**53, 2**64 - 1,
            -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**53) + 1, -(2**63)]
    strs = ["", "a" * 31, "a" * 32, "a" * 255, "a" * 256, "b" * 65536, "苏尼特左旗", "🐑 lamb"]
    blobs = [b"", bytes(range(256))[:255], bytes(256), b"\x07" * 65536]
    keys = {"a": 1, "b": 2, "B": 3, "é": 4, "中": 5, "\uffff": 6, "🐑": 7, "aa": 8, "": 9}
    values: list[Any] = [None, True, False, *ints, *strs, *blobs, list(range(15)), list(range(16)),
                         {f"k{i:02d}": i for i in range(15)}, {f"k{i:02d}": i for i in range(16)}, keys,
                         {"event": {"body": {"labels": [{"check": b"\x01" * 32, "cut": "羊腿"}]}, "v": 1},
                          "sigs": [{"key": "ab" * 16, "sig": b"\x02" * 64}]}, [[[[[[[[None]]]]]]]]]
    encoded = [{"value": _tagged(v), "hex": codec.encode(v).hex()} for v in values]
    bad = ["cc05", "cd00ff", "d0ff", "d0e0", "d903616263", "c50003616263", "dc0001c0", "de0001a16101",
           "82a16201a16102", "82a16101a16102", "ca3f800000", "cb3ff0000000000000", "d40100", "c0c0", "c1",
           "a2c328", "810102", "91" * 9 + "c0", "a5616263", "cf0000000000000005", "d3ffffffffffffffff"]
    for h in bad:  # the Python codec refuses each of them too
        with pytest.raises(DecodeError):
            codec.decode(bytes.fromhex(h))
    codec.decode(bytes.fromhex("91" * 8 + "c0"))
    return encoded, bad


def _as_v1(b: dict[str, Any], store: Any, genesis_json: dict[str, Any]) -> dict[str, Any]:
    """The archived v1 form (JSON) of a v2 bundle: a path per event, genesis embedded."""
    size = b["checkpoint"]["header"]["log_size"]
    out = {k: copy.deepcopy(v) for k, v in b.items() if k != "proof"}
    out.update(format="lambtrace-label-proof/v1", genesis=copy.deepcopy(genesis_json))
    out["checkpoint"]["certificate"] = _full_certificate(b)
    out["events"] = _as_maps(out["events"])
    for e in out["events"]:
        e["proof"] = [h.hex() for h in merkle.inclusion_proof(e["index"], size, store.get_node)]
    return out


def _recertified(f: Callable[[dict[str, Any]], None], validator: Any, chain: str) -> Callable[[dict[str, Any]], None]:
    """A header change ``f`` made by someone holding the validator's key: the header
    is certified again, so only the verifiers' header checks can catch it."""
    from ledger.blocks.certificate import sign_commit
    from ledger.schema import to_json

    def g(m: dict[str, Any]) -> None:
        hj = m["checkpoint"]["header"]
        f(hj)
        h = _header_of(hj)
        cert = to_json(sign_commit(chain, h.height, 0, h.hash, [("league", validator)]).to_dict())
        if "block" not in m["checkpoint"]["certificate"]:  # v3's certificate: the header gives the rest
            cert = {k: cert[k] for k in ("round", "precommits")}
        m["checkpoint"]["certificate"] = cert

    return g


class Legacy:
    """The same season on a chain whose genesis predates the recall map: its v2 bundle
    and the archived v1 form, which both verifiers still read for such chains."""

    def __init__(self) -> None:
        self.world = w = ApiWorld(MemoryKV(), recall_map=False)
        w.season()
        self.genesis_json = json.loads(json.dumps(w.genesis.to_dict(), default=bytes.hex))
        self.v2 = json.loads(w.http.get("/v1/labels/l-0001/proof").get_data(as_text=True))
        self.v1 = _as_v1(self.v2, w.store, self.genesis_json)


def _mutated_bundles(genuine: dict[str, Any], genesis: Any, store: Any,
                     genesis_json: dict[str, Any], validator: Any = None,
                     legacy: Legacy | None = None, recalled: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Mutations of every part of a genuine JSON bundle (v3; the v2 and archived v1 forms
    of a chain without a recall map; the recalled label l-0003's v3 bundle), each with
    verify.verify_label's code (and, where it is not ``genesis``, the genesis it used)."""
    from verify import verify_label

    cases: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], Any]]] = []
    v1 = legacy.v1 if legacy is not None else _as_v1(genuine, store, genesis_json)

    def add(name: str, f: Callable[[dict[str, Any]], Any], base: dict[str, Any] = genuine) -> None:
        cases.append((name, base, f))

    def embed(f: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
        def g(m: dict[str, Any]) -> None:
            m["genesis"] = copy.deepcopy(genesis_json)
            f(m)

        return g

    for k, e in enumerate(genuine["events"]):
        n = len(_leaf(e)) // 2
        for pos in sorted({0, 1, n // 2, n - 1, n - 40}):

            def flip_leaf(m: dict[str, Any], k: int = k, pos: int = pos) -> None:
                _set_leaf(m["events"][k], _flip(_leaf(m["events"][k]), pos))

            add(f"leaf {k} byte {pos}", flip_leaf)

        def drop_event(m: dict[str, Any], k: int = k) -> None:
            m["events"].pop(k)
            _reprove(m, store)

        def bump_index(m: dict[str, Any], k: int = k) -> None:
            _set_index(m["events"][k], _index(m["events"][k]) + 1)

        add(f"drop event {k}", drop_event)
        add(f"index {k} + 1", bump_index)
    add("drop event 0, proof kept", lambda m: m["events"].pop(0))
    for k in range(len(_hashes(genuine["proof"]))):

        def flip_hash(m: dict[str, Any], k: int = k) -> None:
            _flip_multiproof(m, k, 3)

        add(f"multiproof hash {k}", flip_hash)
    add("multiproof truncated", lambda m: m.update(proof=m["proof"][:-64]))
    add("multiproof a byte short", lambda m: m.update(proof=m["proof"][:-2]))
    add("multiproof with one more", lambda m: m.update(proof=m["proof"] + m["proof"][:64]))
    add("multiproof reversed", lambda m: m.update(proof="".join(_hashes(m["proof"])[::-1])))
    add("multiproof emptied", lambda m: m.update(proof=""))
    add("multiproof as a list (v2's form)", lambda m: m.update(proof=_hashes(m["proof"])))
    add("multiproof uppercase", lambda m: m.update(proof=m["proof"].upper()))
    add("no multiproof", lambda m: m.pop("proof"))
    add("event with a path (v1 shape)", lambda m: m["events"].__setitem__(0, {**_as_maps(m["events"])[0], "proof": []}))
    add("event as a map (v2's form)", lambda m: m["events"].__setitem__(0, _as_maps(m["events"])[0]))
    add("events as maps (v2's form)", lambda m: m.update(events=_as_maps(m["events"])))
    add("event as [leaf, index]", lambda m: m["events"][0].reverse())
    add("event a triple", lambda m: m["events"][0].append(m["events"][0][1]))
    add("event index as text", lambda m: m["events"][0].__setitem__(0, str(m["events"][0][0])))
    add("swap events", _reorder)
    for field in ("prev", "log_root", "validators"):

        def flip_field(m: dict[str, Any], field: str = field) -> None:
            m["checkpoint"]["header"].update({field: _flip(m["checkpoint"]["header"][field], 0)})

        add(f"header.{field}", flip_field)
    for field in ("height", "time", "log_size"):

        def bump_field(m: dict[str, Any], field: str = field) -> None:
            m["checkpoint"]["header"].update({field: m["checkpoint"]["header"][field] + 1})

        add(f"header.{field}", bump_field)
    add("header.chain", lambda m: m["checkpoint"]["header"].update(chain="other"))
    add("header.proposer", lambda m: m["checkpoint"]["header"].update(proposer="other"))
    if validator is not None:
        add("re-certified header, proposer no validator",
            _recertified(lambda h: h.update(proposer="other"), validator, genesis.chain))
        add("re-certified header with another state_root",
            _recertified(lambda h: h.update(state_root="ab" * 32), validator, genesis.chain))
        add("re-certified header without a state_root",
            _recertified(lambda h: h.pop("state_root", None), validator, genesis.chain))
        add("re-certified genuine header", _recertified(lambda h: None, validator, genesis.chain))
        if recalled is not None:
            # a server certifying a map in which the recalled label has no entry still
            # cannot drop the recall: its state_root would not be the validators'
            add("l-0003: recall dropped, its entry made up away",
                _recertified(lambda h: h.update(state_root="00" * 32), validator, genesis.chain), recalled)
    # the recall map path
    add("recalls dropped", lambda m: m.pop("recalls"))

    def drop_recalls_v2(m: dict[str, Any]) -> None:
        m.pop("recalls")
        m.update(format="lambtrace-label-proof/v2")

    def drop_recalls_in_v2_form(m: dict[str, Any]) -> None:
        m.pop("recalls")
        m.update(format="lambtrace-label-proof/v2", proof=_hashes(m["proof"]), events=_as_maps(m["events"]),
                 checkpoint={**m["checkpoint"], "certificate": _full_certificate(m)})

    add("recalls dropped, format v2", drop_recalls_v2)
    add("recalls dropped, in v2's form", drop_recalls_in_v2_form)
    add("recalls depth + 1", lambda m: m["recalls"].update(depth=m["recalls"]["depth"] + 1))
    add("recalls mask not hex", lambda m: m["recalls"].update(mask="zz"))
    add("recalls with a sibling", lambda m: m["recalls"].update(depth=1, mask="80", siblings="11" * 32))
    add("recalls with an empty sibling", lambda m: m["recalls"].update(depth=1, mask="80", siblings="00" * 32))
    add("recalls siblings a list", lambda m: m["recalls"].update(depth=1, mask="80", siblings=["11" * 32]))
    add("recalls other of this label", lambda m: m["recalls"].update(
        other=hashlib.sha256(b"lambtrace/recall-key/v1l-0001").hexdigest() + "22" * 32))
    add("recalls other elsewhere", lambda m: m["recalls"].update(other="33" * 32 + "22" * 32))
    add("recalls other a list", lambda m: m["recalls"].update(other=["33" * 32, "22" * 32]))
    add("recalls unknown field", lambda m: m["recalls"].update(x=1))
    if recalled is not None:
        add("l-0003: genuine", lambda m: None, recalled)

        def drop_recall_event(m: dict[str, Any]) -> None:
            _drop("recall")(m)
            _reprove(m, store)

        def claim_no_entry(m: dict[str, Any]) -> None:
            _drop("recall")(m)
            _reprove(m, store)
            m["recalls"].update(other="33" * 32 + "22" * 32)

        add("l-0003: recall event dropped", drop_recall_event, recalled)
        add("l-0003: claims no entry", claim_no_entry, recalled)
        add("l-0003: recall path sibling flipped", lambda m: m["recalls"].update(
            siblings=_flip(m["recalls"]["siblings"], 1)) if m["recalls"]["siblings"] else m["recalls"].update(
            depth=1, mask="80", siblings="44" * 32), recalled)
    cert = lambda m: m["checkpoint"]["certificate"]
    add("cert.round", lambda m: cert(m).update(round=cert(m)["round"] + 1))
    add("cert.block added (v2's form)", lambda m: cert(m).update(block=_full_certificate(m)["block"]))
    add("cert.height added", lambda m: cert(m).update(height=_full_certificate(m)["height"]))
    add("cert in full (v2's form)", lambda m: m["checkpoint"].update(certificate=_full_certificate(m)))
    add("cert.sig", _flip_precommit)
    add("cert.none", lambda m: cert(m).update(precommits=[]))
    add("cert.twice", lambda m: cert(m)["precommits"].append(cert(m)["precommits"][0]))
    add("genesis_hash", lambda m: m.update(genesis_hash=_flip(m["genesis_hash"], 0)))
    add("embedded genesis.time", embed(lambda m: m["genesis"].update(time=m["genesis"]["time"] + 1)))
    add("embedded genesis validator", embed(lambda m: _swap_validator_key(m["genesis"])))
    add("embedded genesis root key", embed(lambda m: m["genesis"]["trace_office"]["keys"][0].update(
        pub=_flip(m["genesis"]["trace_office"]["keys"][0]["pub"], 0))))
    add("label", lambda m: m.update(label="l-0002"))
    for fmt in ("lambtrace-label-proof/v0", "lambtrace-label-proof/v1", "lambtrace-label-proof/v2",
                "lambtrace-label-proof/v4", 2):

        def set_format(m: dict[str, Any], fmt: str | int = fmt) -> None:
            m.update(format=fmt)

        add(f"format {fmt}", set_format)
    add("no format", lambda m: m.pop("format"))
    add("gaps", lambda m: m.update(gaps=[{"kind": "key", "subject": "k", "reason": "not found"}]))
    add("unknown field", lambda m: m.update(extra=1))
    add("no events", lambda m: m.update(events=[]))
    add("changed cut", _change_cut)
    # the archived v1 form
    add("v1: proof 0 hash", lambda m: m["events"][0]["proof"].__setitem__(0, _flip(m["events"][0]["proof"][0], 3)),
        v1)
    add("v1: proof 1 truncated", lambda m: m["events"][1]["proof"].pop(), v1)
    add("v1: no genesis", lambda m: m.pop("genesis"), v1)
    add("v1: genesis.time", lambda m: m["genesis"].update(time=m["genesis"]["time"] + 1), v1)
    add("v1: genesis validator", lambda m: _swap_validator_key(m["genesis"]), v1)
    add("v1: a multiproof", lambda m: m.update(proof=[]), v1)
    add("v1: format v2", lambda m: m.update(format="lambtrace-label-proof/v2"), v1)
    add("v1: drop event 0", lambda m: m["events"].pop(0), v1)
    if legacy is not None:
        add("v2: genuine", lambda m: None, legacy.v2)

        def drop_first_event(m: dict[str, Any]) -> None:
            m["events"].pop(0)
            _reprove(m, legacy.world.store)

        add("v2: drop event 0", drop_first_event, legacy.v2)
        add("v2: multiproof hash 0", lambda m: _flip_multiproof(m, 0, 3), legacy.v2)
        add("v2: cert.block", lambda m: cert(m).update(block=_flip(cert(m)["block"], 0)), legacy.v2)
        add("v2: cert.height", lambda m: cert(m).update(height=cert(m)["height"] + 1), legacy.v2)
        add("v2: multiproof as one string (v3's form)", lambda m: m.update(proof="".join(m["proof"])), legacy.v2)
        add("v2: with a recall proof", lambda m: m.update(format="lambtrace-label-proof/v3", recalls={
            "depth": 0, "mask": "", "siblings": "", "other": ""}), legacy.v2)
        add("v2: in v3's form on its chain", lambda m: m.update(
            format="lambtrace-label-proof/v3", proof="".join(m["proof"]),
            events=[[_index(e), _leaf(e)] for e in m["events"]],
            checkpoint={**m["checkpoint"], "certificate": {k: cert(m)[k] for k in ("round", "precommits")}},
            recalls={"depth": 0, "mask": "", "siblings": "", "other": ""}), legacy.v2)
        add("v2: re-certified header with a state_root",
            _recertified(lambda h: h.update(state_root="ab" * 32), legacy.world.validator, legacy.world.genesis.chain),
            legacy.v2)
        v1_here = {k: v for k, v in _as_v1(genuine, store, genesis_json).items() if k != "recalls"}
        add("v1 on a chain with a recall map", lambda m: None, v1_here)
    out = []
    for name, base, f in cases:
        m = copy.deepcopy(base)
        f(m)
        old = legacy is not None and (base is legacy.v1 or base is legacy.v2)
        g = legacy.world.genesis if old and legacy is not None else genesis
        label = "l-0003" if base is recalled else "l-0001"
        try:
            verify_label(json.dumps(m), g, label=label)
            code = None
        except VerificationError as exc:
            code = exc.code
        case: dict[str, Any] = {"name": name, "bundle": m, "code": code, "label": label}
        if old and legacy is not None:
            case["genesis"] = legacy.genesis_json
            case["fingerprint"] = legacy.world.genesis.hash.hex()
        out.append(case)
    return out


def _multiproof_vectors() -> list[dict[str, Any]]:
    """Multiproofs from ledger.merkle over trees of 1 to 300 leaves (and their
    mutations, each refused by merkle.verify_multiproof too)."""
    import random

    rng = random.Random(9162)
    out: list[dict[str, Any]] = []
    for n in [1, 2, 3, 5, 8, 13, 64, 100, 257, 300]:
        cr = merkle.CompactRange()
        nodes: dict[tuple[int, int], bytes] = {}
        for i in range(n):
            for level, index, h in cr.append(merkle.leaf_hash(b"leaf %d" % i)):
                nodes[(level, index)] = h
        root = cr.root()
        for t in range(4):
            picks = sorted(rng.sample(range(n), rng.randint(1, min(n, 12))))

            def node_at(lv: int, ix: int, nodes: dict[tuple[int, int], bytes] = nodes) -> bytes:
                return nodes[(lv, ix)]

            proof = merkle.multiproof(picks, n, node_at)
            leaves = [(i, nodes[(0, i)]) for i in picks]
            cases = [("genuine", leaves, proof, True), ("extra hash", leaves, [*proof, root], False),
                     ("changed leaf", [(leaves[0][0], merkle.leaf_hash(b"forged")), *leaves[1:]], proof, False)]
            if proof:
                cases += [("missing hash", leaves, proof[1:], False),
                          ("changed hash", leaves, [bytes(32), *proof[1:]], False)]
            free = [i for i in range(n) if i not in picks]
            if free:
                moved = sorted([(rng.choice(free), leaves[0][1]), *leaves[1:]])
                cases.append(("moved index", moved, proof, False))
            for what, lv, pf, valid in cases:
                if not valid:
                    with pytest.raises(VerificationError):
                        merkle.verify_multiproof(dict(lv), n, pf, root)
                out.append({"name": f"multiproof n={n} #{t} {what}", "size": n, "root": root.hex(), "valid": valid,
                            "leaves": [[i, h.hex()] for i, h in lv], "proof": [h.hex() for h in pf]})
    return out


_HARNESS = r"""
const [vectors, done] = arguments;
import("/static/verify.js").then(async (V) => {
  const problems = [];
  const fromHex = (h) => V.hexToBytes(h);
  const untag = (v) => {
    if (Array.isArray(v)) return v.map(untag);
    if (v !== null && typeof v === "object") {
      if ("$bytes" in v) return fromHex(v.$bytes);
      if ("$int" in v) {
        const i = BigInt(v.$int);
        return i >= -(2n ** 53n) + 1n && i <= 2n ** 53n - 1n ? Number(i) : i;
      }
      if ("$map" in v) { const o = {}; for (const [k, x] of Object.entries(v.$map)) o[k] = untag(x); return o; }
    }
    return v;
  };
  const expect = (ok, what) => { if (!ok) problems.push(what); };
  const throws = async (f) => { try { await f(); return false; } catch (e) { return true; } };
  // canonical msgpack
  for (const c of vectors.encoded) {
    const mine = V.bytesToHex(V.encode(untag(c.value)));
    expect(mine === c.hex, `encode ${c.hex.slice(0, 40)}: got ${mine.slice(0, 40)}`);
    let again = null;
    try { again = V.bytesToHex(V.encode(V.decode(fromHex(c.hex)))); } catch (e) { again = String(e); }
    expect(again === c.hex, `decode/encode ${c.hex.slice(0, 40)}: ${again.slice(0, 60)}`);
  }
  for (const h of vectors.bad) {
    expect(await throws(() => V.decode(fromHex(h))), `decode accepted non-canonical ${h.slice(0, 40)}`);
  }
  // hashes of the chain's genesis, headers, votes, keys and leaves
  const g = V.genesisFromJson(vectors.genesis.json);
  expect(V.bytesToHex(await V.genesisHash(g)) === vectors.genesis.hash, "genesis hash");
  expect(V.bytesToHex(await V.validatorsHash(g.validators)) === vectors.genesis.validators, "validators hash");
  for (const h of vectors.headers) {
    const header = V.headerFromJson(h.json);
    expect(V.bytesToHex(await V.headerHash(header)) === h.hash, `header ${h.json.height} hash`);
    expect(await throws(() => V.headerFromJson({ ...h.json, state_root: null })),
           `header ${h.json.height} with state_root null accepted`);
    const c = V.certificateFromJson(h.certificate);
    const vote = V.voteBytes("precommit", header.chain, c.height, c.round, c.block);
    expect(V.bytesToHex(vote) === h.vote, `vote ${h.json.height}`);
  }
  for (const k of vectors.keys) expect(await V.keyId(k.alg, fromHex(k.pub)) === k.id, `key id ${k.alg}`);
  for (const l of vectors.leaves) {
    try {
      const ev = await V.parseLeaf(fromHex(l.leaf));
      expect(V.bytesToHex(ev.id) === l.id && V.bytesToHex(ev.envelopeBytes) === l.envelope, `leaf ${l.id}`);
    } catch (e) { problems.push(`leaf ${l.id}: ${e}`); }
  }
  // RFC 9162 inclusion
  for (const c of vectors.merkle.inclusion) {
    const root = await V.rootFromInclusionProof(fromHex(c.leaf_hash), c.index, c.size, c.proof.map(fromHex));
    expect(V.bytesToHex(root) === c.root, c.name);
    expect(V.inclusionProofLength(c.index, c.size) === c.proof.length, `${c.name} length`);
  }
  for (const m of vectors.merkle.mutations) {
    const i = m.input;
    let accepted = false;
    try {
      const root = await V.rootFromInclusionProof(fromHex(i.leaf_hash), i.index, i.size, i.proof.map(fromHex));
      accepted = V.bytesToHex(root) === i.root;
    } catch (e) { accepted = false; }
    expect(!accepted, `merkle mutation accepted: ${m.name}`);
  }
  for (const h of vectors.merkle.hasher) {
    let got;
    if (h.kind === "empty") got = await V.sha256(new Uint8Array());
    else if (h.kind === "leaf") got = await V.leafHash(fromHex(h.data));
    else got = await V.nodeHash(fromHex(h.left), fromHex(h.right));
    expect(V.bytesToHex(got) === h.hash, h.name);
  }
  // signatures
  const noble = await import("/static/vendor/noble-ed25519.js");
  for (const s of vectors.signatures) {
    const ok = await V.verifySignature(s.alg, fromHex(s.pub), fromHex(s.message), fromHex(s.sig));
    expect(ok === s.valid, `${s.alg} ${s.name}: got ${ok}`);
    if (s.alg !== "ed25519") continue;
    const js = await V.verifySignature(s.alg, fromHex(s.pub), fromHex(s.message), fromHex(s.sig), "js");
    expect(js === s.valid, `${s.alg} ${s.name} in JavaScript: got ${js}`);
    if (s.cofactored !== undefined) {
      // the library's own verify (cofactored) would answer otherwise: what the vector tells apart
      const lib = await noble.verifyAsync(fromHex(s.sig), fromHex(s.message), fromHex(s.pub), { zip215: false });
      expect(lib === s.cofactored, `${s.name}: the library's own verify gave ${lib}`);
    }
  }
  expect(await V.ed25519JsAvailable(), "ed25519JsAvailable");
  for (const p of vectors.points) {
    const full = V.bytesToHex(V.decompressP256(fromHex(p.compressed)));
    expect(full === p.uncompressed, `decompress ${p.compressed}`);
  }
  // multiproofs: the same length and root as ledger.merkle, and every mutation refused
  for (const c of vectors.multiproofs) {
    const leaves = c.leaves.map(([index, h]) => ({ index, hash: fromHex(h) }));
    const indexes = c.leaves.map(([index]) => index);
    let got = null;
    try {
      if (c.valid) expect(V.multiproofLength(indexes, c.size) === c.proof.length, `${c.name} length`);
      got = V.bytesToHex(await V.rootFromMultiproof(leaves, c.size, c.proof.map(fromHex)));
    } catch (e) { got = `error ${e.code}: ${e.message}`; }
    expect((got === c.root) === c.valid, `${c.name}: root ${got} (valid: ${c.valid})`);
  }
  // whole bundles: the genuine one, then every mutation, each with Python's verdict
  const genesis = vectors.genesis.json;
  const report = await V.verifyLabelBundle(vectors.bundles.genuine,
                                           { label: "l-0001", fingerprint: vectors.genesis.hash, genesis });
  const story = report.story;
  for (const [k, want] of Object.entries(vectors.bundles.story)) {
    let got = k.split(".").reduce((o, p) => o?.[p], story);
    if (k === "custody") got = got.map((h) => ({ shipment: h.shipment, from: h.from, to: h.to }));
    const same = V.bytesToHex(V.encode(got ?? null)) === V.bytesToHex(V.encode(want ?? null));  // key order aside
    expect(same, `story ${k}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
  }
  for (const [label, bundle] of Object.entries(vectors.bundles.more)) {
    try {
      await V.verifyLabelBundle(bundle, { label, fingerprint: vectors.genesis.hash, genesis });
    } catch (e) { problems.push(`genuine ${label} refused: ${e.code} ${e.message}`); }
  }
  for (const [name, form] of Object.entries(vectors.bundles.forms)) {  // v3 with genesis embedded; v2, v1
    for (const given of form.embedded ? [null, form.genesis] : [form.genesis]) {
      try {
        await V.verifyLabelBundle(form.bundle, { label: "l-0001", fingerprint: form.hash, genesis: given });
      } catch (e) {
        problems.push(`genuine ${name} (genesis given: ${given !== null}) refused: ${e.code} ${e.message}`);
      }
    }
  }
  let noGenesis = null;
  try { await V.verifyLabelBundle(vectors.bundles.genuine, { label: "l-0001", fingerprint: vectors.genesis.hash }); }
  catch (e) { noGenesis = e.code; }
  expect(noGenesis === "no_genesis", `a v2 bundle without any genesis: ${noGenesis}`);
  const codes = [];
  for (const c of vectors.bundles.mutations) {
    let code = null;
    const given = c.genesis ?? genesis;
    try { await V.verifyLabelBundle(c.bundle, { label: c.label, fingerprint: null, genesis: given }); }
    catch (e) { code = e.code ?? `crash: ${e}`; }
    codes.push(code);
    expect(code === c.code, `bundle mutation "${c.name}": verify.js says ${code}, verify_label says ${c.code}`);
  }
  return { problems, codes };
}).then(done, (e) => done({ problems: [`harness: ${e && e.stack || e}`], codes: [] }));
"""


_ORDER_8 = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
"""A point of order 8 (libsodium's list of small-order encodings)."""


def _ed25519_torsion_vectors() -> list[dict[str, Any]]:
    """Ed25519 signatures a key holder can craft to tell the cofactored equation (the
    library's own verify, ZIP 215) from libsodium's cofactorless one: R or A with a
    component of order 8. Each carries libsodium's verdict (``ledger.sigs``), which the
    browser's JavaScript path must give, and what the cofactored equation answers."""
    import nacl.bindings as nb

    from ledger.sigs import verify_signature

    out: list[dict[str, Any]] = []
    rng = random.Random(8)
    for n in range(6):
        seed = rng.randbytes(32)
        hd = hashlib.sha512(seed).digest()
        a = bytearray(hd[:32])
        a[0] &= 248
        a[31] = (a[31] & 127) | 64
        pub = nb.crypto_scalarmult_ed25519_base_noclamp(bytes(a))
        msg = f"lambtrace torsion {n}".encode()
        r = nb.crypto_core_ed25519_scalar_reduce(rng.randbytes(64))
        r_point = nb.crypto_scalarmult_ed25519_base_noclamp(r)

        def sign(big_r: bytes, key: bytes, r: bytes = r, a: bytes = bytes(a), msg: bytes = msg) -> bytes:
            h = nb.crypto_core_ed25519_scalar_reduce(hashlib.sha512(big_r + key + msg).digest())
            return big_r + nb.crypto_core_ed25519_scalar_add(r, nb.crypto_core_ed25519_scalar_mul(h, a))

        plain = sign(r_point, pub)
        mixed_r = nb.crypto_core_ed25519_add(r_point, _ORDER_8)
        torsion_r = sign(mixed_r, pub)
        mixed_a = nb.crypto_core_ed25519_add(pub, _ORDER_8)
        torsion_a = sign(r_point, mixed_a)
        assert verify_signature("ed25519", pub, msg, plain) and not verify_signature("ed25519", pub, msg, torsion_r)
        out += [
            {"alg": "ed25519", "name": f"crafted {n}", "pub": pub.hex(), "message": msg.hex(), "sig": plain.hex(),
             "valid": True},
            {"alg": "ed25519", "name": f"crafted {n}, R with an order-8 part", "pub": pub.hex(), "message": msg.hex(),
             "sig": torsion_r.hex(), "valid": False, "cofactored": True},
            {"alg": "ed25519", "name": f"crafted {n}, A with an order-8 part", "pub": mixed_a.hex(),
             "message": msg.hex(), "sig": torsion_a.hex(),
             "valid": verify_signature("ed25519", mixed_a, msg, torsion_a), "cofactored": True},
        ]
    return out


def test_js_verifier_matches_python(chain: Chain, served: Served, driver: Any,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from verify import verify_label

    w = chain.world
    store = w.store
    encoded, bad = _codec_vectors()
    headers = []
    for height in range(1, store.height + 1):
        h = store.header(height)
        c = store.certificate(height)
        assert h is not None and c is not None
        headers.append({"json": json.loads(json.dumps(h.to_dict(), default=bytes.hex)), "hash": h.hash.hex(),
                        "certificate": json.loads(json.dumps(c.to_dict(), default=bytes.hex)),
                        "vote": vote_bytes("precommit", h.chain, c.height, c.round, c.block).hex()})
    leaves = []
    for _i, leaf in store.leaves(0, store.last_header.log_size if store.last_header else 0):
        ev = parse_leaf(leaf)
        leaves.append({"leaf": leaf.hex(), "id": ev.id.hex(), "envelope": ev.envelope_bytes.hex()})
    keys = [{"alg": s.alg, "pub": s.public_key.hex(), "id": key_id(s.alg, s.public_key)}
            for s in (w.keys[OFFICE], chain.ecdsa, generate("ecdsa-p256"))]
    signatures: list[dict[str, Any]] = []
    rfc = json.loads((VECTORS / "rfc8032_ed25519.json").read_text())
    for v in rfc["vectors"]:
        signatures.append({"alg": "ed25519", "name": v["name"], "pub": v["public_key"], "message": v["message"],
                           "sig": v["signature"], "valid": True})
        signatures.append({"alg": "ed25519", "name": v["name"] + " flipped", "pub": v["public_key"],
                           "message": v["message"], "sig": _flip(v["signature"], 40), "valid": False})
        r, s = bytes.fromhex(v["signature"][:64]), int.from_bytes(bytes.fromhex(v["signature"][64:]), "little")
        signatures.append({"alg": "ed25519", "name": v["name"] + " S+L", "pub": v["public_key"],
                           "message": v["message"], "sig": (r + (s + ED25519_L).to_bytes(32, "little")).hex(),
                           "valid": False})
    signatures += _ed25519_torsion_vectors()
    points = []
    for n in range(6):
        k = generate("ecdsa-p256")
        msg = f"lambtrace vote {n}".encode()
        sig = k.sign(msg)
        r_, s_ = sig[:32], int.from_bytes(sig[32:], "big")
        high = r_ + (P256_ORDER - s_).to_bytes(32, "big")
        signatures += [
            {"alg": "ecdsa-p256", "name": f"key {n}", "pub": k.public_key.hex(), "message": msg.hex(),
             "sig": sig.hex(), "valid": True},
            {"alg": "ecdsa-p256", "name": f"key {n} high-S", "pub": k.public_key.hex(), "message": msg.hex(),
             "sig": high.hex(), "valid": False},
            {"alg": "ecdsa-p256", "name": f"key {n} other message", "pub": k.public_key.hex(),
             "message": (msg + b"!").hex(), "sig": sig.hex(), "valid": False},
        ]
        full = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), k.public_key).public_bytes(
            Encoding.X962, PublicFormat.UncompressedPoint)
        points.append({"compressed": k.public_key.hex(), "uncompressed": full.hex()})
    assert {p["compressed"][:2] for p in points} <= {"02", "03"}
    merkle_vectors = json.loads((VECTORS / "merkle.json").read_text())
    genuine = requests.get(served.url + "/v1/labels/l-0001/proof", timeout=10).json()
    py = verify_label(json.dumps(genuine), w.genesis, label="l-0001")
    story = {
        "cut": py.cut, "net_mass_g": py.net_mass_g, "packed": py.packed, "carcass": py.carcass, "tag": py.tag,
        "check_commitment": py.check_commitment.hex(), "lamb.banner": py.banner, "lamb.sumu": py.sumu,
        "lamb.born": py.born, "lamb.breed": py.breed, "lamb.sex": py.sex, "lamb.tagged_at": py.tagged_at,
        "lamb.cooperative": py.cooperative, "lamb.cooperative_name": py.cooperative_name,
        "plant.id": py.plant, "plant.name": py.plant_name, "plant.banner": py.plant_banner,
        "slaughter.date": py.slaughter_date, "slaughter.quarantine_cert": py.quarantine_cert,
        "slaughter.carcass_mass_g": py.carcass_mass_g,
        "custody": [{"shipment": h.shipment, "from": h.from_actor, "to": h.to_actor} for h in py.custody],
    }
    more = {label: requests.get(f"{served.url}/v1/labels/{label}/proof", timeout=10).json()
            for label in ("l-0002", "l-0003")}
    for label, bundle in more.items():
        verify_label(json.dumps(bundle), w.genesis, label=label)
    kinds = {parse_leaf(bytes.fromhex(_leaf(e))).kind for e in genuine["events"]}
    assert {"actor.revoke", "key.rotate", "device.register"} <= kinds  # the membership replay is exercised
    genesis_json = requests.get(served.url + "/v1/genesis", timeout=10).json()
    legacy = Legacy()
    recalled = requests.get(served.url + "/v1/labels/l-0003/proof", timeout=10).json()
    mutations = _mutated_bundles(genuine, w.genesis, store, genesis_json, w.validator, legacy, recalled)
    by_name = {c["name"]: c["code"] for c in mutations}
    assert by_name["re-certified header, proposer no validator"] == "bad_certificate"
    assert by_name["re-certified header without a state_root"] == "bad_certificate"
    assert by_name["v2: re-certified header with a state_root"] == "bad_certificate"
    for name in ("re-certified header with another state_root", "l-0003: recall dropped, its entry made up away",
                 "l-0003: recall event dropped", "l-0003: claims no entry", "l-0003: recall path sibling flipped",
                 "recalls with a sibling", "recalls other of this label", "recalls other elsewhere"):
        assert by_name[name] == "recalls_not_proven", (name, by_name[name])
    assert by_name["recalls dropped, in v2's form"] == by_name["v1 on a chain with a recall map"] == "incomplete_bundle"
    assert by_name["v2: with a recall proof"] == by_name["recalls dropped"] == "malformed_bundle"
    assert by_name["v2: in v3's form on its chain"] == by_name["recalls dropped, format v2"] == "malformed_bundle"
    for name in ("multiproof as a list (v2's form)", "cert in full (v2's form)", "recalls siblings a list",
                 "event as a map (v2's form)", "events as maps (v2's form)", "event as [leaf, index]", "event a triple",
                 "recalls other a list", "v2: multiproof as one string (v3's form)"):
        assert by_name[name] == "malformed_bundle", (name, by_name[name])
    forms = {
        "v3+genesis": {"bundle": requests.get(served.url + "/v1/labels/l-0001/proof?genesis=1", timeout=10).json(),
                       "genesis": genesis_json, "hash": w.genesis.hash.hex(), "embedded": True},
        "v2 (no recall map)": {"bundle": legacy.v2, "genesis": legacy.genesis_json,
                               "hash": legacy.world.genesis.hash.hex(), "embedded": False},
        "v1 (no recall map)": {"bundle": legacy.v1, "genesis": legacy.genesis_json,
                               "hash": legacy.world.genesis.hash.hex(), "embedded": True},
    }
    for name, form in forms.items():
        g = w.genesis if name.startswith("v3") else legacy.world.genesis
        verify_label(json.dumps(form["bundle"]), g, label="l-0001")
    # Leaving out a revocation that came after every signature it touches goes unnoticed
    # (no bundle can prove an absence; docs/label-proof.md); everything else must fail.
    parsed = [parse_leaf(bytes.fromhex(_leaf(e))) for e in genuine["events"]]
    revocations = {f"drop event {k}" for k, ev in enumerate(parsed)
                   if ev.kind == "actor.revoke" or (ev.kind == "key.rotate" and ev.body.get("revoke"))}
    assert len(revocations) == 2
    assert {c["name"] for c in mutations if c["code"] is None} == revocations | {
        "re-certified genuine header", "l-0003: genuine", "v2: genuine"}
    vectors: dict[str, Any] = {
        "encoded": encoded, "bad": bad, "headers": headers, "leaves": leaves, "keys": keys,
        "genesis": {"json": genesis_json, "hash": w.genesis.hash.hex(),
                    "validators": w.genesis.validators_hash.hex()},
        "multiproofs": _multiproof_vectors(),
        "signatures": signatures, "points": points,
        "merkle": {"inclusion": merkle_vectors["inclusion"], "hasher": merkle_vectors["hasher"],
                   "mutations": [m for m in merkle_vectors["mutations"] if m["verify"] == "inclusion"]},
        "bundles": {"genuine": genuine, "story": story, "more": more, "forms": forms, "mutations": mutations},
    }
    driver.get(served.url + "/l/l-0001")
    t0 = time.monotonic()
    result = driver.execute_async_script(_HARNESS, vectors)
    with capsys.disabled():
        print(f"\n  verify.js vs Python: {len(encoded)} encodings, {len(bad)} refusals, {len(headers)} headers, "
              f"{len(leaves)} leaves, {len(signatures)} signatures, {len(vectors['multiproofs'])} multiproofs, "
              f"{len(mutations)} bundle mutations "
              f"in {time.monotonic() - t0:.2f} s")
    assert result["problems"] == [], "\n".join(result["problems"][:40])
