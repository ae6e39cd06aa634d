"""The run report and the comparison report in a real browser: headless Chromium driven by Playwright.

Checks, for each report: no console errors and no uncaught page errors (a Content-Security-Policy
violation, a broken image or a blocked resource is logged as a console error), every section id
present and laid out (non-zero height), every image loaded and decoded (``naturalWidth > 0`` and
``HTMLImageElement.decode()`` resolves), and a full-page screenshot saved as an artifact under the
test's tmp dir and, when ``CMR_AUDIT_ARTIFACTS`` is set, into that folder.

The reports forbid scripts with a strict CSP; Playwright evaluates page state through the Chrome
DevTools Protocol (``Runtime.evaluate``), which the page's CSP does not govern, so the checks
still run (``test_checks_catch_broken_pages`` shows that they also catch real failures).

Needs the ``playwright`` Python package (the ``test`` extra; it drives the system browser, no
browser download) and a Chromium binary: ``$CMR_AUDIT_CHROMIUM``, else ``chromium`` /
``chromium-browser`` / ``google-chrome`` on PATH (Debian: ``apt-get install chromium``, which
``.ci/run`` does when it can). Without either the tests skip and say which is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def chromium_binary() -> str | None:
    explicit = os.environ.get("CMR_AUDIT_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the Python package 'playwright' is not installed (pip install -e '.[test]')")
    binary = chromium_binary()
    if binary is None:
        where = (f"CMR_AUDIT_CHROMIUM={os.environ['CMR_AUDIT_CHROMIUM']} is not a file" if os.environ.get("CMR_AUDIT_CHROMIUM")
                 else f"none of {', '.join(BROWSERS)} is on PATH")
        pytest.skip(f"no Chromium binary: {where} (Debian: apt-get install chromium; .ci/run installs it when apt works)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=binary, timeout=60_000,
                               args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


def save_artifact(png: bytes, tmp_path: Path, name: str, *, publish: bool = True) -> list[Path]:
    """Write the screenshot under the test's tmp dir and, if ``CMR_AUDIT_ARTIFACTS`` is set (and
    ``publish``), into that folder too."""
    paths = [tmp_path / name]
    folder = os.environ.get("CMR_AUDIT_ARTIFACTS")
    if folder and publish:
        Path(folder).mkdir(parents=True, exist_ok=True)
        paths.append(Path(folder) / name)
    for p in paths:
        p.write_bytes(png)
    return paths


_PAGE_STATE = """async (ids) => {
    const images = await Promise.all(Array.from(document.images).map(async (img) => {
        let decoded = true;
        try { await img.decode(); } catch (e) { decoded = false; }
        return {src: img.src.slice(0, 40), alt: img.alt, complete: img.complete,
                naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight, decoded};
    }));
    const sections = {};
    for (const id of ids) {
        const el = document.getElementById(id);
        sections[id] = el === null ? null : el.getBoundingClientRect().height;
    }
    return {images, sections, scripts: document.scripts.length, title: document.title};
}"""


def inspect_page(browser, path: Path, section_ids, tmp_path: Path, shot_name: str, *, publish: bool = True) -> dict:
    """Open ``path``; return what the checks need: console errors, page state, screenshot paths."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url[:80]} ({req.failure})"))
    try:
        page.goto(path.resolve().as_uri(), wait_until="load")
        state = page.evaluate(_PAGE_STATE, list(section_ids))  # CDP evaluation works under the report's CSP
        page.wait_for_timeout(100)  # let late console messages arrive
        png = page.screenshot(full_page=True)
    finally:
        page.close()
    return {"errors": errors, **state, "shots": save_artifact(png, tmp_path, shot_name, publish=publish), "png": png}


def assert_page_ok(result: dict, min_images: int) -> None:
    assert result["errors"] == []
    missing = [sid for sid, h in result["sections"].items() if h is None]
    assert not missing, f"sections missing: {missing}"
    empty = [sid for sid, h in result["sections"].items() if not h]
    assert not empty, f"sections with no height: {empty}"
    assert len(result["images"]) >= min_images
    bad = [img for img in result["images"] if not (img["complete"] and img["decoded"] and img["naturalWidth"] > 0)]
    assert not bad, f"images not decoded: {bad}"
    assert result["scripts"] == 0
    assert result["png"].startswith(PNG_SIG)
    for shot in result["shots"]:
        assert shot.read_bytes() == result["png"]


def test_run_report_in_browser(browser, tmp_path):
    from reports.run_report import SECTION_IDS, write_report

    rr = sys.modules["cmr_audit_test_compare"].rr
    run = rr.build_run_dir(tmp_path / "report")
    report = write_report(run)
    result = inspect_page(browser, report, SECTION_IDS, tmp_path, "run_report.png")
    # ROC, distance histogram, closest synthetic, PRDC, Dice, sample grid, one clinical PNG
    assert_page_ok(result, min_images=7)
    assert result["title"].startswith("cmr-audit run report")


def test_compare_report_in_browser(browser, tmp_path):
    from reports import compare

    tc = sys.modules["cmr_audit_test_compare"]
    runs = tc.three_runs(tmp_path / "runs")
    out = compare.write_compare(runs, tmp_path / "compare.html").html_path
    result = inspect_page(browser, out, compare.SECTION_IDS, tmp_path, "compare.png")
    assert_page_ok(result, min_images=2)  # privacy vs fidelity, privacy vs utility
    assert result["title"].startswith("cmr-audit comparison")


def test_checks_catch_broken_pages(browser, tmp_path):
    """The same checks on a page that breaks the rules: a blocked script, a corrupt image, a missing section."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" "
        "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\"><title>bad</title></head><body>"
        "<section id=\"one\"><p>text</p></section>"
        "<img src=\"data:image/png;base64,iVBORw0KGgoAAAAN\" alt=\"corrupt\">"
        "<script>document.title = 'ran';</script></body></html>")
    result = inspect_page(browser, bad, ["one", "two"], tmp_path, "bad.png", publish=False)
    assert any("Content Security Policy" in e for e in result["errors"]), result["errors"]
    assert result["sections"] == {"one": pytest.approx(result["sections"]["one"]), "two": None}
    assert result["sections"]["one"] > 0
    (img,) = result["images"]
    assert img["naturalWidth"] == 0 and not img["decoded"]
    assert result["title"] == "bad"  # the inline script was blocked
    with pytest.raises(AssertionError):
        assert_page_ok(result, min_images=1)
