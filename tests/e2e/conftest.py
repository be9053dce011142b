"""Browser end-to-end fixtures: a predictions server, `python app.py` pointed at it, and Chromium.

The browser is Debian's Chromium at /usr/bin/chromium (Playwright cannot download its own here);
when it is missing the tests fail with a message saying so, rather than being skipped.
"""

from __future__ import annotations

import http.server
import io
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from minigpt4_ui.server import RunningServer, start_background

from ..apprunner import RunningApp
from . import chromium
from .ui import TOKEN

# About 55 words for an open question at 12 words per second: a few seconds, enough to watch it grow and stop it.
TOKENS_PER_SECOND = 12
# Generous for 2 CPU cores: Chromium, the app and the server share them.
EXPECT_TIMEOUT_MS = 20_000
# Two CPU-bound processes on a 2-core machine: the conditions of the 7-in-17 "Error" report.
BUSY_PROCESSES = 2
URL_IMAGE_SIZE = (320, 200)

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """A Replicate-compatible predictions server the tests can inspect."""
    with start_background(token=TOKEN, tokens_per_second=TOKENS_PER_SECOND) as server:
        yield server


@pytest.fixture(scope="session")
def app(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """`python app.py` using that server; loopback image URLs allowed so a local server can serve one.

    Its own Gradio cache: uploads are cached by content hash under one shared folder otherwise, and
    another app on this machine that stops deletes its cache, with this run's uploads in it. No
    hourly allowance: every test is the same visitor of this one app, and together they ask more
    than 30 questions (the allowance has its own tests).
    """
    folder = tmp_path_factory.mktemp("e2e-app")
    running = RunningApp({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": TOKEN,
                          "MINIGPT4_ALLOW_PRIVATE_URLS": "1", "NO_PROXY": "127.0.0.1,localhost",
                          "GRADIO_TEMP_DIR": str(folder / "gradio"), "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0"},
                         folder / "app.log")
    yield running
    running.close()


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """CPU load for the length of one test; the processes end with it."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BUSY_PROCESSES)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Chromium, once per session; a missing browser fails every test (CI installs it), never skips."""
    if not Path(chromium.CHROMIUM).is_file():
        pytest.fail(chromium.MISSING, pytrace=False)
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Browser, app: RunningApp, request: pytest.FixtureRequest,
         tmp_path: Path) -> Iterator[Page]:
    """A fresh browser context and page on the app, loaded and ready; a screenshot is kept on failure."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    page = context.new_page()
    page.goto(app.url)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
    expect(page.locator("#chat button.example").first).to_be_visible()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        shot = tmp_path / "failure.png"
        page.screenshot(path=shot, full_page=True)
        print(f"screenshot of the page: {shot}\napp log: {app.log_path}\n--- app log tail ---\n"
              f"{app.output()[-4000:]}")
    context.close()


class _ImageHandler(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path != "/picture.png":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="session")
def image_url() -> Iterator[str]:
    """A PNG of URL_IMAGE_SIZE served on loopback by the standard library's http.server."""
    buffer = io.BytesIO()
    Image.new("RGB", URL_IMAGE_SIZE, (30, 120, 200)).save(buffer, format="PNG")
    handler = type("Handler", (_ImageHandler,), {"body": buffer.getvalue()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/picture.png"
    server.shutdown()
    server.server_close()
    thread.join()
