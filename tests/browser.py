"""Headless Chromium for the page tests: one way to find it, start it and take screenshots."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("LAMBTRACE_ARTIFACTS") or Path(tempfile.gettempdir()) / "lambtrace-artifacts")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}


def browser_missing() -> str | None:
    """Why no headless browser can run here, or None when one can."""
    if not Path(CHROMIUM).exists():
        return f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium)"
    if not Path(CHROMEDRIVER).exists():
        return f"chromedriver is not installed at {CHROMEDRIVER} (Debian: apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed in this environment (pip install selenium)"
    return None


def start_chromium(profile: Path, *, window: str, script_timeout_s: int = 60) -> Any:
    """Headless Chromium with the flags this machine needs and a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-quic", "--disable-dev-shm-usage", f"--window-size={window}",
                f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    d.set_script_timeout(script_timeout_s)
    return d


def full_page_screenshot(driver: Any, name: str, metrics: dict[str, Any], tmp_path: Path, shots: Path,
                         capsys: pytest.CaptureFixture[str]) -> Path:
    """A full-page PNG at the given viewport, in tmp_path and copied to ``shots`` (printed)."""
    driver.execute_script("window.scrollTo(0, 0)")  # a sticky top bar is drawn where the page was scrolled to
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": metrics["width"], "height": max(size["height"], metrics["height"]),
                 "scale": 1}})
    path = tmp_path / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    shots.mkdir(parents=True, exist_ok=True)
    kept = shots / path.name
    shutil.copyfile(path, kept)
    with capsys.disabled():
        print(f"\n  screenshot: {kept}")
    return kept


AXE = Path(__file__).parent / "js" / "node_modules" / "axe-core" / "axe.min.js"


def axe_missing() -> str | None:
    """Why the pages' accessibility cannot be checked here, or None when it can."""
    if not AXE.exists():
        return f"axe-core is not installed at {AXE} (scripts/bootstrap installs it with npm)"
    return None


def accessibility_violations(driver: Any) -> list[str]:
    """What axe-core (WCAG 2.x A and AA, and its best practices) finds wrong with the page
    as it is now, one line per rule and element; empty when nothing."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(AXE.read_text())
    found = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then((r) => done(r.violations.flatMap((v) => v.nodes.map((n) =>"
        " `${v.impact} ${v.id}: ${v.help} at ${n.target.join(' ')}: ${n.failureSummary.replace(/\\s+/g, ' ')}`))))"
        ".catch((e) => done([`axe failed: ${e}`]));")
    return [str(x) for x in found]
