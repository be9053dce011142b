"""The app in a real browser: ask, watch the answer stream, stop, follow up, and bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import URL_IMAGE_SIZE
from .ui import (ANSWER_DONE, ask, answers, error_badges, latest_prediction, message_line, open_settings,
                 prompt_box, questions, send_button, status_titles, stop_button, upload, wait_for_answer_text,
                 wait_for_server_status)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
COFFEE = ASSETS / "coffee.jpg"
CAT = ASSETS / "chelsea.jpg"
COFFEE_SIZE = "448×299"  # the app sends images at most 448 px on a side


def test_answer_streams_into_the_chat_and_matches_the_server(page: Page, server):
    question = "What is in this picture?"
    upload(page, COFFEE)
    ask(page, question)
    answer = answers(page).last

    first = wait_for_answer_text(page, longer_than=0)
    second = wait_for_answer_text(page, longer_than=len(first))
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    final = answer.inner_text().strip()

    assert 0 < len(first) < len(second) <= len(final), (first, second, final)
    assert final.startswith(first) and final.startswith(second)
    assert COFFEE_SIZE in final
    prediction = latest_prediction(server)
    assert prediction["status"] == "succeeded"
    assert prediction["input"]["prompt"] == question
    assert prediction["output"] == final
    expect(prompt_box(page)).to_have_value("")
    expect(send_button(page)).to_be_visible()
    expect(stop_button(page)).to_be_hidden()


def test_enter_sends_and_shift_enter_adds_a_line(page: Page, server):
    upload(page, COFFEE)
    box = prompt_box(page)
    box.click()
    box.type("First line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("First line\nsecond line")
    box.press("Enter")
    expect(page.get_by_test_id("user").last).to_contain_text("second line")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    assert latest_prediction(server)["input"]["prompt"] == "First line\nsecond line"


def test_stop_keeps_the_partial_answer_and_cancels_the_prediction(page: Page, server):
    upload(page, COFFEE)
    ask(page, "Describe it slowly, please.")
    partial_start = wait_for_answer_text(page, longer_than=0)
    expect(send_button(page)).to_be_hidden()

    stop_button(page).click()

    expect(status_titles(page).last).to_have_text(re.compile(r"^\s*Stopped by you after \d+\.\d s( · .+)?\s*$"))
    prediction = wait_for_server_status(server, latest_prediction(server)["id"], "canceled")
    partial = answers(page).last.inner_text().strip()
    assert partial.startswith(partial_start)
    assert (prediction["output"] or "").startswith(partial)
    assert partial != prediction["output"] or prediction["status"] == "canceled"
    expect(send_button(page)).to_be_visible()
    expect(error_badges(page)).to_have_count(0)


def test_text_typed_while_an_answer_streams_is_kept_and_a_second_question_waits(page: Page, server):
    upload(page, COFFEE)
    ask(page, "What is in this picture?")  # a long answer (a short one can end before Enter)
    wait_for_answer_text(page, longer_than=0)
    box = prompt_box(page)
    box.click()
    box.type("And the saucer")
    box.press("Enter")  # sent while the first answer is still being written

    expect(message_line(page)).to_contain_text("An answer is still being written")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    expect(box).to_have_value("And the saucer")
    expect(questions(page)).to_have_count(1)
    box.press("Enter")  # now it goes
    expect(questions(page)).to_have_count(2)
    expect(box).to_have_value("")


def test_a_bad_parameter_is_named_with_its_bound_and_nothing_is_lost(page: Page, server):
    upload(page, COFFEE)
    ask(page, "First question")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    open_settings(page)
    max_length = page.get_by_label("Max length")
    max_length.fill("0")
    max_length.press("Tab")
    page.keyboard.press("Escape")
    prompt_box(page).fill("Second question")
    send_button(page).click()

    expect(message_line(page)).to_have_text("Max length must be at least 1.")
    expect(prompt_box(page)).to_have_value("Second question")
    expect(questions(page)).to_have_count(1)
    expect(answers(page)).to_have_count(1)
    expect(error_badges(page)).to_have_count(0)

    open_settings(page)  # Esc closed it
    max_length.fill("")
    max_length.press("Tab")
    send_button(page).click()
    expect(message_line(page)).to_have_text("Max length is empty: enter a number.")
    expect(prompt_box(page)).to_have_value("Second question")


def test_an_example_in_the_empty_chat_is_on_the_first_screen_and_asks_its_question(page: Page, server):
    example = page.get_by_role("button", name=re.compile("Write a funny caption"))
    expect(example).to_be_in_viewport()
    example.click()

    expect(page.get_by_test_id("user").last).to_contain_text("Write a funny caption for this photo.")
    expect(page.locator("#image img")).to_be_visible()
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    assert latest_prediction(server)["input"]["prompt"] == "Write a funny caption for this photo."


@pytest.mark.parametrize("viewport", [{"width": 1366, "height": 900}, {"width": 390, "height": 844}],
                         ids=["laptop", "phone"])
def test_examples_are_on_the_first_screen(page: Page, viewport: dict):
    page.set_viewport_size(viewport)
    examples = page.locator("#chat button.example")
    expect(examples).to_have_count(5)
    expect(examples.first).to_be_in_viewport()
    expect(examples.nth(1)).to_be_in_viewport()


def test_an_image_url_loads_and_a_refused_one_keeps_the_current_image(page: Page, image_url: str, server):
    page.get_by_text("Image from a URL").click()
    url_box = page.locator("#image-url input, #image-url textarea").first
    url_box.fill(image_url)
    page.locator("#load-url").click()
    preview = page.locator("#image img")
    expect(preview).to_have_js_property("naturalWidth", URL_IMAGE_SIZE[0])

    url_box.fill("file:///etc/passwd")
    page.locator("#load-url").click()
    expect(message_line(page)).to_contain_text("Only http:// and https:// image URLs are supported (got file://).")
    expect(preview).to_have_js_property("naturalWidth", URL_IMAGE_SIZE[0])
    expect(error_badges(page)).to_have_count(0)

    ask(page, "How big is it?")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    width, height = URL_IMAGE_SIZE
    expect(answers(page).last).to_contain_text(f"{width}×{height}")


def test_a_follow_up_carries_the_earlier_turn_and_a_new_image_starts_a_new_topic(page: Page, server):
    first_question, second_question = "What colour is the cup?", "And what about the saucer?"
    upload(page, COFFEE)
    ask(page, first_question)
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    first = latest_prediction(server)

    ask(page, second_question)
    expect(answers(page)).to_have_count(2)
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    second = latest_prediction(server)
    assert second["input"]["prompt"] == f"{first_question}###Assistant: {first['output']}###Human: {second_question}"

    upload(page, CAT)
    expect(message_line(page)).to_contain_text("New image")
    ask(page, "Who is this?")
    expect(page.get_by_text("New image", exact=True)).to_be_visible()
    expect(answers(page)).to_have_count(3)
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    assert latest_prediction(server)["input"]["prompt"] == "Who is this?"
    expect(questions(page).first).to_contain_text(first_question)  # the conversation stays


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

    expect(message_line(page)).to_contain_text(
        re.compile(r"not an image format this app can read|empty|damaged|could not be read"))
    expect(prompt_box(page)).to_have_value(question)
    expect(page.get_by_test_id("user")).to_have_count(0)
    expect(error_badges(page)).to_have_count(0)


def test_view_request_shows_runnable_snippets_for_replicate_only(page: Page, server):
    upload(page, COFFEE)
    ask(page, "What is this?")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    open_settings(page)
    page.get_by_text("View request").click()
    code = page.locator("#settings .cm-content")
    expect(code.nth(1)).to_contain_text("https://api.replicate.com/v1/predictions")
    snippets = "\n".join(code.all_inner_texts())
    assert "https://api.replicate.com/v1/predictions" in snippets
    assert "$REPLICATE_API_TOKEN" in snippets and "coffee.jpg" in snippets
    assert server.url.split("//")[1] not in snippets and "127.0.0.1" not in snippets
