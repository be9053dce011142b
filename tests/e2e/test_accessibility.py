"""What a person using a keyboard, a screen reader or a plain font meets: contrast, names, keys."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from .ui import ANSWER_DONE, open_settings, prompt_box, status_titles, upload

COFFEE = Path(__file__).resolve().parents[2] / "assets" / "coffee.jpg"
# Every element with its own text whose contrast with its background is below WCAG AA (4.5:1).
LOW_CONTRAST = (Path(__file__).parent / "contrast.js").read_text()
# Buttons a person can reach: shown, and not inside an aria-hidden copy (Gradio's tabs keep one,
# out of the keyboard's reach, to measure the tab bar).
BUTTON_NAMES = """() => [...document.querySelectorAll('button, [role=button]')]
    .filter(b => b.offsetParent && !b.closest('[aria-hidden=true]'))
    .map(b => (b.getAttribute('aria-label') || b.innerText || b.title || '').trim())"""
# Pictographs and emoji: where no emoji font is installed they show as empty boxes.
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF]")


def _answered(page: Page) -> None:
    upload(page, COFFEE)
    prompt_box(page).fill("What is this?")
    prompt_box(page).press("Enter")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)


def test_text_and_labels_reach_wcag_aa_contrast(page: Page):
    _answered(page)
    open_settings(page)
    assert page.evaluate(LOW_CONTRAST) == []


def test_every_button_has_a_distinct_accessible_name(page: Page):
    _answered(page)
    open_settings(page)
    names = page.evaluate(BUTTON_NAMES)
    assert "" not in names, names
    repeated = sorted({name for name in names if names.count(name) > 1})
    assert repeated == [], names


def test_status_is_in_words_not_emoji(page: Page):
    _answered(page)
    for title in status_titles(page).all_inner_texts():
        assert not EMOJI.search(title), title


def test_the_keyboard_alone_asks_and_opens_the_settings(page: Page):
    upload(page, COFFEE)
    prompt_box(page).focus()
    page.keyboard.type("Keyboard only?")
    page.keyboard.press("Enter")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)

    settings = page.get_by_role("button", name="Settings and history")
    settings.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Answer settings")).to_be_visible()
    beams = page.get_by_role("spinbutton", name="number input for Beams")
    beams.focus()
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    expect(beams).to_have_value("2")
