"""The UI's event handlers as plain functions (the browser tests drive them for real)."""

from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from minigpt4_ui import chat
from minigpt4_ui.conversation import Turn
from minigpt4_ui.settings import Settings
from minigpt4_ui.studio import Studio, status_line, turns


def _text(text):
    return [{"type": "text", "text": text}]


# The Chatbot hands handlers its normalized form: content as a list of typed parts.
HISTORY = [
    {"role": "user", "content": [{"type": "file", "file": {"path": "/tmp/x.png"}}, *_text("What is it?")]},
    {"role": "assistant", "content": _text("⏳"), "metadata": {"title": "✅ Done", "id": "p1"}},
    {"role": "assistant", "content": _text("A red square."), "metadata": None},
    {"role": "user", "content": _text("Is it big?")},
    {"role": "assistant", "content": _text("ℹ️"), "metadata": {"title": "ℹ️ 1 earlier turn left out"}},
    {"role": "assistant", "content": _text("⏹"), "metadata": {"title": "⏳ Processing", "id": "p2",
                                                               "status": "pending"}},
    {"role": "assistant", "content": _text("It is 320"), "metadata": None},
]


def test_turns_skip_status_and_notes():
    assert turns(HISTORY) == [Turn("What is it?", "A red square."), Turn("Is it big?", "It is 320")]
    assert turns(HISTORY[:4]) == [Turn("What is it?", "A red square.")]


def test_retry_asks_the_last_question_again():
    history, question, _ = Studio(backend=None, settings=Settings()).retry(HISTORY)
    assert question == "Is it big?" and history == HISTORY[:4]


def test_undo_removes_the_last_turn_and_returns_its_question():
    history, prompt, _ = Studio(backend=None, settings=Settings()).undo(HISTORY)
    assert prompt == "Is it big?" and history == HISTORY[:3]


def test_stop_marks_the_pending_status_and_keeps_the_partial_answer():
    history, status = Studio(backend=None, settings=Settings()).stopped([dict(m) for m in HISTORY])
    assert history[5]["metadata"] == {"title": "⏹ Stopped by you · `p2`", "id": "p2", "status": "done"}
    assert history[6]["content"] == _text("It is 320")
    assert "partial answer is kept" in status


def test_a_new_image_starts_a_new_conversation():
    assert Studio(backend=None, settings=Settings()).new_image("/tmp/y.png", HISTORY) == ([], "🆕 New image, new conversation.")


def test_submit_refuses_bad_input_with_a_specific_message():
    with pytest.raises(gr.Error, match="image: add an image first; temperature: Must be less than or equal to 2"):
        Studio(backend=None, settings=Settings()).submit(None, "hi", [], 4000, 3000, 3, 1.0, 9.0, 0.9)


def test_account_list_needs_the_visitors_own_token():
    with pytest.raises(gr.Error, match="own Replicate token"):
        Studio(backend=None, settings=Settings()).account_predictions("  ")


@pytest.mark.parametrize("progress, expected", [
    (chat.Progress(status="starting", elapsed=2), "⏳ Starting · 2 s"),
    (chat.Progress(status="starting", elapsed=12), "cold boot"),
    (chat.Progress(status="processing", elapsed=3.4), "⏳ Processing · 3 s"),
    (chat.Progress(status="succeeded", elapsed=3.44, predict_time=3.0), "✅ Done in 3.4 s, predict time 3.0 s"),
    (chat.Progress(status="failed", error="CUDA out of memory"), "❌ The model failed: CUDA out of memory"),
    (chat.Progress(status="canceled", elapsed=1.0), "⏹ Stopped after 1.0 s"),
])
def test_status_line_says_what_the_backend_says(progress, expected):
    assert expected in status_line(progress)


def test_a_dead_backend_gives_a_message_a_valid_chat_and_the_question_back(tmp_path):
    from PIL import Image

    from minigpt4_ui import schema
    from minigpt4_ui.backend import Backend
    from minigpt4_ui.replicate_api import Client

    from .apprunner import free_port

    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), "red").save(photo)
    dead = Client(token="t", base_url=f"http://127.0.0.1:{free_port()}", version="v", max_retries=0)
    studio = Studio(Backend(client=dead, embedded=False, notice=""), Settings(visitor_limit_per_hour=0))
    history = [{"role": "user", "content": [{"path": str(photo)}, "What is it?"]}]
    *_, last = studio.respond(str(photo), "What is it?", history, [], "", *schema.defaults().values())
    chat, status, *_, prompt = last
    assert status.startswith("❌ could not reach http://127.0.0.1:") and "connection refused" in status
    assert prompt == "What is it?"
    gr.Chatbot().postprocess(chat)  # what the page receives must be valid messages


def test_a_cleared_number_field_is_named_not_a_crash(tmp_path):
    """Clearing *Max length* sends None; it used to reach int(None) in the retry path."""
    photo = tmp_path / "p.png"
    Image.new("RGB", (40, 30), "red").save(photo)
    studio = Studio(backend=None, settings=Settings())
    with pytest.raises(gr.Error, match="max_length: Max length is empty: enter a number"):
        studio.submit(str(photo), "hi", [], None, 3000, 3, 1.0, 1.0, 0.9)
    history = [{"role": "user", "content": "hi"}]
    studio.backend = SimpleNamespace(embedded=True)  # never reached: the check comes first
    with pytest.raises(gr.Error, match="max_length: Max length is empty: enter a number"):
        next(studio.respond(str(photo), "hi", history, [], "", None, 3000, 3, 1.0, 1.0, 0.9))


@pytest.mark.parametrize("field, value, message", [
    ("max_length", 10**30, "Max length must be at most 4,096"),
    ("max_new_tokens", 4097, "Max new tokens must be at most 4,096"),
])
def test_the_app_caps_the_token_counts(tmp_path, field, value, message):
    photo = tmp_path / "p.png"
    Image.new("RGB", (40, 30), "red").save(photo)
    values = {**chat.check_params({}), field: value}
    with pytest.raises(gr.Error, match=f"{field}: {message}"):
        Studio(backend=None, settings=Settings()).submit(str(photo), "hi", [], *values.values())


@pytest.mark.parametrize("index", [5, -1, [99, 0], "0"])
def test_a_forged_history_row_gets_a_message(index):
    records = [{"time": "12:00:00", "status": "succeeded", "seconds": 1.0, "prompt": "hi", "id": "p1",
                "own_token": False}]
    event = gr.SelectData(target=None, data={"index": index, "value": None})
    with pytest.raises(gr.Error, match="That row is not in this session's history."):
        Studio(backend=None, settings=Settings()).show_record(records, "", event)
