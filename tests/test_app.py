"""The app as a user runs it (`python app.py`), driven through gradio_client."""


import pytest
import requests
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from minigpt4_ui.server import start_background

from .apprunner import RunningApp
from .client_helpers import partly_answered, wait_until_canceled

TOKEN = "r8_app_test_token_never_shown"


@pytest.fixture(scope="module")
def backend_server():
    with start_background(token=TOKEN, tokens_per_second=40) as server:
        yield server


@pytest.fixture(scope="module")
def app(backend_server, tmp_path_factory):
    """The app pointed at a server we can inspect, like a self-hosted predictions API."""
    running = RunningApp({"REPLICATE_BASE_URL": backend_server.url, "REPLICATE_API_TOKEN": TOKEN},
                         tmp_path_factory.mktemp("app") / "app.log")
    yield running
    running.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (320, 200), (220, 20, 30)).save(path)
    return str(path)


def _server_prediction(server, prediction_id=None):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if prediction_id:
        return requests.get(f"{server.url}/v1/predictions/{prediction_id}", headers=headers, timeout=5).json()
    return requests.get(f"{server.url}/v1/predictions", headers=headers, timeout=5).json()["results"][0]


def test_ask_streams_the_answer_in_several_partials(app, backend_server, photo):
    client = Client(app.url, verbose=False)
    job = client.submit(image=handle_file(photo), prompt="What colour is it?", api_name="/ask")
    final = job.result(timeout=60)
    partials = job.outputs()
    assert len(partials) > 1
    assert all(final.startswith(p) for p in partials)
    prediction = _server_prediction(backend_server)
    assert prediction["status"] == "succeeded"
    assert final == prediction["output"]
    assert prediction["input"]["prompt"] == "What colour is it?"
    assert final.startswith("Mostly red: ")  # the stand-in answers the question asked


def test_parameters_reach_the_server(app, backend_server, photo):
    client = Client(app.url, verbose=False)
    final = client.predict(image=handle_file(photo), prompt="Be brief", max_new_tokens=4, num_beams=1,
                           temperature=0.5, top_p=1, api_name="/ask")
    prediction = _server_prediction(backend_server)
    assert len(final.split()) == 4
    assert prediction["input"]["max_new_tokens"] == 4
    assert prediction["input"]["temperature"] == 0.5
    assert prediction["input"]["image"].startswith("data:image/jpeg;base64,")


def test_cancelling_the_job_cancels_the_prediction(app, backend_server, photo):
    job = partly_answered(app.url, photo)
    prediction_id = _server_prediction(backend_server)["id"]
    job.cancel()
    wait_until_canceled(backend_server.url, TOKEN, prediction_id)


def test_bad_input_gets_a_specific_message(app, photo):
    client = Client(app.url, verbose=False)
    with pytest.raises(AppError, match="Type a question first"):
        client.predict(image=handle_file(photo), prompt="   ", api_name="/ask")
    with pytest.raises(AppError, match="Max length must be at least 1. Top p must be at most 1."):
        client.predict(image=handle_file(photo), prompt="hi", max_length=0, top_p=2, api_name="/ask")


@pytest.fixture(scope="module")
def embedded_app(tmp_path_factory):
    """The app with no token: it starts its own local predictions server."""
    running = RunningApp({"MINIGPT4_TOKENS_PER_SECOND": "200"}, tmp_path_factory.mktemp("embedded") / "app.log")
    yield running
    running.close()


def test_without_a_token_the_embedded_backend_answers_and_says_so(embedded_app, photo):
    page = requests.get(embedded_app.url, timeout=10).text
    # The visitor is told it is a stand-in, where the real model is, and how to ask it.
    assert "**Demo mode:**" in page and "it is not [MiniGPT-4](https://replicate.com/daanelson/minigpt-4)" in page
    assert "add your Replicate token under *Settings and history*" in page
    answer = Client(embedded_app.url, verbose=False).predict(
        image=handle_file(photo), prompt="What is this?", api_name="/ask")
    assert "not MiniGPT-4" in answer and answer.startswith("This 320×200 landscape image")
