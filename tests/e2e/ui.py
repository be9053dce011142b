"""What a person sees on the page, as locators, and what the server behind it recorded."""

from __future__ import annotations

import re
import time
from pathlib import Path

import requests
from playwright.sync_api import Locator, Page, expect

from minigpt4_ui.server import RunningServer

TOKEN = "r8_e2e_test_token_not_secret"
ANSWER_DONE = re.compile(r"^\s*Done in \d+\.\d s( · .+)?\s*$")


def send_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Send", exact=True)


def stop_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Stop answering", exact=True)


def prompt_box(page: Page) -> Locator:
    return page.locator("#prompt textarea")


def message_line(page: Page) -> Locator:
    """The app's own message under the chat (bad input, a busy session, a refused URL)."""
    return page.locator("#message")


def questions(page: Page) -> Locator:
    """The question bubbles that hold text (a question with a new image also has an image bubble)."""
    return page.get_by_test_id("user").filter(has=page.locator(".prose, p"))


def answers(page: Page) -> Locator:
    """The answer bubbles; status blocks and notes (collapsible "thoughts") are left out."""
    return page.get_by_test_id("bot").filter(has_not=page.locator(".thought-group"))


def status_titles(page: Page) -> Locator:
    """The titles of the chat's status blocks and notes, oldest first."""
    return page.locator("#chat .thought-group .title")


def error_badges(page: Page) -> Locator:
    """Gradio's red "Error" badges and error toasts: none may ever show."""
    return page.locator(":is(.error, .toast-body.error):visible").or_(page.get_by_text("Error", exact=True))


def upload(page: Page, path: Path) -> None:
    page.locator("#image input[type=file]").set_input_files(path)
    expect(page.locator("#image img")).to_be_visible()


def ask(page: Page, question: str) -> None:
    prompt_box(page).fill(question)
    send_button(page).click()
    expect(page.get_by_test_id("user").filter(has_text=question).last).to_be_visible()


def pick(page: Page, model: str) -> None:
    """Choose (or type) a model in the chat's picker, as a person does: type it, then Enter."""
    picker = page.locator("#model input")
    picker.click()
    picker.fill(model)
    picker.press("Enter")


def open_settings(page: Page) -> None:
    page.get_by_role("button", name="Settings and history").click()
    expect(page.get_by_role("heading", name="Answer settings")).to_be_visible()


# The text of the newest answer bubble, read afresh each time (Svelte may replace the element).
_LAST_ANSWER_TEXT = """() => {
    const answers = [...document.querySelectorAll('[data-testid="bot"]')]
        .filter(el => !el.querySelector('.thought-group'));
    return answers.length ? answers[answers.length - 1].innerText.trim() : '';
}"""


def wait_for_answer_text(page: Page, *, longer_than: int) -> str:
    """Wait until the newest answer's text is longer than `longer_than` characters, and return it."""
    handle = page.wait_for_function(
        f"({_LAST_ANSWER_TEXT})().length > {longer_than} && ({_LAST_ANSWER_TEXT})()", polling="raf")
    return handle.json_value()


def get_json(server: RunningServer, path: str) -> dict:
    response = requests.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    response.raise_for_status()
    return response.json()


def latest_prediction(server: RunningServer) -> dict:
    """The server's newest prediction (the tests ask one question at a time)."""
    return get_json(server, "/v1/predictions")["results"][0]


def wait_for_server_status(server: RunningServer, ident: str, wanted: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        prediction = get_json(server, f"/v1/predictions/{ident}")
        if prediction["status"] == wanted:
            return prediction
        assert prediction["status"] not in {"succeeded", "failed", "canceled"} - {wanted}, \
            f"prediction {ident} ended {prediction['status']}, expected {wanted}"
        assert time.monotonic() < deadline, f"prediction {ident} still {prediction['status']}"
        time.sleep(0.1)  # polling the server, bounded by the deadline
