"""One question end to end against the embedded server: progress, the answer, cancel on close."""

import pytest

from minigpt4_ui import chat, images, schema
from minigpt4_ui.replicate_api import Client
from minigpt4_ui.settings import DEFAULT_VERSION

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
