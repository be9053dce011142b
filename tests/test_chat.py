"""One question end to end against the embedded server: progress, the answer, cancel on close or Stop."""

import threading
import time

import pytest

from minigpt4_ui.app import chat, images
from minigpt4_ui.shared import schema
from minigpt4_ui.replicate_api import Client
from minigpt4_ui.app.settings import DEFAULT_VERSION

from .conftest import SERVER_TOKEN, png_bytes


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(png_bytes(640, 480))
    return str(path)


def _client(server):
    return Client(token=SERVER_TOKEN, base_url=server.url, version=DEFAULT_VERSION, poll_interval=0.05)


def test_build_input_checks_then_encodes(photo):
    inputs = chat.build_input(photo, "What is it?", {"temperature": 0.5})
    assert inputs["image"].startswith("data:image/jpeg;base64,")
    assert inputs["temperature"] == 0.5 and inputs["num_beams"] == 3


def test_build_input_needs_an_image():
    with pytest.raises(schema.InputError, match="image: add an image first"):
        chat.build_input(None, "What is it?", {})


def test_build_input_reports_a_blank_control_instead_of_defaulting_it(photo):
    with pytest.raises(schema.InputError) as caught:
        chat.build_input(photo, "What?", {**schema.defaults(), "max_length": None, "top_p": None})
    assert [(p.field, p.type) for p in caught.value.problems] == [("max_length", "blank"), ("top_p", "blank")]


def test_build_input_reports_blank_and_out_of_range_together():
    with pytest.raises(schema.InputError) as caught:
        chat.build_input(None, "", {"max_length": None, "temperature": 9})
    assert {(p.field, p.type) for p in caught.value.problems} == {
        ("image", "required"), ("max_length", "blank"), ("prompt", "required"), ("temperature", "number_lte")}


def test_build_input_reports_the_prompt_before_decoding_the_image(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("no pixels")
    with pytest.raises(schema.InputError, match="prompt"):
        chat.build_input(str(broken), "", {})
    with pytest.raises(images.ImageError):
        chat.build_input(str(broken), "What?", {})


def test_ask_yields_real_progress_to_the_answer(server, photo):
    client = _client(server)
    steps = list(chat.ask(client, chat.build_input(photo, "What colours?", {})))
    assert steps[0].status == "starting" and steps[0].prediction_id
    assert steps[-1].status == "succeeded" and steps[-1].predict_time is not None
    assert steps[-1].text == client.get(steps[-1].prediction_id)["output"]
    texts = [s.text for s in steps if s.text]
    assert len(set(texts)) > 1 and all(steps[-1].text.startswith(t) for t in texts)


def test_closing_the_generator_cancels_the_prediction(slow_server, photo):
    client = _client(slow_server)
    progress = chat.ask(client, chat.build_input(photo, "Describe it", {}))
    first = next(p for p in progress if p.text)
    progress.close()
    assert client.get(first.prediction_id)["status"] == "canceled"


def test_a_failed_prediction_reports_the_models_error(server):
    steps = list(chat.ask(_client(server), {"image": "data:image/png;base64,bm90IGFuIGltYWdl",
                                            "prompt": "What?"}))
    assert steps[-1].status == "failed" and steps[-1].error


def test_stop_cancels_the_prediction_and_keeps_the_partial_answer(slow_server, photo):
    client = _client(slow_server)
    stop = threading.Event()
    steps = []
    for progress in chat.ask(client, chat.build_input(photo, "Describe it", {}), stop=stop):
        steps.append(progress)
        if progress.text and not stop.is_set():
            stop.set()
            stopped_at = time.monotonic()
    last = steps[-1]
    assert last.status == "canceled" and last.finished
    assert time.monotonic() - stopped_at < 2  # noticed within a poll, not after the answer
    partial = next(s.text for s in reversed(steps) if s.text)
    assert last.text == partial  # the words written so far are kept
    assert client.get(last.prediction_id)["status"] == "canceled"


def test_stop_before_the_first_update_cancels_at_once(slow_server, photo):
    client = _client(slow_server)
    stop = threading.Event()
    stop.set()
    steps = list(chat.ask(client, chat.build_input(photo, "Never mind", {}), stop=stop))
    assert [s.status for s in steps] == ["canceled"] and steps[0].text == ""
    assert client.get(steps[0].prediction_id)["status"] == "canceled"


def test_an_unset_stop_changes_nothing(server, photo):
    client = _client(server)
    steps = list(chat.ask(client, chat.build_input(photo, "All of it", {}), stop=threading.Event()))
    assert steps[-1].status == "succeeded"
    assert steps[-1].text == client.get(steps[-1].prediction_id)["output"]
