"""`Studio`'s own handlers (History, the account's list, feedback) as plain functions, against a
real predictions server on loopback; the chat's are in test_chat_handlers.py."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

from minigpt4_ui.app.handlers import Studio
from minigpt4_ui.app.records import Record, history_table
from minigpt4_ui.app.settings import Settings

from .conftest import png_bytes
from .handler_inputs import ask, studio_on

SKIP = gr.skip()


@pytest.fixture
def photo(tmp_path) -> str:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(320, 200))
    return str(path)

# --- the side panel --------------------------------------------------------------------------------

def test_history_lists_the_newest_first():
    records = [Record(time="10:00:00", prompt="one", own_token=False, status="succeeded", seconds=1.2, id="a"),
               Record(time="10:01:00", prompt="two", own_token=True, status="canceled", seconds=0.4, id="b")]
    assert history_table(records) == [["10:01:00", "canceled", 0.4, "two", "b"],
                                      ["10:00:00", "succeeded", 1.2, "one", "a"]]
    assert history_table([]) == []


def test_a_history_row_shows_its_prediction_and_feedback(server, photo):
    studio = studio_on(server)
    last = ask(studio, photo, "Like me")[-1]
    liked = studio.like(last.chat, last.records, SimpleNamespace(index=len(last.chat) - 1, liked=True))
    shown, message = studio.show_record(liked, "", SimpleNamespace(index=[0, 3]))
    assert message == "" and shown["id"] == last.records[0].id and shown["feedback"] == "like"
    assert shown["input"]["image"].endswith("characters in all)")  # the data URI is shortened
    never = [Record(time="10:00:00", prompt="x", own_token=False, status="error")]
    assert studio.show_record(never, "", SimpleNamespace(index=[0, 0])) == (
        {"status": "error", "detail": "This request never reached the API."}, "")
    assert studio.show_record(liked, "", SimpleNamespace(index=[5, 0])) == (
        SKIP, "That row is not in this session's history.")


def test_a_prediction_that_cannot_be_loaded_is_said_not_raised(server):
    studio = studio_on(server)
    gone = [Record(time="10:00:00", prompt="x", own_token=False, status="succeeded", id="no-such-prediction")]
    shown, message = studio.show_record(gone, "", SimpleNamespace(index=[0, 0]))
    assert shown == SKIP and message.startswith("Could not load that prediction: ")


def test_account_list_needs_the_visitors_own_token(server):
    studio = studio_on(server)
    listed, message = studio.account_predictions("  ")
    assert listed == SKIP and message.startswith("Enter your own Replicate token above")
    assert "The host's predictions are never shown." in message
    listed, message = studio.account_predictions("r8_not_known_here")
    # The visitor's token goes to Replicate only, which the test machine cannot reach.
    assert (listed, message) == (SKIP, "Could not list predictions: could not reach Replicate: unknown host name")


@pytest.mark.parametrize("index", [5, -1, [99, 0], "0"])
def test_a_forged_history_row_gets_a_message(index):
    records = [Record(time="12:00:00", prompt="hi", own_token=False, status="succeeded", seconds=1.0, id="p1")]
    event = gr.SelectData(target=None, data={"index": index, "value": None})
    shown, message = Studio(backend=None, settings=Settings()).show_record(records, "", event)
    assert shown == SKIP and message == "That row is not in this session's history."
