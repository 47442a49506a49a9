"""The upload page in a real headless Chromium (Debian's, driven by Playwright) against a real server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from action.predict import Predictor
from tests.action.link_server import LinkServer
from tests.action.web.test_server import small_model  # noqa: F401  (fixture)
from tests.action.web_server import ROOT, Server

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    executable = os.environ.get("MEDACT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("MEDACT_REQUIRE_BROWSER"):
            pytest.fail("No chromium found (make test installs Debian's chromium; MEDACT_REQUIRE_BROWSER is set).")
        pytest.skip("no chromium on this machine (make test installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@pytest.mark.slow
def test_upload_a_video_and_a_fake_one(browser, small_model: Path, tiny_videos: Path, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "server").mkdir()
    links = LinkServer(sorted(tiny_videos.glob("StandUp/*.mp4"))[0])
    server = Server(
        small_model, tmp_path / "server", max_upload_mb=5, extra=("--allow-url-host", "127.0.0.1", "--allow-url-port", str(links.port))
    )
    try:
        page = browser.new_page()
        page.goto(server.url + "/")
        video = sorted(tiny_videos.glob("SitDown/*.mp4"))[0]
        page.set_input_files("#file", str(video))
        page.click("#analyse")
        page.wait_for_selector("#result:not([hidden])", timeout=60_000)
        expected = Predictor.load(small_model).predict(video, top_k=5)
        assert page.inner_text("#label") == expected["label"]
        bars = page.locator("#bars .bar")
        assert bars.count() == 5 and all(bars.nth(i).is_visible() for i in range(5))
        width = float(bars.first.evaluate("e => parseFloat(e.style.width)"))
        assert width == pytest.approx(100 * expected["top_k"][0]["probability"], abs=0.06)
        assert page.locator("#frames img").count() == 8
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web_prediction.png"), full_page=True)

        # a pasted link gets the label the CLI gives for that video
        page.fill("#url", links.url + "/good.mp4")
        page.click("#analyse")
        page.wait_for_function(
            "document.getElementById('status').textContent === 'Done.' && document.getElementById('label').textContent !== ''",
            timeout=60_000,
        )
        linked = Predictor.load(small_model).predict(sorted(tiny_videos.glob("StandUp/*.mp4"))[0], top_k=5)
        page.wait_for_function(f"document.getElementById('label').textContent === {linked['label']!r}", timeout=60_000)
        assert links.hits.get("/good.mp4") == 1
        page.screenshot(path=str(ARTIFACTS / "web_link_prediction.png"), full_page=True)
        page.fill("#url", "")

        fake = tmp_path / "notes.mp4"
        fake.write_text("my shopping list, not a video\n" * 20)
        page.set_input_files("#file", str(fake))
        page.click("#analyse")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        assert "Not a decodable video" in page.inner_text("#error") and page.locator("#result").is_hidden()
        page.screenshot(path=str(ARTIFACTS / "web_error.png"), full_page=True)
    finally:
        server.stop()
        links.stop()
