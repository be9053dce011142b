"""What a new user still tripped on (#19), in Chromium under the CPU load of the Stop test: Stop's
word outliving the answer, notes styled as errors, the keyboard and the side panel, a phone's
screen, small targets, internals in messages, the banner and a pasted token, slider boxes, a
broken upload, exports, and the layout's rough edges."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from minigpt4_ui.server import RunningServer

from .ui import (ANSWER_DONE, ask, latest_prediction, message_line, open_settings, pick, prompt_box, questions,
                 send_button, status_titles, stop_button, upload)

pytestmark = pytest.mark.usefixtures("busy_machine")

COFFEE = Path(__file__).resolve().parents[2] / "assets" / "coffee.jpg"
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
PROBLEM_COLOUR = "rgb(138, 28, 28)"  # #8a1c1c, page.css's colour for problems
STOPPED = re.compile(r"^\s*Stopped by you")
ENDED = re.compile(r"^\s*(Done in|Stopped by you)")
EXAMPLE = re.compile("Describe this photo in one sentence")

# Every label Stop shows, as the page shows it (the answer may end before a check could look).
RECORD_STOP_LABELS = """() => {
    window.stopLabels = [];
    new MutationObserver(() => {
        const label = document.querySelector('#stop')?.textContent.trim();
        if (label && window.stopLabels.at(-1) !== label) window.stopLabels.push(label);
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""
# Where focus is: its tag, name, horizontal extent, and whether it is inside the side panel's content.
FOCUSED = """() => {
    const el = document.activeElement, box = el.getBoundingClientRect();
    return {tag: el.tagName, name: (el.getAttribute('aria-label') || el.innerText || el.id || '').trim().slice(0, 40),
            left: box.left, right: box.right, in_panel: Boolean(el.closest('#settings .sidebar-content'))};
}"""
# Buttons a person can see (not in a hidden panel, not in Gradio's aria-hidden copies) under 24×24 px.
SMALL_BUTTONS = """() => [...document.querySelectorAll('button, [role=button]')]
    .filter(b => b.checkVisibility({visibilityProperty: true, opacityProperty: true})
                 && !b.closest('[aria-hidden=true]'))
    .map(b => ({name: (b.getAttribute('aria-label') || b.innerText || '').trim().slice(0, 40),
                size: [Math.round(b.getBoundingClientRect().width), Math.round(b.getBoundingClientRect().height)]}))
    .filter(b => b.size[0] < 24 || b.size[1] < 24)"""
SETTLED = "document.getAnimations().every(a => a.playState !== 'running')"
# Whether the element is what a tap at its centre reaches.
ON_TOP = """(selector) => {
    const el = document.querySelector(selector), box = el.getBoundingClientRect();
    const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
    return el === hit || el.contains(hit);
}"""


def _style(line: Locator) -> tuple[str, int]:
    """The colour and weight of a message line's text."""
    colour, weight = line.locator("p").evaluate("p => [getComputedStyle(p).color, getComputedStyle(p).fontWeight]")
    return colour, int(weight)


def _box(locator: Locator) -> tuple[int, int, int, int]:
    box = locator.bounding_box()
    return round(box["x"]), round(box["y"]), round(box["width"]), round(box["height"])


def _overlap(a: Locator, b: Locator) -> bool:
    ax, ay, aw, ah = _box(a)
    bx, by, bw, bh = _box(b)
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def _overlap_within(a: Locator, b: Locator, clip: tuple[int, int, int, int]) -> bool:
    """Whether `a` overlaps the part of `b` its scrolling container `clip` shows."""
    bx, by, bw, bh = _box(b)
    cx, cy, cw, ch = clip
    left, top = max(bx, cx), max(by, cy)
    right, bottom = min(bx + bw, cx + cw), min(by + bh, cy + ch)
    if right <= left or bottom <= top:
        return False
    ax, ay, aw, ah = _box(a)
    return ax < right and left < ax + aw and ay < bottom and top < ay + ah


def _answered(page: Page, question: str = "What is it?") -> None:
    upload(page, COFFEE)
    ask(page, question)
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)


# --- Stop, and the message line ---------------------------------------------------------------------

def test_stopping_is_said_on_stop_itself_and_gone_once_the_answer_ends(page: Page):
    upload(page, COFFEE)
    page.evaluate(RECORD_STOP_LABELS)
    ask(page, "Describe it slowly, please.")
    stop_button(page).click()  # at once: under load a later press can come after the answer's end

    expect(status_titles(page).last).to_have_text(STOPPED)
    expect(send_button(page)).to_be_visible()
    assert "Stopping…" in page.evaluate("window.stopLabels")
    body = page.locator("body")
    expect(body).not_to_contain_text("Stopping…", use_inner_text=True)
    expect(message_line(page)).to_have_text("")
    page.get_by_role("button", name="New chat").click()
    expect(questions(page)).to_have_count(0)
    expect(body).not_to_contain_text("Stopping…", use_inner_text=True)

    upload(page, COFFEE)
    ask(page, "Again, slowly?")
    expect(stop_button(page)).to_be_enabled()  # named "Stop answering" again, and pressable
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)


def test_information_is_said_quietly_and_problems_stand_out(page: Page):
    _answered(page)
    page.get_by_role("button", name="Undo").click()
    line = message_line(page)
    expect(line).to_have_text("Last question removed.")
    quiet = _style(line)
    prompt_box(page).fill("")
    send_button(page).click()
    expect(line).to_have_text("Type a question first.")
    assert _style(line) == (PROBLEM_COLOUR, 600)
    assert quiet[0] != PROBLEM_COLOUR and quiet[1] < 600, quiet


def test_new_chat_and_export_stay_in_place_while_an_answer_is_written(page: Page):
    page.set_viewport_size(LAPTOP)
    upload(page, COFFEE)
    new_chat, export = page.get_by_role("button", name="New chat"), page.get_by_role("button", name="Export conversation")
    before = [_box(send_button(page)), _box(new_chat), _box(export)]
    ask(page, "What is in this picture?")
    expect(stop_button(page)).to_be_visible()
    expect(new_chat).to_be_disabled()
    assert [_box(stop_button(page)), _box(new_chat), _box(export)] == before
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    expect(new_chat).to_be_enabled()
    assert [_box(send_button(page)), _box(new_chat), _box(export)] == before


# --- the keyboard -----------------------------------------------------------------------------------

def test_tab_walks_only_through_what_is_on_screen_while_the_panel_is_closed(page: Page):
    page.set_viewport_size(LAPTOP)
    seen = []
    for _ in range(80):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused["tag"] == "BODY":
            break
        seen.append(focused)
    names = [f["name"] for f in seen]
    assert "Send" in names and "Toggle Sidebar" in names, names  # the walk reached the page's end
    off_screen = [f for f in seen if f["left"] < 0 or f["right"] > LAPTOP["width"] or f["in_panel"]]
    assert off_screen == [], off_screen


def test_opening_the_panel_moves_focus_into_it_and_esc_closes_it_back_to_its_button(page: Page):
    heading = page.get_by_role("heading", name="Answer settings")
    for opener in (page.get_by_role("button", name="Settings and history"),
                   page.get_by_role("button", name="Toggle Sidebar")):
        opener.focus()
        page.keyboard.press("Enter")
        expect(heading).to_be_focused()
        page.keyboard.press("Tab")
        assert page.evaluate(FOCUSED)["in_panel"]
        page.keyboard.press("Escape")
        expect(heading).to_be_hidden()
        expect(opener).to_be_focused()


def test_an_example_chosen_from_the_keyboard_leaves_focus_in_the_question_box(page: Page):
    page.get_by_role("button", name=EXAMPLE).focus()
    page.keyboard.press("Enter")
    expect(questions(page)).to_have_count(1)
    expect(prompt_box(page)).to_be_focused()
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    expect(prompt_box(page)).to_be_focused()


# --- a phone, and target sizes ----------------------------------------------------------------------

def test_on_a_phone_stop_stays_in_view_while_answering(page: Page):
    page.set_viewport_size(PHONE)
    page.get_by_role("button", name=EXAMPLE).click()  # on the first screen, a screen above the question box
    expect(stop_button(page)).to_be_in_viewport(ratio=1)
    page.evaluate("window.scrollTo(0, 0)")  # reading the chat from its top
    expect(stop_button(page)).to_be_in_viewport(ratio=1)
    assert page.evaluate(ON_TOP, "#stop")  # and nothing covers it
    try:
        stop_button(page).click(timeout=2_000)
    except PlaywrightTimeout:
        pass  # on a busy machine the answer can end first
    expect(status_titles(page).last).to_have_text(ENDED)
    expect(page.locator("#stop")).to_be_hidden()


def test_on_a_phone_the_empty_chat_shows_its_sentence_and_every_example_whole(page: Page):
    page.set_viewport_size(PHONE)
    expect(page.get_by_text("Add an image and ask about it")).to_be_in_viewport(ratio=1)
    examples = page.locator("#chat button.example")
    expect(examples).to_have_count(5)
    for index in range(5):
        expect(examples.nth(index)).to_be_in_viewport(ratio=1)
    assert page.evaluate("(() => { const chat = document.querySelector('#chat .bubble-wrap');"
                         " return chat.scrollHeight - chat.clientHeight; })()") <= 1  # nothing scrolled away


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_the_panels_toggle_is_whole_on_screen_open_and_closed(page: Page, viewport: dict):
    page.set_viewport_size(viewport)
    toggle = page.get_by_role("button", name="Toggle Sidebar")
    for opened in (False, True):
        if opened:
            open_settings(page)
        page.wait_for_function(SETTLED)
        x, y, width, height = _box(toggle)
        assert 0 <= x and x + width <= viewport["width"] and 0 <= y, (opened, _box(toggle))
        assert not _overlap(toggle, page.get_by_role("button", name="Settings and history"))
        if opened:
            assert not _overlap(toggle, page.get_by_role("heading", name="Answer settings"))


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_every_button_is_at_least_24_px_square(page: Page, viewport: dict):
    page.set_viewport_size(viewport)
    _answered(page)
    assert page.evaluate(SMALL_BUTTONS) == []
    for name in ("Retry", "Undo", "Like", "Dislike", "Remove Image"):  # the ones that were 18×18
        assert min(_box(page.get_by_role("button", name=name, exact=True).last)[2:]) >= 24, name


# --- what messages and the banner say ---------------------------------------------------------------

def test_no_message_shows_the_address_of_the_predictions_api(page: Page, server: RunningServer):
    pick(page, "nobody/nothing")
    expect(message_line(page)).to_contain_text("nobody/nothing was not found")
    address = server.url.split("//", 1)[1]
    assert address not in page.locator("body").inner_text()
    assert "http" not in message_line(page).inner_text()


def test_the_banner_says_what_answers_once_a_visitor_pastes_a_token(page: Page):
    banner = page.locator("#backend-notice")
    expect(banner).to_contain_text("Backend:")
    open_settings(page)
    page.get_by_text("Your Replicate token").click()
    token = page.get_by_label("Replicate API token (optional)")
    token.fill("r8_a_visitors_own_token")
    expect(banner).to_contain_text("Your Replicate token: your questions go to MiniGPT-4 on Replicate, "
                                   "on your account")
    token.fill("")
    expect(banner).to_contain_text("Backend:")


def test_a_slider_box_says_when_it_moved_a_typed_value_and_a_blank_gets_the_default(page: Page, server):
    upload(page, COFFEE)
    open_settings(page)
    settings = page.locator("#settings")
    for name, typed, shown, caption in [
            ("Beams", "0", "1", "Beams must be at least 1: 0 became 1."),
            ("Temperature", "-1", "0.01", "Temperature must be at least 0.01: -1 became 0.01."),
            ("Repetition penalty", "", "1", "Repetition penalty was empty: back to its default, 1.")]:
        box = page.get_by_role("spinbutton", name=f"number input for {name}")
        box.fill(typed)
        box.press("Tab")
        expect(settings.get_by_text(caption)).to_be_visible()
        expect(box).to_have_value(shown)
    beams_caption = settings.get_by_text("Beams must be at least 1: 0 became 1.")
    assert beams_caption.evaluate("el => getComputedStyle(el).color") == PROBLEM_COLOUR
    page.keyboard.press("Escape")
    ask(page, "What is it?")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    sent = latest_prediction(server)["input"]
    assert (sent["num_beams"], sent["temperature"], sent["repetition_penalty"]) == (1, 0.01, 1)


def test_a_broken_file_is_said_when_it_is_uploaded(page: Page, tmp_path: Path):
    notes = tmp_path / "notes.png"
    notes.write_text("These are my shopping notes, not a picture.\n")
    page.locator("#image input[type=file]").set_input_files(notes)
    expect(message_line(page)).to_have_text(
        "That file is not an image format this app can read (use JPEG, PNG, WebP, GIF or BMP).")
    assert _style(message_line(page)) == (PROBLEM_COLOUR, 600)
    expect(questions(page)).to_have_count(0)


# --- exports ----------------------------------------------------------------------------------------

def test_one_click_downloads_the_conversation_and_its_json_names_no_server_path(page: Page):
    _answered(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Export conversation").click()
    assert download.value.suggested_filename == "conversation.html"
    html = Path(download.value.path()).read_text(encoding="utf-8")
    assert "data URI (448×299, " in html and "\\u00d7" not in html
    listed = page.locator('#chat-files a[download="conversation.json"]')
    exported = page.request.get(listed.get_attribute("href")).text()
    with Image.open(COFFEE) as photo:
        assert json.loads(exported)["image"] == f"coffee.jpg ({photo.width}×{photo.height})"
    assert "/tmp" not in exported and "gradio" not in exported


# --- the layout's rough edges -----------------------------------------------------------------------

def test_the_chats_own_buttons_sit_above_the_messages_not_over_them(page: Page):
    page.set_viewport_size(PHONE)
    _answered(page)
    ask(page, "And the saucer?")
    expect(status_titles(page).last).to_have_text(ANSWER_DONE)
    panel, messages = _box(page.locator("#chat > .wrapper > .top-panel")), _box(page.locator("#chat .bubble-wrap"))
    assert panel[1] + panel[3] <= messages[1], (panel, messages)
    for own in ("Clear", "Copy conversation"):
        # What a person sees: the topmost element at the button's centre is the button itself, not a
        # message's button (those scrolled out of the messages are clipped there, never on top).
        button = page.get_by_role("button", name=own, exact=True)
        button.scroll_into_view_if_needed()
        x, y, w, h = _box(button)
        on_top = button.evaluate("(b, [x, y]) => b.contains(document.elementFromPoint(x, y))", [x + w / 2, y + h / 2])
        assert on_top, own
        for other in page.locator("#chat .bubble-wrap button").all():
            if other.is_visible():
                assert not _overlap_within(button, other, messages), own


def test_compares_image_label_leaves_the_upload_icon_clear(page: Page):
    page.set_viewport_size(LAPTOP)
    page.get_by_role("tab", name="Compare").click()
    label = page.locator("#compare-image label").first
    icon = page.locator("#compare-image .upload-container .icon-wrap")
    expect(icon).to_be_visible()
    assert not _overlap(label, icon), (_box(label), _box(icon))
