"""The app in a real browser: upload, ask, watch the answer stream, stop, follow up, and bad input."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from .conftest import URL_IMAGE_SIZE

ASSETS = Path(__file__).resolve().parents[2] / "assets"
COFFEE = ASSETS / "coffee.jpg"
COFFEE_SIZE = "448×299"  # the app sends images at most 448 px on a side
DONE = re.compile(r"✅ Done in \d+\.\d s")
STOPPED = "⏹ Stopped. The partial answer is kept; the prediction was cancelled."
# The last words of every built-in answer.
ANSWER_ENDING = "ask MiniGPT-4 itself on Replicate."


def send_button(page: Page) -> Locator:
    # exact: a non-exact "Send" also matches the chat's status block ("⏳ Sending…").
    return page.get_by_role("button", name="Send", exact=True)


def prompt_box(page: Page) -> Locator:
    return page.locator("#prompt textarea")


def answers(page: Page) -> Locator:
    """The assistant's answer bubbles; the status blocks (collapsible "thoughts") are left out."""
    return page.get_by_test_id("bot").filter(has_not=page.locator(".thought-group"))


def status_line(page: Page) -> Locator:
    return page.locator("#status")


def toasts(page: Page) -> Locator:
    return page.locator(".toast-body")


def upload(page: Page, path: Path) -> None:
    page.locator("#image input[type=file]").set_input_files(path)


def ask(page: Page, question: str) -> None:
    prompt_box(page).fill(question)
    send_button(page).click()
    expect(page.get_by_test_id("user").filter(has_text=question).last).to_be_visible()


def prediction_id(page: Page) -> str:
    """The id of the prediction the status line is about (shown as code after the status)."""
    code = status_line(page).locator("code")
    expect(code).to_have_text(re.compile(r"^[a-z0-9]{10,}$"))
    return code.inner_text().strip()


def wait_for_server_status(get, ident: str, wanted: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        prediction = get(ident)
        if prediction["status"] == wanted:
            return prediction
        assert prediction["status"] not in {"succeeded", "failed", "canceled"} - {wanted}, \
            f"prediction {ident} ended {prediction['status']}, expected {wanted}"
        assert time.monotonic() < deadline, f"prediction {ident} still {prediction['status']}"
        time.sleep(0.1)  # polling the server, bounded by the deadline


# The text of the newest answer bubble, read afresh each time (Svelte may replace the element).
_LAST_ANSWER_TEXT = """() => {
    const answers = [...document.querySelectorAll('[data-testid="bot"]')]
        .filter(el => !el.querySelector('.thought-group'));
    return answers.length ? answers[answers.length - 1].innerText.trim() : '';
}"""


def answer_longer_than(page: Page, length: int) -> str:
    """Wait until the newest answer's text is longer than `length` characters, and return that text."""
    handle = page.wait_for_function(f"({_LAST_ANSWER_TEXT})().length > {length} && ({_LAST_ANSWER_TEXT})()",
                                    polling="raf")
    return handle.json_value()


def test_answer_streams_into_the_chat_and_matches_the_server(page: Page, server_prediction):
    question = "What is in this picture?"
    upload(page, COFFEE)
    ask(page, question)
    answer = answers(page).last

    first = answer_longer_than(page, 0)
    second = answer_longer_than(page, len(first))
    expect(status_line(page)).to_contain_text(DONE)
    expect(page.get_by_test_id("bot").locator(".thought-group .title")).to_contain_text(DONE)
    final = answer.inner_text().strip()

    assert 0 < len(first) < len(second) <= len(final), (first, second, final)
    assert final.startswith(first) and final.startswith(second)
    assert final.startswith(f"You asked: “{question}”. I am the built-in demo predictor, not MiniGPT-4")
    assert COFFEE_SIZE in final and final.endswith(ANSWER_ENDING)

    prediction = server_prediction(prediction_id(page))
    assert prediction["status"] == "succeeded"
    assert prediction["input"]["prompt"] == question
    assert prediction["output"] == final


def test_stop_keeps_the_partial_answer_and_cancels_the_prediction(page: Page, server_prediction):
    upload(page, COFFEE)
    ask(page, "Describe it slowly, please.")
    answer = answers(page).last
    answer_longer_than(page, 0)
    ident = prediction_id(page)
    expect(status_line(page)).to_contain_text("Processing")

    page.get_by_role("button", name="Stop", exact=True).click()

    expect(status_line(page)).to_have_text(STOPPED)
    expect(page.get_by_test_id("bot").locator(".thought-group .title")).to_contain_text(
        f"⏹ Stopped by you · {ident}")
    prediction = wait_for_server_status(server_prediction, ident, "canceled")
    partial = answer.inner_text().strip()
    assert partial.startswith("You asked:"), partial
    assert not partial.endswith(ANSWER_ENDING), "the answer was complete: Stop came too late to test"
    # The server may have produced a word or two more before the cancel reached it.
    assert (prediction["output"] or "").startswith(partial)
    # Still there, and no longer growing, once the prediction is over.
    expect(answer).to_be_visible()
    expect(answer).to_have_text(partial)


def test_an_example_row_fills_the_image_and_prompt(page: Page):
    caption = "Write a funny caption for this photo."
    expect(prompt_box(page)).to_have_value("")
    expect(page.locator("#image img")).to_have_count(0)

    page.locator("tr").filter(has_text=caption).click()

    expect(prompt_box(page)).to_have_value(caption)
    expect(page.locator("#image img")).to_have_attribute("src", re.compile(r"chelsea\.jpg"))


def test_an_image_url_loads_and_is_answered_about(page: Page, image_url: str, server_prediction):
    page.locator("#image-url input, #image-url textarea").first.fill(image_url)
    page.locator("#load-url").click()
    preview = page.locator("#image img")
    expect(preview).to_be_visible()
    expect(preview).to_have_js_property("naturalWidth", URL_IMAGE_SIZE[0])

    ask(page, "How big is it?")
    expect(status_line(page)).to_contain_text(DONE)
    width, height = URL_IMAGE_SIZE
    expect(answers(page).last).to_contain_text(f"This is a {width}×{height} landscape image")
    assert server_prediction(prediction_id(page))["status"] == "succeeded"


def test_a_follow_up_question_carries_the_earlier_turn(page: Page, server_prediction):
    first_question, second_question = "What colour is the cup?", "And what about the saucer?"
    upload(page, COFFEE)
    ask(page, first_question)
    expect(status_line(page)).to_contain_text(DONE)
    first_id = prediction_id(page)
    first_answer = answers(page).last.inner_text().strip()
    expect(prompt_box(page)).to_have_value("")

    ask(page, second_question)
    expect(answers(page)).to_have_count(2)
    expect(status_line(page)).not_to_contain_text(first_id)
    expect(status_line(page)).to_contain_text(DONE)
    second = server_prediction(prediction_id(page))

    first = server_prediction(first_id)
    assert first["output"] == first_answer
    prompt = second["input"]["prompt"]
    assert first_question in prompt and first_answer in prompt
    assert prompt == f"{first_question}###Assistant: {first_answer}###Human: {second_question}"
    assert second["status"] == "succeeded"
    assert second["output"] == answers(page).last.inner_text().strip()


def _write_text_as_png(path: Path) -> None:
    path.write_text("These are my shopping notes, not a picture.\n")


def _write_empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize("make_file", [_write_text_as_png, _write_empty], ids=["text-as-png", "empty-file"])
def test_a_bad_file_gets_a_clear_message_and_keeps_the_prompt(page: Page, tmp_path: Path, make_file):
    question = "What does this say?"
    bad = tmp_path / "notes.png"
    make_file(bad)
    prompt_box(page).fill(question)
    upload(page, bad)
    send_button(page).click()

    expect(toasts(page).first).to_contain_text(
        re.compile(r"not an image format this app can read|empty|damaged|could not be read"), timeout=3_000)
    expect(prompt_box(page)).to_have_value(question)
    expect(page.get_by_test_id("user")).to_have_count(0)


def test_a_file_url_is_refused_with_a_clear_message(page: Page):
    prompt_box(page).fill("What is this?")
    page.locator("#image-url input, #image-url textarea").first.fill("file:///etc/passwd")
    page.locator("#load-url").click()

    expect(toasts(page)).to_contain_text("Only http:// and https:// image URLs are supported (got file://).")
    expect(page.locator("#image img")).to_have_count(0)
    expect(prompt_box(page)).to_have_value("What is this?")
