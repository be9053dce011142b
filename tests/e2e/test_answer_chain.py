"""The answer's chain in the browser: the stream updates only the chat; History, View request and
Send come back from the step after it; Retry asks again with the settings as they are now."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from .ui import ANSWER_DONE, ask, latest_prediction, open_settings, send_button, status_titles, stop_button, upload

COFFEE = Path(__file__).resolve().parents[2] / "assets" / "coffee.jpg"


def test_retry_asks_again_with_the_settings_as_they_are_now(page: Page, server):
    upload(page, COFFEE)
    ask(page, "What is in this picture?")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    first = latest_prediction(server)
    expect(send_button(page)).to_be_visible()
    expect(stop_button(page)).to_be_hidden()
    # History has its row and View request its request once the answer has ended.
    open_settings(page)
    page.get_by_text("History", exact=True).click()
    expect(page.locator("#history")).to_contain_text(first["id"])
    page.get_by_text("View request", exact=True).click()
    expect(page.locator("#settings .cm-content").first).to_contain_text('"prompt": "What is in this picture?"')

    page.get_by_label("Max new tokens").fill("7")
    page.get_by_role("button", name="Retry").click()
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    expect(send_button(page)).to_be_visible()
    again = latest_prediction(server)
    assert again["id"] != first["id"]
    assert again["input"]["prompt"] == "What is in this picture?" and again["input"]["max_new_tokens"] == 7
    assert len(again["output"].split()) == 7
    expect(page.locator("#history")).to_contain_text(again["id"])
