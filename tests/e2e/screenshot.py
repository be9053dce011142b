"""Take the README screenshot: `python -m tests.e2e.screenshot [out.png]` (default assets/screenshot.png).

Starts `python app.py` on its embedded demo backend (no token), uploads assets/coffee.jpg, asks a
question, waits for the whole answer, and saves a 1400×1000 screenshot of the page.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from ..apprunner import ROOT, RunningApp
from . import chromium

QUESTION = "What drink is this, and how would I make it at home?"
IMAGE = ROOT / "assets" / "coffee.jpg"
DEFAULT_OUT = ROOT / "assets" / "screenshot.png"
VIEWPORT = {"width": 1400, "height": 1000}


def take(out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="minigpt4-screenshot-") as tmp:
        app = RunningApp({"MINIGPT4_TOKENS_PER_SECOND": "30"}, Path(tmp) / "app.log")
        try:
            with sync_playwright() as playwright:
                browser = chromium.launch(playwright)
                try:
                    page = browser.new_page(viewport=VIEWPORT)
                    page.goto(app.url)
                    send = page.get_by_role("button", name="Send", exact=True)
                    expect(send).to_be_visible(timeout=30_000)
                    page.locator("#image input[type=file]").set_input_files(IMAGE)
                    expect(page.locator("#image img")).to_be_visible(timeout=30_000)
                    page.locator("#prompt textarea").fill(QUESTION)
                    send.click()
                    expect(page.locator("#status")).to_contain_text(re.compile(r"✅ Done in"), timeout=60_000)
                    # Let the last render settle before the shot: the finished status block collapses
                    # its logs (an animation), and the fonts must be loaded.
                    expect(page.locator(".thought-group .title.expanded")).to_have_count(0, timeout=30_000)
                    page.wait_for_function(
                        "document.fonts.status === 'loaded' && document.getAnimations().length === 0",
                        timeout=30_000)
                    page.mouse.move(0, 0)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=out)
                finally:
                    browser.close()
        finally:
            app.close()
    return out


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    print(take(out.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
