"""End to end in headless Chromium (Debian's /usr/bin/chromium via Playwright): a real uvicorn server on a free
loopback port, the viewer opened with its token, a job's volumes loaded, slices moved, overlays toggled."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from medsight.serve import ServeConfig, create_app

from .helpers import TOKEN

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt install chromium)")]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(serve_runs: dict[str, Path], tmp_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of uvicorn serving both test runs (token required) in a thread, and the studies
    of a DICOM node working in ``tmp_path / "node"``."""
    import uvicorn

    app = create_app(ServeConfig(runs=(serve_runs["runs"],), token=TOKEN, work_dir=tmp_path / "work",
                                 pacs_workdir=tmp_path / "node"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > end or not thread.is_alive():
            pytest.fail("uvicorn did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(15)


def _job(base: str, serve_runs: dict[str, Path]) -> str:
    ds = serve_runs["ds3d"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        files = {"file": ("scan.nii.gz", (ds / "imagesTr" / "case_001_0000.nii.gz").read_bytes()),
                 "reference": ("ref.nii.gz", (ds / "labelsTr" / "case_001.nii.gz").read_bytes())}
        job_id = str(http.post("/api/jobs", data={"run": "run3d"}, files=files).json()["id"])
        end = time.monotonic() + 60
        while http.get(f"/api/jobs/{job_id}").json()["status"] not in ("done", "failed") and time.monotonic() < end:
            time.sleep(0.1)
        assert http.get(f"/api/jobs/{job_id}").json()["status"] == "done"
    return job_id


def _pixels(page: Any, selector: str) -> bytes:
    """The canvas as it is drawn (an element screenshot: no script evaluation, which the viewer's CSP forbids)."""
    return bytes(page.locator(selector).screenshot())


def test_viewer_loads_a_case_scrolls_and_toggles_overlays(live_server: str, serve_runs: dict[str, Path],
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    job_id = _job(live_server, serve_runs)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{live_server}/?token={TOKEN}")
            assert page.url == f"{live_server}/"  # the token went into a cookie, out of the address bar
            page.click(f"[data-view-job='{job_id}']")
            page.wait_for_selector(f"#viewer[data-loaded='/api/jobs/{job_id}']")
            assert page.locator("#views canvas").count() == 3  # axial, coronal, sagittal
            axial = "canvas[data-plane='axial'][data-role='labels']"  # the prediction's view
            caption = page.locator("figure[data-plane='axial'][data-role='labels'] .slice-no")
            first_slice, first_pixels = caption.inner_text(), _pixels(page, axial)
            # move through slices with the wheel and the keyboard
            page.hover(axial)
            for _ in range(2):
                page.mouse.wheel(0, 120)  # two slices on
            page.keyboard.press("ArrowDown")  # one back
            start, count = (int(v) for v in first_slice.split(" / "))
            assert caption.inner_text() == f"{start + 1} / {count}"
            assert _pixels(page, axial) != first_pixels
            # cursor read-out: position in mm and the value under the cursor
            page.hover(axial)
            readout = page.inner_text("#readout")
            assert "mm LPS" in readout and "value" in readout and "reference" in readout
            # prediction | reference side by side, then the label overlay off: the reference view changes
            page.check("#compare")
            assert page.locator("#views canvas").count() == 6
            reference = "canvas[data-plane='axial'][data-role='reference']"
            with_overlay = _pixels(page, reference)
            page.uncheck("#overlay-on")
            assert _pixels(page, reference) != with_overlay
            page.check("#overlay-on")
            assert _pixels(page, reference) == with_overlay
            # heat map of a label's probability, and a CT window preset
            before = _pixels(page, axial)
            page.select_option("#heat", "prob:1")
            assert _pixels(page, axial) != before
            before = _pixels(page, axial)
            page.select_option("#preset", "bone")
            assert _pixels(page, axial) != before
            page.hover(axial)
            shot = tmp_path / "viewer.png"
            page.screenshot(path=str(shot))
            print(f"\nviewer screenshot: {shot}")
            # a run's validation case loads too, with its report linked
            case = page.locator("[data-case]").first
            case_id = case.get_attribute("data-case")
            case.click()
            page.wait_for_selector(f"#viewer[data-loaded$='/cases/{case_id}']")
            assert page.locator("a[href$='/files/report.html']").count() == 2
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    assert not errors, errors


def test_viewer_shows_the_dicom_nodes_studies_and_their_state(live_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from medsight.pacs.config import NodeConfig
    from medsight.pacs.store import JobStore

    store = JobStore(NodeConfig(workdir=tmp_path / "node").store_path)
    store.record_instance(series_uid="1.2.3.9.1", study_uid="1.2.3.9", sop_uid="1.2.3.9.1.1", path="x.dcm",
                          folder="incoming", modality="CT", now=time.time())
    store.record_refused(series_uid="1.2.3.9.2", study_uid="1.2.3.9", folder="incoming", reason="not an image: SR")
    store.close()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.goto(f"{live_server}/?token={TOKEN}")
            page.wait_for_selector("[data-study='1.2.3.9']")
            assert page.locator("#pacs-section").is_visible()
            text = page.locator("[data-study='1.2.3.9']").inner_text()
            assert "failed" in text and "not an image: SR" in text and "received" in text
        finally:
            browser.close()
