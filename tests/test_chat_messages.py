"""The chat pane's messages: what the handlers write, and how they read the Chatbot's value back."""

from __future__ import annotations

import gradio as gr
import pytest

from minigpt4_ui.app import chat_messages as cm
from minigpt4_ui.app.conversation import Turn

from .conftest import png_bytes


def through_the_browser(history: list[dict]) -> list[dict]:
    """The chat as the page sends it back to a handler: Gradio's normalised messages."""
    chatbot = gr.Chatbot()
    return chatbot.preprocess(chatbot.postprocess(history))


@pytest.fixture
def pictures(tmp_path):
    red, red_copy, blue = tmp_path / "red.png", tmp_path / "red-again.png", tmp_path / "blue.png"
    red.write_bytes(png_bytes(60, 40, (200, 20, 20)))
    red_copy.write_bytes(red.read_bytes())
    blue.write_bytes(png_bytes(60, 40, (20, 20, 200)))
    return str(red), str(red_copy), str(blue)


def test_what_each_kind_of_message_looks_like():
    assert cm.question("Hi?") == {"role": "user", "content": "Hi?"}
    assert cm.question("Hi?", "/x.png") == {"role": "user", "content": [{"path": "/x.png"}, "Hi?"]}
    assert cm.answer() == {"role": "assistant", "content": ""}
    assert cm.status("Sending…", done=False)["metadata"] == {"title": "Sending…", "status": "pending"}
    done = cm.status("Done in 1.0 s", done=True, details="Prediction `p1`", prediction_id="p1")
    assert done == {"role": "assistant", "content": "Prediction `p1`",
                    "metadata": {"title": "Done in 1.0 s", "status": "done", "id": "p1"}}
    assert cm.note("New image")["metadata"] == {"title": "New image", "status": "done"}
    assert cm.is_titled(done) and cm.is_titled(cm.note("x"))
    assert not cm.is_titled(cm.answer("text")) and not cm.is_titled(cm.question("q"))


def test_every_message_is_valid_for_the_chatbot(pictures):
    red, _, _ = pictures
    history = [cm.question("What?", red), cm.status("Sending…", done=False), cm.answer("A red"),
               cm.note("New image"), cm.status("The model failed: x", done=True)]
    shown = gr.Chatbot().postprocess(history)  # raises on a null id or a bad shape
    assert [m.role for m in shown.root] == ["user", "assistant", "assistant", "assistant", "assistant"]


def test_reading_back_raw_and_normalised_messages(pictures):
    red, _, _ = pictures
    raw = [cm.question("What is it?", red), cm.status("Done", done=True, prediction_id="p1"),
           cm.answer("A red square.")]
    back = through_the_browser(raw)
    assert [cm.text(m) for m in back] == ["What is it?", "", "A red square."]
    assert cm.text(raw[0]) == "" and cm.text(raw[2]) == "A red square."
    assert cm.image_of(back[0]) == red and cm.image_of(back[2]) is None
    assert cm.current_image(back) == red
    assert cm.current_image(through_the_browser([cm.question("no picture")])) is None


def test_a_new_image_is_told_by_its_content_not_its_path(pictures):
    red, red_copy, blue = pictures
    history = through_the_browser([cm.question("What?", red), cm.answer("Red.")])
    assert not cm.is_new_image(history, red)
    assert not cm.is_new_image(history, red_copy)  # the same picture uploaded again
    assert cm.is_new_image(history, blue)
    assert cm.is_new_image([], red)  # an empty chat: the first image is new
    assert cm.is_new_image(history, red + ".missing")


def test_turns_skip_status_blocks_and_notes():
    history = through_the_browser([
        cm.question("What is it?"), cm.status("Done", done=True, prediction_id="p1"), cm.answer("A red square."),
        cm.question("Is it big?"), cm.note("1 earlier turn left out"),
        cm.status("Processing", done=False, prediction_id="p2"), cm.answer("It is 320"),
    ])
    assert cm.turns(history) == [Turn("What is it?", "A red square."), Turn("Is it big?", "It is 320")]
    assert cm.turns(history[:4]) == [Turn("What is it?", "A red square.")]  # an unanswered question


def test_turns_restart_at_a_question_with_a_new_image(pictures):
    red, _, blue = pictures
    history = through_the_browser([
        cm.question("What is it?", red), cm.answer("Red."),
        cm.question("And the shape?"), cm.answer("Square."),
        cm.note("New image"), cm.question("And this one?", blue), cm.answer("Blue."),
        cm.question("Brighter?"), cm.answer("No."),
    ])
    # The earlier picture's turns are not folded into questions about the new one.
    assert cm.turns(history) == [Turn("And this one?", "Blue."), Turn("Brighter?", "No.")]
    assert cm.turns(history[:4]) == [Turn("What is it?", "Red."), Turn("And the shape?", "Square.")]


def test_last_question():
    history = [cm.question("a"), cm.answer("b"), cm.question("c"), cm.status("x", done=True)]
    assert cm.last_question(history) == 2
    assert cm.last_question([cm.note("New image")]) is None
    assert cm.last_question([]) is None
