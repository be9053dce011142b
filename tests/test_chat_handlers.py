"""The chat's handlers (`chat_handlers`) as plain functions, against a real predictions server on
loopback.

The browser tests drive the same handlers through the page; here each handler's outputs are
checked one by one: Send puts the question in the chat (or says why not, keeping the box),
the answer streams into the chat, Stop is a flag the answer notices, nothing typed is lost, and
no handler of the chat raises.
"""

from __future__ import annotations

import gradio as gr
import pytest
import requests

from minigpt4_ui.app import chat, chat_messages as cm
from minigpt4_ui.shared import schema
from minigpt4_ui.app.backend import Backend
from minigpt4_ui.app.compare import MAX_CONTENDERS, Comparer
from minigpt4_ui.replicate_api import Client
from minigpt4_ui.app.settings import Settings
from minigpt4_ui.app.answer_status import status_title
from minigpt4_ui.app.chat_handlers import Answer, Answered, Asked, ChatHandlers, Sent
from minigpt4_ui.app.chat_updates import BUSY, STOPPING, info, problem, stop_button
from minigpt4_ui.app.handlers import Studio
from minigpt4_ui.app.records import Record, history_table

from .apprunner import free_port
from .conftest import SERVER_TOKEN, png_bytes
from .handler_inputs import ask, controls, studio_on, through_the_browser, visitor

SKIP = gr.skip()
SHOWN, HIDDEN = gr.update(visible=True), gr.update(visible=False)
# Send, Stop and New chat: Stop in Send's place while answering, New chat in its place, unavailable.
ANSWERING = (HIDDEN, stop_button(True), gr.update(interactive=False))
IDLE = (SHOWN, stop_button(False), gr.update(interactive=True))
PRESSED = gr.update(value=STOPPING, interactive=False)  # Stop once pressed, until the answer ends






def created(server) -> list[dict]:
    return requests.get(f"{server.url}/v1/predictions", headers={"Authorization": f"Bearer {SERVER_TOKEN}"},
                        timeout=10).json()["results"]


def server_prediction(server, prediction_id: str) -> dict:
    return requests.get(f"{server.url}/v1/predictions/{prediction_id}",
                        headers={"Authorization": f"Bearer {SERVER_TOKEN}"}, timeout=10).json()


def status_of(history: list[dict]) -> dict:
    """The metadata of the newest answer's status block."""
    return next(m["metadata"] for m in reversed(history) if (m.get("metadata") or {}).get("status")
                and m["role"] == "assistant" and m["metadata"]["title"] != "New image")


@pytest.fixture
def photo(tmp_path) -> str:
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(320, 200))
    return str(path)


@pytest.fixture
def other_photo(tmp_path) -> str:
    path = tmp_path / "other.png"
    path.write_bytes(png_bytes(100, 100, (200, 200, 20)))
    return str(path)


# The Chatbot hands handlers its normalised form.
HISTORY = through_the_browser([
    cm.question("What is it?"), cm.status("Done in 1.0 s", done=True, prediction_id="p1"),
    cm.answer("A red square."), cm.question("Is it big?"), cm.note("1 earlier turn left out"),
    cm.status("Processing · 3 s", done=False, prediction_id="p2"), cm.answer("It is 320"),
])


# --- Send ------------------------------------------------------------------------------------------

def test_send_puts_the_question_with_its_image_in_the_chat_and_clears_the_box(photo):
    studio = Studio(backend=None, settings=Settings())
    sent = studio.chat.send(None, photo, "What is it?", [], *controls())
    assert isinstance(sent, Sent)
    assert sent.chat == [cm.question("What is it?", photo)]
    assert (sent.prompt, sent.message) == ("", "")
    # The answer step answers what Send checked, settings included.
    assert sent.question == Asked("What is it?", schema.defaults())
    assert (sent.send, sent.stop, sent.new_chat) == ANSWERING
    assert studio.slots.current("anonymous") is not None


def test_a_follow_up_about_the_same_picture_carries_no_image(photo, tmp_path):
    studio = Studio(backend=None, settings=Settings())
    same = tmp_path / "same-again.png"
    same.write_bytes(open(photo, "rb").read())
    history = through_the_browser([cm.question("What is it?", photo), cm.answer("A photo.")])
    sent = studio.chat.send(None, str(same), "Is it big?", history, *controls())
    assert sent.chat[-1] == cm.question("Is it big?") and len(sent.chat) == 3


def test_a_new_image_gets_a_note_and_is_shown_with_its_question(photo, other_photo):
    studio = Studio(backend=None, settings=Settings())
    assert studio.chat.new_image(other_photo, []) == ""
    history = through_the_browser([cm.question("What is it?", photo), cm.answer("A photo.")])
    # The conversation so far stays; the next question starts a new topic.
    said = studio.chat.new_image(other_photo, history)
    assert said == info("New image: your next question starts a new topic; the conversation so far stays.")
    sent = studio.chat.send(None, other_photo, "And this?", history, *controls())
    assert sent.chat[:2] == history
    assert sent.chat[2:] == [cm.note("New image"), cm.question("And this?", other_photo)]


def test_send_refuses_bad_input_in_words_and_keeps_everything_typed(photo):
    studio = Studio(backend=None, settings=Settings())
    sent = studio.chat.send(None, None, "hi", HISTORY, *controls(temperature=9.0))
    assert sent.message == problem("Add an image first (upload, paste, webcam or an image URL). "
                                   "Temperature must be at most 2.")
    # The chat and the question box are left as they are; the answer step is told to do nothing.
    assert (sent.chat, sent.prompt, sent.send, sent.stop, sent.new_chat) == (SKIP,) * 5
    assert sent.question is None
    assert studio.slots.current("anonymous") is None
    assert list(studio.chat.respond(None, photo, sent.question, HISTORY, [], "", schema.SPEC)) \
        == [Answer(*(SKIP,) * len(Answer._fields))]


def test_send_names_a_blank_control(photo):
    studio = Studio(backend=None, settings=Settings())
    message = studio.chat.send(None, photo, "hi", [], *controls(max_new_tokens=None)).message
    assert message == problem("Max new tokens is empty: enter a number.")


def test_a_second_question_while_answering_is_refused_and_stays_in_the_box(photo):
    studio = Studio(backend=None, settings=Settings())
    me, someone_else = visitor("tab-1"), visitor("tab-2")
    first = studio.chat.send(me, photo, "First?", [], *controls())
    second = studio.chat.send(me, photo, "Second?", first.chat, *controls())
    assert second.message == problem(BUSY) and second.prompt == SKIP and second.chat == SKIP and second.question is None
    held = studio.slots.current("tab-1")
    # The refused question's answer step does nothing, and leaves the running answer's slot alone.
    assert list(studio.chat.respond(me, photo, second.question, first.chat, [], "", schema.SPEC)) \
        == [Answer(*(SKIP,) * len(Answer._fields))]
    assert studio.slots.current("tab-1") is held
    # Another tab is not held up.
    assert studio.chat.send(someone_else, photo, "Mine?", [], *controls()).message == ""


def test_gradio_hands_each_handler_the_visitors_session(photo, tmp_path):
    """Gradio puts the request at its parameter's place; it must not land among the values."""
    from gradio.helpers import special_args

    studio = Studio(backend=None, settings=Settings())
    tab = gr.Request(session_hash="tab-9")
    values = controls()
    args = special_args(studio.chat.send, [photo, "Mine?", [], *values], request=tab)[0]  # as ui.py wires Send
    assert studio.chat.send(*args).message == ""
    assert studio.slots.current("tab-9") is not None and studio.slots.current("anonymous") is None
    assert studio.chat.stop(*special_args(studio.chat.stop, [], request=tab)[0]) == PRESSED
    retry = special_args(studio.chat.retry, [HISTORY, *values], request=gr.Request(session_hash="tab-10"))[0]
    assert studio.chat.retry(*retry).question.text == "Is it big?" and studio.slots.current("tab-10") is not None
    respond = special_args(studio.chat.respond, [photo, None, [], [], "", schema.SPEC], request=tab)[0]
    assert list(studio.chat.respond(*respond)) == [Answer(*(SKIP,) * len(Answer._fields))]
    assert studio.slots.current("tab-9") is not None  # an empty question never frees the running one's slot


# --- the answer ------------------------------------------------------------------------------------

def test_an_answer_streams_into_the_chat_with_its_status_and_request(server, photo):
    studio = studio_on(server)
    answers = ask(studio, photo, "What colours?")
    assert all(isinstance(a, Answer) for a in answers) and len(answers) > 2
    last = answers[-1]
    prediction = server_prediction(server, last.records[0].id)
    assert last.chat[-1] == cm.answer(prediction["output"])
    status = last.chat[-2]["metadata"]
    assert status["title"].startswith("Done in ") and status["status"] == "done" and status["id"] == prediction["id"]
    assert f"Prediction `{prediction['id']}`" in last.chat[-2]["content"]
    assert "predict time" in last.chat[-2]["content"]
    # The records join at the start and end; every update between carries only the chat, so a
    # pressed Stop keeps saying "Stopping…".
    assert [r.prompt for r in answers[0].records] == ["What colours?"]
    assert all(a.records == SKIP for a in answers[1:-1])
    record = last.records[0]
    assert isinstance(record, Record) and record.status == "succeeded" and record.prompt == "What colours?"
    # Once it has ended: its row, its request, and Send instead of Stop (shown by Send until then).
    done = studio.chat.answered(last.records)
    assert isinstance(done, Answered) and (done.send, done.stop, done.new_chat) == IDLE
    assert done.history == [record.row()]
    assert '"prompt": "What colours?"' in done.request_json
    assert "https://api.replicate.com/v1/predictions" in done.request_curl and server.url not in done.request_curl
    assert "replicate.run(" in done.request_python and "photo.png" in done.request_python
    texts = [a.chat[-1]["content"] for a in answers if a.chat[-1]["role"] == "assistant"
             and not cm.is_titled(a.chat[-1])]
    assert len(set(texts)) > 1 and all(prediction["output"].startswith(t) for t in texts)
    gr.Chatbot().postprocess(last.chat)
    assert studio.slots.current("anonymous") is None  # the next question may be sent


def test_earlier_turns_about_the_same_image_are_folded_into_the_prompt(server, photo, other_photo):
    studio = studio_on(server)
    first = ask(studio, photo, "First question")[-1]
    second = ask(studio, photo, "Second question", first.chat, records=first.records)[-1]
    prompt = server_prediction(server, second.records[-1].id)["input"]["prompt"]
    assert prompt.startswith("First question###Assistant: ") and prompt.endswith("###Human: Second question")
    assert [r.prompt for r in reversed(second.records)] == [row[3] for row in history_table(second.records)]


def test_the_first_question_about_a_new_image_carries_no_earlier_turns(server, photo, other_photo):
    studio = studio_on(server)
    first = ask(studio, photo, "First question")[-1]
    second = ask(studio, other_photo, "About the new one", first.chat, records=first.records)[-1]
    assert server_prediction(server, second.records[-1].id)["input"]["prompt"] == "About the new one"


def test_follow_ups_about_a_new_image_leave_the_old_pictures_turns_out(server, photo, other_photo):
    studio = studio_on(server)
    first = ask(studio, photo, "First question")[-1]
    second = ask(studio, other_photo, "About the new one", first.chat, records=first.records)[-1]
    third = ask(studio, other_photo, "And then?", second.chat, records=second.records)[-1]
    prompt = server_prediction(server, third.records[-1].id)["input"]["prompt"]
    assert prompt.startswith("About the new one###Assistant: ") and "First question" not in prompt


def test_turns_that_do_not_fit_are_left_out_with_a_note(server, photo):
    studio = studio_on(server)
    history = []
    records = []
    for n in range(3):
        last = ask(studio, photo, f"Question {n} " + "x" * 200, history, records=records, max_new_tokens=5)[-1]
        history, records = last.chat, last.records
    last = ask(studio, photo, "Last one", history, records=records, max_length=300, max_new_tokens=100)[-1]
    notes = [m["metadata"]["title"] for m in last.chat if (m.get("metadata") or {}).get("title", "").startswith("2 ")]
    assert notes == ["2 earlier turns left out to fit Max length (300 tokens, 100 of them for the answer)"]


def test_a_dead_backend_says_so_in_the_chat_and_keeps_the_question(photo):
    dead = Client(token="t", base_url=f"http://127.0.0.1:{free_port()}", version="v", max_retries=0)
    studio = Studio(Backend(client=dead, embedded=False, notice=""), Settings(visitor_limit_per_hour=0))
    last = ask(studio, photo, "What is it?")[-1]
    assert cm.text(last.chat[0]) == "What is it?"  # still in the chat
    status = last.chat[-1]["metadata"]
    assert status["title"] == "could not reach the predictions API: connection refused"  # no address
    assert status["status"] == "done" and "id" not in status
    assert len(last.chat) == 2  # no empty answer bubble
    assert last.records[0].status == "error"
    done = studio.chat.answered(last.records)
    assert (done.send, done.stop) == IDLE[:2]
    gr.Chatbot().postprocess(last.chat)  # what the page receives must be valid messages
    assert studio.slots.current("anonymous") is None


def test_a_visitors_hourly_allowance_is_said_in_the_chat(server, photo):
    studio = studio_on(server, visitor_limit_per_hour=1)
    me = visitor("tab-1", host="198.51.100.4")
    ask(studio, photo, "One", request=me)
    before = len(created(server))
    other_tab = visitor("tab-2", host="198.51.100.4")
    last = ask(studio, photo, "Two", request=other_tab)[-1]
    assert last.chat[-1]["metadata"]["title"].startswith(
        "This demo allows 1 questions per hour per visitor on the host's Replicate account.")
    assert cm.text(last.chat[-2]) == "Two"
    done = studio.chat.answered(last.records, other_tab)
    assert (done.send, done.stop) == IDLE[:2]
    assert len(created(server)) == before
    assert studio.slots.current("tab-2") is None
    # The visitor's own token is not counted against the host's allowance.
    own = ask(studio, photo, "Mine", request=visitor("tab-3", host="198.51.100.4"), token="r8_visitor")[-1]
    # (It goes to Replicate, which the test machine cannot reach.)
    assert own.chat[-1]["metadata"]["title"] == "could not reach Replicate: unknown host name"


@pytest.mark.parametrize("progress, expected", [
    (chat.Progress(status="starting", elapsed=2), "Starting · 2 s"),
    (chat.Progress(status="starting", elapsed=12), "Starting · 12 s · cold boot: the model is being loaded"),
    (chat.Progress(status="processing", elapsed=3.4), "Processing · 3 s"),
    (chat.Progress(status="succeeded", elapsed=3.44, predict_time=3.0), "Done in 3.4 s"),
    (chat.Progress(status="failed", error="CUDA out of memory"), "The model failed: CUDA out of memory"),
    (chat.Progress(status="failed"), "The model failed: it gave no reason"),
    (chat.Progress(status="canceled", elapsed=1.0), "Stopped by you after 1.0 s"),
])
def test_status_title_says_what_the_backend_says(progress, expected):
    assert status_title(progress).startswith(expected)


# --- Stop, Retry, Undo -----------------------------------------------------------------------------

def test_stop_cancels_the_prediction_and_keeps_the_partial_answer(slow_server, photo):
    studio = studio_on(slow_server)
    me = visitor()
    values = controls()
    assert studio.chat.stop(me) == SKIP  # nothing to stop yet
    sent = studio.chat.send(me, photo, "Stop me", [], *values)
    answers = []
    for answer in studio.chat.respond(me, photo, sent.question, through_the_browser(sent.chat), [], "", schema.SPEC):
        answers.append(answer)
        slot = studio.slots.current("tab-1")  # None on the last update: the slot is free by then
        if len(answers[-1].chat[-1]["content"].split()) >= 2 and slot and not slot.stop.is_set():
            assert studio.chat.stop(me) == PRESSED
    last = answers[-1]
    partial = last.chat[-1]["content"]
    assert len(partial.split()) >= 2 and partial.startswith("This 320×200")
    status = last.chat[-2]["metadata"]
    assert status["title"].startswith("Stopped by you after ") and status["status"] == "done"
    stopped = server_prediction(slow_server, status["id"])
    assert stopped["status"] == "canceled" and stopped["output"].startswith(partial)
    assert last.records[0].status == "canceled"
    done = studio.chat.answered(last.records, me)
    assert (done.send, done.stop, done.new_chat) == IDLE  # Stop reads "Stop answering" again, hidden
    assert studio.chat.stop(me) == SKIP and studio.slots.current("tab-1") is None


def test_send_comes_back_only_to_a_session_the_answer_has_let_go_of(server, photo):
    """Under CPU load the page once showed Send and took the next question before the answer's
    generator had freed the session, and the question was "still being written". Send now comes
    back from the step chained after the stream, and only when no answer holds the session."""
    studio = studio_on(server, visitor_limit_per_hour=3)
    me = visitor()
    values = controls()
    sent = studio.chat.send(me, photo, "First?", [], *values)
    stream = studio.chat.respond(me, photo, sent.question, through_the_browser(sent.chat), [], "", schema.SPEC)
    first = next(stream)  # the answer is running, held here
    # The chain of a question refused meanwhile ends now: the running answer's buttons stand.
    assert studio.chat.answered(first.records, me)[-3:] == (SKIP,) * 3
    last = list(stream)[-1]
    assert studio.slots.current("tab-1") is None
    done = studio.chat.answered(last.records, me)
    assert (done.send, done.stop, done.new_chat) == IDLE
    follow_up = studio.chat.send(me, photo, "And then?", through_the_browser(last.chat), *values)
    assert follow_up.message == "" and follow_up.question.text == "And then?"


def test_compare_lets_go_of_the_session_before_it_shows_compare_again(server, photo):
    studio = studio_on(server)
    comparer = Comparer(studio)
    me = visitor()
    contenders = ["daanelson/minigpt-4", '{"max_new_tokens": 3}'] * MAX_CONTENDERS
    assert comparer.start(me, photo, "Which?", 2, *contenders)[0] == ""
    stream = comparer.run(me, photo, "Which?", 2, "", [], *contenders)
    last = next(update for update in stream if update[4] == SHOWN)  # Compare shown again; held here
    assert studio.slots.current("tab-1") is None
    assert comparer.start(me, photo, "Again?", 2, *contenders)[0] == ""
    assert list(stream) == [] and last[3] == ""


def test_stop_before_the_answer_starts_creates_no_prediction(server, photo):
    studio = studio_on(server)
    before = len(created(server))
    values = controls()
    sent = studio.chat.send(None, photo, "Never mind", [], *values)
    assert studio.chat.stop(None) == PRESSED
    stream = studio.chat.respond(None, photo, sent.question, through_the_browser(sent.chat), [], "", schema.SPEC)
    last = list(stream)[-1]
    assert last.chat[-1]["metadata"] == {"title": "Stopped by you before the answer started", "status": "done"}
    assert cm.text(last.chat[0]) == "Never mind"
    assert len(created(server)) == before and last.records == []
    assert studio.slots.current("anonymous") is None


def test_retry_asks_the_last_question_again():
    studio = Studio(backend=None, settings=Settings())
    sent = studio.chat.retry(None, HISTORY, *controls(temperature=0.5))
    assert sent.chat == HISTORY[:4] and sent.message == ""
    assert sent.question == Asked("Is it big?", {**schema.defaults(), "temperature": 0.5})  # the settings now
    assert sent.prompt == SKIP  # whatever is being typed in the box stays
    assert (sent.send, sent.stop, sent.new_chat) == ANSWERING
    again = studio.chat.retry(None, HISTORY, *controls())
    assert again.message == problem(BUSY) and again.chat == SKIP and again.question is None
    assert studio.chat.retry(None, [], *controls()).message == problem("There is no question to ask again.")


def test_retry_gets_a_fresh_answer(server, photo):
    studio = studio_on(server)
    first = ask(studio, photo, "Once more?")[-1]
    sent = studio.chat.retry(None, first.chat, *controls())
    assert sent.chat == first.chat[:1]
    last = list(studio.chat.respond(None, photo, sent.question, sent.chat, first.records, "", schema.SPEC))[-1]
    assert len(last.records) == 2 and last.records[0].id != last.records[1].id
    assert last.chat[-1]["content"] == server_prediction(server, last.records[1].id)["output"]
    assert server_prediction(server, last.records[1].id)["input"]["prompt"] == "Once more?" and len(last.chat) == 3


def test_undo_removes_the_last_turn_and_returns_its_question():
    # Information, not a problem: said in the quiet style.
    assert ChatHandlers.undo(HISTORY) == (HISTORY[:3], "Is it big?", info("Last question removed."))
    assert ChatHandlers.undo([]) == ([], SKIP, info("Nothing to undo."))


def test_undo_removes_the_new_image_note_with_its_question(photo, other_photo):
    history = through_the_browser([cm.question("What?", photo), cm.answer("A photo."), cm.note("New image"),
                                   cm.question("And this?", other_photo), cm.answer("Another.")])
    kept, prompt, _ = ChatHandlers.undo(history)
    assert kept == history[:2] and prompt == "And this?"


def test_undo_keeps_the_previous_turns_error():
    history = through_the_browser([cm.question("First?"), cm.status("could not reach the API", done=True),
                                   cm.question("Second?"), cm.status("Done", done=True, prediction_id="p2"),
                                   cm.answer("Yes.")])
    kept, prompt, _ = ChatHandlers.undo(history)
    assert prompt == "Second?" and kept == history[:2]


def test_new_chat_empties_the_composer_and_the_chat():
    assert ChatHandlers.clear() == (None, "", "", [], "")


def test_a_cleared_number_field_is_named_not_a_crash(photo):
    """Clearing *Max length* sends None; it used to reach int(None), also on the Retry path."""
    studio = Studio(backend=None, settings=Settings())
    sent = studio.chat.send(None, photo, "hi", [], *controls(max_length=None))
    assert sent.message == problem("Max length is empty: enter a number.") and sent.question is None
    history = through_the_browser([cm.question("hi", photo), cm.answer("An answer.")])
    retried = studio.chat.retry(None, history, *controls(max_length=None))  # Retry does not check the settings
    last = list(studio.chat.respond(None, photo, retried.question, retried.chat, [], "", schema.SPEC))[-1]
    assert last.chat[-1]["metadata"]["title"] == "Max length is empty: enter a number."


@pytest.mark.parametrize("field, value, message", [
    ("max_length", 10**30, "Max length must be at most 4,096."),
    ("max_new_tokens", 4097, "Max new tokens must be at most 4,096."),
])
def test_the_app_caps_the_token_counts(photo, field, value, message):
    sent = Studio(backend=None, settings=Settings()).chat.send(None, photo, "hi", [], *controls(**{field: value}))
    assert sent.message == problem(message)
