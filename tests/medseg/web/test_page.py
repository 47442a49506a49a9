"""The scan page in a real headless Chromium (Debian's, driven by Playwright) against a real `medseg serve`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.action.web.test_page import ARTIFACTS, browser  # noqa: F401  (fixture)
from tests.action.web_server import Server


@pytest.mark.slow
def test_upload_a_scan_and_see_three_overlaid_views(browser, untrained_bundle: Path, demo_dataset: Path, tmp_path: Path) -> None:  # noqa: F811
    server = Server(untrained_bundle, tmp_path, max_upload_mb=20, module="medseg")
    try:
        page = browser.new_page()
        page.goto(server.url + "/")
        scan = sorted((demo_dataset / "imagesTs").iterdir())[0]
        page.set_input_files("#file", str(scan))
        page.click("#segment")
        page.wait_for_selector("#result:not([hidden])", timeout=120_000)
        for axis in ("axial", "coronal", "sagittal"):
            image = page.locator(f"#view-{axis}")
            page.wait_for_function(
                f"document.getElementById('view-{axis}').complete && document.getElementById('view-{axis}').naturalWidth > 0",
                timeout=30_000,
            )
            assert image.is_visible() and "/view/" + axis + "/" in image.get_attribute("src")
        first = page.locator("#view-axial").get_attribute("src")
        page.locator("#slider-axial").fill("0")
        assert page.locator("#view-axial").get_attribute("src") != first  # the slider moves through the slices
        rows = page.locator("#volumes tbody tr")
        assert rows.count() == 3 and page.locator("#download-seg_nrrd").get_attribute("href").endswith(".seg.nrrd")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "scan_page.png"), full_page=True)
    finally:
        server.stop()
