"""Other models in the browser: the picker builds each model's controls from its schema, they
answer through the chat, and Compare runs contenders side by side with one Stop for all."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from minigpt4_ui.server import RunningServer

from .ui import (ANSWER_DONE, get_json, answers, ask, error_badges, latest_prediction, message_line, open_settings,
                 pick, status_titles, upload, wait_for_server_status)

COFFEE = Path(__file__).resolve().parents[2] / "assets" / "coffee.jpg"
ENDED = ("succeeded", "failed", "canceled")


def test_the_picker_builds_llavas_controls_from_its_schema(page: Page):
    pick(page, "yorickvp/llava-13b")
    open_settings(page)
    settings = page.locator("#settings")
    # Sliders where the schema gives both bounds, number boxes where it gives one.
    expect(settings.get_by_role("spinbutton", name="number input for Top P")).to_have_value("1")
    expect(settings.get_by_role("slider", name="range slider for Top P")).to_be_visible()
    expect(settings.get_by_label("Temperature", exact=True)).to_have_value("0.2")
    expect(settings.get_by_label("Max Tokens", exact=True)).to_have_value("1024")
    expect(settings.get_by_text("Maximum number of tokens to generate")).to_be_visible()  # the description
    expect(settings.get_by_role("spinbutton", name="number input for Beams")).to_have_count(0)
    expect(settings.get_by_label("Max length")).to_have_count(0)


def test_blip2_gets_checkboxes_and_blip_a_dropdown_of_its_tasks(page: Page):
    pick(page, "andreasjansson/blip-2")
    open_settings(page)
    settings = page.locator("#settings")
    expect(settings.get_by_role("checkbox", name="Caption")).not_to_be_checked()
    expect(settings.get_by_role("checkbox", name="Use Nucleus Sampling")).not_to_be_checked()
    expect(settings.get_by_role("spinbutton", name="number input for Temperature")).to_have_value("1")
    page.keyboard.press("Escape")  # closes the panel

    pick(page, "salesforce/blip")
    open_settings(page)
    task = settings.get_by_role("combobox", name="Task")
    expect(task).to_have_value("image_captioning")
    task.click()
    options = page.get_by_role("option")
    expect(options).to_have_text([re.compile(f"{task}$") for task in
                                  ("image_captioning", "visual_question_answering", "image_text_matching")])
    expect(settings.get_by_role("checkbox", name="Caption")).to_have_count(0)


def test_llava_answers_in_the_chat_with_the_settings_shown(page: Page, server: RunningServer):
    upload(page, COFFEE)
    pick(page, "yorickvp/llava-13b")
    open_settings(page)
    max_tokens = page.locator("#settings").get_by_label("Max Tokens", exact=True)
    max_tokens.fill("12")
    max_tokens.press("Tab")
    page.keyboard.press("Escape")

    ask(page, "What is in this picture?")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    prediction = latest_prediction(server)
    assert prediction["model"] == "yorickvp/llava-13b"
    assert prediction["input"]["max_tokens"] == 12 and prediction["input"]["prompt"] == "What is in this picture?"
    assert prediction["input"]["image"].startswith("data:image/")
    assert len(answers(page).last.inner_text().split()) <= 12
    assert prediction["output"] and "".join(prediction["output"]).strip() == answers(page).last.inner_text().strip()

    ask(page, "And the colours?")  # a follow-up: llava-13b has no history input, so turns are folded
    expect(answers(page)).to_have_count(2)
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    follow_up = latest_prediction(server)["input"]["prompt"]
    assert follow_up.startswith("User: What is in this picture?\nAssistant: ")
    assert follow_up.endswith("User: And the colours?")


def test_a_bad_setting_is_named_in_the_models_own_words(page: Page):
    upload(page, COFFEE)
    pick(page, "yorickvp/llava-13b")
    open_settings(page)
    max_tokens = page.locator("#settings").get_by_label("Max Tokens", exact=True)
    max_tokens.fill("-1")
    max_tokens.press("Tab")
    page.keyboard.press("Escape")
    page.locator("#prompt textarea").fill("What is it?")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(message_line(page)).to_have_text("Max Tokens must be at least 0.")
    expect(error_badges(page)).to_have_count(0)


def test_blip2_answers_with_its_question_input_and_a_checkbox(page: Page, server: RunningServer):
    upload(page, COFFEE)
    pick(page, "andreasjansson/blip-2")
    open_settings(page)
    page.locator("#settings").get_by_role("checkbox", name="Use Nucleus Sampling").check()
    page.keyboard.press("Escape")

    ask(page, "What colour is the cup?")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    prediction = latest_prediction(server)
    assert prediction["model"] == "andreasjansson/blip-2"
    assert prediction["input"]["question"] == "What colour is the cup?"
    assert prediction["input"]["use_nucleus_sampling"] is True and prediction["input"]["caption"] is False
    assert "prompt" not in prediction["input"]


def test_a_model_the_app_cannot_use_is_said_and_the_current_one_stays(page: Page):
    pick(page, "nobody/no-such-model")
    expect(message_line(page)).to_contain_text("nobody/no-such-model was not found")
    expect(message_line(page)).to_contain_text("daanelson/minigpt-4 stays selected")
    expect(page.locator("#model input")).to_have_value("daanelson/minigpt-4")
    open_settings(page)
    expect(page.get_by_role("spinbutton", name="number input for Beams")).to_be_visible()


def _compare(page: Page, question: str) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-image input[type=file]").set_input_files(COFFEE)
    expect(page.locator("#compare-image img")).to_be_visible()
    page.locator("#contender-model-2 input").fill("yorickvp/llava-13b")
    page.locator("#contender-params-2 textarea").fill('{"temperature": 0.5}')
    page.locator("#compare-prompt textarea").fill(question)
    page.get_by_role("button", name="Compare", exact=True).click()


def _answer(number: int) -> str:
    """A pane's answer text itself: the pane also holds Gradio's progress tracker, transparent but
    in the page's text."""
    return f"#pane-answer-{number} [data-testid=markdown]"


def _answer_length(page: Page, number: int) -> int:
    return len(page.locator(_answer(number)).inner_text().strip())


def test_two_contenders_stream_side_by_side_and_one_stop_cancels_both(page: Page, server: RunningServer):
    _compare(page, "Describe it slowly, please.")
    for number in (1, 2):  # both panes grow at once
        page.wait_for_function(f"document.querySelector('{_answer(number)}').innerText.trim().length > 0")
    page.get_by_role("button", name="Stop comparing").click()

    for number in (1, 2):
        expect(page.locator(f"#pane-status-{number}")).to_contain_text(re.compile(r"Stopped by you after \d+\.\d s"))
        assert _answer_length(page, number) > 0  # the partial answers stay
    newest = get_json(server, "/v1/predictions")["results"][:2]
    assert sorted(p["model"] for p in newest) == ["daanelson/minigpt-4", "yorickvp/llava-13b"]
    for prediction in newest:
        wait_for_server_status(server, prediction["id"], "canceled")
    expect(page.get_by_role("button", name="Compare", exact=True)).to_be_visible()
    expect(error_badges(page)).to_have_count(0)


def test_a_finished_comparison_is_voted_on_exported_and_continued_in_the_chat(page: Page, server: RunningServer,
                                                                               browser, tmp_path: Path):
    _compare(page, "What is in this picture?")
    for number in (1, 2):
        expect(page.locator(f"#pane-status-{number}")).to_contain_text(re.compile(r"Done in \d+\.\d s"))
        expect(page.locator(f"#pane-status-{number}")).to_contain_text("Prediction")
    newest = get_json(server, "/v1/predictions")["results"][:2]  # created at once, in either order
    llava = next(p for p in newest if p["model"] == "yorickvp/llava-13b")
    assert llava["input"]["temperature"] == 0.5 and {p["model"] for p in newest} == {
        "daanelson/minigpt-4", "yorickvp/llava-13b"}
    page.get_by_role("button", name="Answer 2 is better").click()
    expect(page.get_by_role("button", name="Marked better")).to_be_visible()

    with page.expect_download() as download:  # one click: the page downloads at once
        page.get_by_role("button", name="Export comparison").click()
    assert download.value.suggested_filename == "comparison.html"
    saved = tmp_path / "comparison.html"
    download.value.save_as(saved)
    exported = browser.new_page()
    try:
        exported.goto(saved.as_uri())
        assert exported.locator("header img").evaluate("img => img.complete && img.naturalWidth") > 0
        articles = exported.locator("article")
        expect(articles).to_have_count(2)
        second_answer = page.locator(_answer(2)).inner_text().strip()
        assert second_answer[:40] in articles.nth(1).inner_text()
        assert "✔ better" in articles.nth(1).inner_text() and llava["id"] in articles.nth(1).inner_text()
    finally:
        exported.close()

    page.get_by_role("button", name="Continue answer 2 in chat").click()
    expect(page.locator("#model input")).to_have_value("yorickvp/llava-13b")
    expect(answers(page)).to_have_count(1)
    expect(answers(page).last).to_have_text(second_answer)
    open_settings(page)
    expect(page.locator("#settings").get_by_label("Temperature", exact=True)).to_have_value("0.5")
    page.keyboard.press("Escape")
    ask(page, "And the saucer?")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    follow_up = latest_prediction(server)
    assert follow_up["model"] == "yorickvp/llava-13b" and follow_up["input"]["temperature"] == 0.5
    assert follow_up["input"]["prompt"].startswith("User: What is in this picture?\nAssistant: ")


def test_the_conversation_downloads_as_html_with_the_image_and_answers(page: Page, server: RunningServer,
                                                                       browser, tmp_path: Path):
    upload(page, COFFEE)
    ask(page, "What is in this picture?")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    answer = answers(page).last.inner_text().strip()
    with page.expect_download() as download:  # one click: the page downloads at once
        page.get_by_role("button", name="Export conversation").click()
    assert download.value.suggested_filename == "conversation.html"
    saved = tmp_path / "conversation.html"
    download.value.save_as(saved)
    exported = browser.new_page()
    try:
        exported.goto(saved.as_uri())
        assert exported.locator("header img").evaluate("img => img.complete && img.naturalWidth") > 0
        article = exported.locator("article")
        expect(article).to_have_count(1)
        expect(article.locator(".question")).to_have_text("What is in this picture?")
        assert answer[:40] in article.locator(".answer").inner_text()
        assert latest_prediction(server)["id"] in article.inner_text()
    finally:
        exported.close()
