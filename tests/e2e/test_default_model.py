"""The first start in a browser: the page is up while SmolVLM downloads, its banner shows the
download's progress, a question asked meanwhile waits in *Starting*, and the answer's status names
the model that wrote it. A loopback stand-in for the Hub serves the tiny fixture slowly."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, expect

from ..apprunner import ROOT, RunningApp
from ..fake_hub import FakeHub
from ..hf_cache import FIXTURE
from .ui import ask, status_titles, upload

REPO = "HuggingFaceTB/SmolVLM-256M-Instruct"


def test_the_banner_follows_the_download_and_the_answer_names_its_model(browser: Browser, tmp_path):
    # About 0.85 MB at 60 KB/s: some 15 s of download to watch.
    with FakeHub({REPO: FIXTURE}, bytes_per_second=60_000) as hub:
        app = RunningApp(hub.env(tmp_path, HF_HUB_OFFLINE="0", GRADIO_TEMP_DIR=str(tmp_path / "gradio")),
                         tmp_path / "app.log")
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            page.goto(app.url)
            banner = page.locator("#backend-notice")
            expect(banner).to_contain_text(re.compile(r"Getting SmolVLM-256M-Instruct.*\d\.\d of 0\.\d MB"))
            upload(page, ROOT / "assets" / "coffee.jpg")
            ask(page, "What is in this picture?")
            expect(status_titles(page).last).to_contain_text("Starting")
            page.screenshot(path=tmp_path / "downloading.png")
            expect(banner).to_contain_text("SmolVLM-256M-Instruct, a small open model, answers on this machine",
                                           timeout=60_000)
            expect(status_titles(page).last).to_contain_text(
                re.compile(r"Done in \d+\.\d s · SmolVLM-256M-Instruct \(int8, ONNX Runtime\) on this machine"),
                timeout=60_000)
        finally:
            context.close()
            app.close()
