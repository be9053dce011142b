"""Take the README screenshots: `python -m tests.e2e.screenshot [folder]` (default assets/).

Starts `python app.py` on its embedded demo backend (no token). screenshot.png: a laptop
(1366×900) after asking about assets/coffee.jpg and waiting for the whole answer.
screenshot-phone.png: the first screen on a phone (390×844), examples in the empty chat.
screenshot-models.png: yorickvp/llava-13b picked, its settings (built from its schema) open.
screenshot-compare.png: the Compare view after MiniGPT-4 and llava-13b answered the same question.
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
DEFAULT_OUT = ROOT / "assets"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def take(out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="minigpt4-screenshot-") as tmp:
        app = RunningApp({"MINIGPT4_TOKENS_PER_SECOND": "30"}, Path(tmp) / "app.log")
        try:
            with sync_playwright() as playwright:
                browser = chromium.launch(playwright)
                try:
                    phone = browser.new_page(viewport=PHONE)
                    phone.goto(app.url)
                    expect(phone.locator("#chat button.example").first).to_be_visible(timeout=30_000)
                    _settle(phone)
                    out.mkdir(parents=True, exist_ok=True)
                    phone.screenshot(path=out / "screenshot-phone.png")
                    page = browser.new_page(viewport=LAPTOP)
                    page.goto(app.url)
                    send = page.get_by_role("button", name="Send", exact=True)
                    expect(send).to_be_visible(timeout=30_000)
                    page.locator("#image input[type=file]").set_input_files(IMAGE)
                    expect(page.locator("#image img")).to_be_visible(timeout=30_000)
                    page.locator("#prompt textarea").fill(QUESTION)
                    send.click()
                    expect(page.locator(".thought-group .title").last).to_contain_text(
                        re.compile(r"Done in"), timeout=60_000)
                    # The finished status block collapses its details (an animation) first.
                    expect(page.locator(".thought-group .title.expanded")).to_have_count(0, timeout=30_000)
                    page.locator("#chat .bubble-wrap").evaluate("chat => chat.scrollTo(0, 0)")  # the question whole
                    _settle(page)
                    page.screenshot(path=out / "screenshot.png")
                    _models(browser.new_page(viewport=LAPTOP), app.url, out / "screenshot-models.png")
                    _compare(browser.new_page(viewport=LAPTOP), app.url, out / "screenshot-compare.png")
                finally:
                    browser.close()
        finally:
            app.close()
    return out


def _models(page, url: str, path: Path) -> None:
    """llava-13b picked in the chat, with its settings open beside the image."""
    page.goto(url)
    page.locator("#image input[type=file]").set_input_files(IMAGE)
    expect(page.locator("#image img")).to_be_visible(timeout=30_000)
    picker = page.locator("#model input")
    picker.click()
    page.get_by_role("option", name="yorickvp/llava-13b", exact=True).click()
    page.get_by_role("button", name="Settings and history").click()
    expect(page.get_by_role("spinbutton", name="number input for Top P")).to_be_visible(timeout=30_000)
    page.mouse.wheel(0, 400)  # the picker sits under the image
    _settle(page)
    page.screenshot(path=path)


def _compare(page, url: str, path: Path) -> None:
    """MiniGPT-4 and llava-13b side by side, both answers finished, the second marked better."""
    page.goto(url)
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-image input[type=file]").set_input_files(IMAGE)
    expect(page.locator("#compare-image img")).to_be_visible(timeout=30_000)
    # MiniGPT-4 and llava-13b, whatever the app offers first (offline: its local models).
    for number, model in ((1, "daanelson/minigpt-4"), (2, "yorickvp/llava-13b")):
        page.locator(f"#contender-model-{number} input").fill(model)
        page.locator(f"#contender-params-{number} textarea").fill("")
    page.locator("#compare-prompt textarea").fill("Describe this photo in one sentence.")
    page.get_by_role("button", name="Compare", exact=True).click()
    for number in (1, 2):
        expect(page.locator(f"#pane-status-{number}")).to_contain_text("Done in", timeout=60_000)
    page.get_by_role("button", name="Answer 2 is better").click()
    expect(page.get_by_role("button", name="Marked better")).to_be_visible(timeout=30_000)
    _settle(page)
    page.screenshot(path=path)


def _settle(page) -> None:
    """Fonts loaded, no animation running, no hover effect: the page as a person sees it."""
    # Finished animations that fill forwards (the selected tab's underline) stay listed, so only
    # running ones are waited for.
    page.wait_for_function("document.fonts.status === 'loaded' && "
                           "document.getAnimations().every(a => a.playState !== 'running')", timeout=30_000)
    page.mouse.move(0, 0)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    print(take(out.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
