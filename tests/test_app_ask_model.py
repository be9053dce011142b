"""The public `ask_model` endpoint of the running app (`python app.py`), through gradio_client."""

import json

import pytest
import requests
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from minigpt4_ui.server import start_background
from minigpt4_ui.server.predictors.builtin import measure, stand_in_answer

from .apprunner import RunningApp

TOKEN = "r8_ask_model_test_token"


@pytest.fixture(scope="module")
def backend_server():
    with start_background(token=TOKEN, tokens_per_second=40) as server:
        yield server


@pytest.fixture(scope="module")
def app(backend_server, tmp_path_factory):
    running = RunningApp({"REPLICATE_BASE_URL": backend_server.url, "REPLICATE_API_TOKEN": TOKEN},
                         tmp_path_factory.mktemp("ask-model") / "app.log")
    yield running
    running.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "green.png"
    Image.new("RGB", (300, 200), (40, 160, 60)).save(path)
    return str(path)


@pytest.fixture
def client(app):
    return Client(app.url, verbose=False)


def _latest_prediction(server) -> dict:
    return requests.get(f"{server.url}/v1/predictions", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=5).json()["results"][0]


def test_a_llava_shaped_model_streams_its_answer(client, backend_server, photo):
    job = client.submit(image=handle_file(photo), prompt="What is in this picture?",
                        model="yorickvp/llava-13b", parameters=json.dumps({"max_tokens": 30}),
                        api_name="/ask_model")
    final = job.result(timeout=60)
    partials = job.outputs()
    assert len(partials) > 1 and all(final.startswith(p) for p in partials)
    picture = measure(Image.open(photo).convert("RGB"))  # one flat colour survives the JPEG encoding
    expected = stand_in_answer("yorickvp/llava-13b", "What is in this picture?", picture)
    assert final.split() == expected.split()[:30]  # max_tokens: one word per token
    prediction = _latest_prediction(backend_server)
    assert prediction["model"] == "yorickvp/llava-13b"
    assert prediction["input"]["max_tokens"] == 30 and "".join(prediction["output"]) == final


def test_a_blip2_shaped_model_answers_its_question_input(client, backend_server, photo):
    final = client.predict(image=handle_file(photo), prompt="ignored when captioning",
                           model="andreasjansson/blip-2", parameters='{"caption": true}',
                           api_name="/ask_model")
    picture = measure(Image.open(photo).convert("RGB"))  # one flat colour survives the JPEG encoding
    assert final == stand_in_answer("andreasjansson/blip-2", "ignored when captioning", picture,
                                    wants_caption=True)
    prediction = _latest_prediction(backend_server)
    assert prediction["input"]["question"] == "ignored when captioning"
    assert prediction["input"]["caption"] is True


@pytest.mark.parametrize("model, parameters, message", [
    ("andreasjansson/blip-2", '{"temperature": 3}', "temperature: Must be less than or equal to 1"),
    ("yorickvp/llava-13b", '{"max_tokens": "many"}', "max_tokens: Invalid type. Expected: integer"),
    ("yorickvp/llava-13b", '{"num_beams": 2}', "num_beams: Additional property num_beams is not allowed"),
    ("yorickvp/llava-13b", "[1]", "parameters: must be a JSON object"),
    ("nobody/nothing", "", "nobody/nothing was not found by this demo's predictions API$"),  # no address
    ("llava", "", "'llava' is not a model reference: use owner/name or owner/name:version"),
])
def test_bad_requests_get_a_message_naming_the_problem(client, photo, model, parameters, message):
    with pytest.raises(AppError, match=message.replace("[", r"\[")):
        client.predict(image=handle_file(photo), prompt="Hi", model=model, parameters=parameters,
                       api_name="/ask_model")


def test_without_a_model_it_asks_minigpt4(client, photo):
    final = client.predict(image=handle_file(photo), prompt="Be brief", model="",
                           parameters='{"max_new_tokens": 4}', api_name="/ask_model")
    picture = measure(Image.open(photo).convert("RGB"))
    assert final.split() == stand_in_answer("MiniGPT-4", "Be brief", picture).split()[:4]


def _count(server) -> int:
    return len(requests.get(f"{server.url}/v1/predictions", headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=5).json()["results"])


@pytest.mark.parametrize("model, parameters, message", [
    # Issue 18: these reached the paid API as they were.
    ("yorickvp/llava-13b", '{"max_tokens": 1000000000}', "max_tokens: must be at most 4,096"),
    ("yorickvp/llava-13b", '{"temperature": 1e300}', "temperature: must be at most 1,000,000"),
    ("yorickvp/llava-13b", '{"temperature": -1e300}', "temperature: Must be greater than or equal to 0"),
    ("yorickvp/llava-13b", '{"temperature": NaN}', "temperature: Must be a finite number"),
    ("yorickvp/llava-13b", '{"top_p": Infinity}', "top_p: Must be a finite number"),
    ("yorickvp/llava-13b", '{"temperature": 1' + "0" * 400 + "}", "temperature: Must be a finite number"),
    ("", '{"max_new_tokens": 1000000000, "max_length": 5000}',
     "max_length: must be at most 4,096; max_new_tokens: must be at most 4,096"),
])
def test_what_a_paid_api_would_charge_for_is_capped(client, backend_server, photo, model, parameters, message):
    before = _count(backend_server)
    with pytest.raises(AppError, match="^Please fix: " + message + "$"):
        client.predict(image=handle_file(photo), prompt="Hi", model=model, parameters=parameters,
                       api_name="/ask_model")
    assert _count(backend_server) == before  # nothing reached the API


def test_a_token_count_at_the_cap_is_sent(client, backend_server, photo):
    client.predict(image=handle_file(photo), prompt="Hi", model="yorickvp/llava-13b",
                   parameters='{"max_tokens": 4096, "temperature": 1000000}', api_name="/ask_model")
    sent = _latest_prediction(backend_server)["input"]
    assert (sent["max_tokens"], sent["temperature"]) == (4096, 1000000)
