"""The report as a person sees it, in headless Chromium (Debian's /usr/bin/chromium via Playwright) at 1,280 x 800:
no horizontal scrolling of the page (also with every collapsed table opened) and the headline on the first screen.
Two reports: a synthetic two-fold run with uncertainty and long case names, and a real tiny training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsight.report.segmentation import write_segmentation_report

from .conftest import build_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1280, 800

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt install chromium)")]


def _check_page(report: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.goto(report.resolve().as_uri())
            box = page.locator("#headline").bounding_box()
            closed = page.evaluate("document.documentElement.scrollWidth")
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            opened = page.evaluate("document.documentElement.scrollWidth")
            images = page.evaluate("Array.from(document.images).filter(i => i.naturalWidth === 0).length")
        finally:
            browser.close()
    assert box is not None
    return {"top": box["y"], "closed": closed, "opened": opened, "broken_images": images}


def _long_names(run: Path) -> None:
    """Stretch the widest tables: long case ids in per_case.csv and in the run summary."""
    per_case = run / "validation" / "per_case.csv"
    per_case.write_text(per_case.read_text().replace("case_", "a_very_long_case_identifier_from_the_hospital_pacs_"))
    summary = json.loads((run / "summary.json").read_text())
    summary["note"] = "x" * 400
    (run / "summary.json").write_text(json.dumps(summary))


def test_synthetic_report_fits_1280_px_with_the_headline_first(tmp_path: Path) -> None:
    r = build_run(tmp_path, uncertainty=True, heat=True)
    report = write_segmentation_report(r.run, images=r.images, references=r.references)
    _long_names(r.run)
    report = write_segmentation_report(r.run, images=r.images, references=r.references)
    seen = _check_page(report)
    assert seen["closed"] <= WIDTH and seen["opened"] <= WIDTH, seen
    assert seen["top"] < HEIGHT and seen["broken_images"] == 0, seen


def test_report_of_a_real_training_run_fits(tiny_run: Path) -> None:
    seen = _check_page(tiny_run / "report.html")
    assert seen["closed"] <= WIDTH and seen["opened"] <= WIDTH and seen["top"] < HEIGHT, seen
