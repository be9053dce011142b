"""The embedded server hosts several models: models and versions endpoints, both create routes,
validation against each model's own schema, and stand-in answers shaped like each model's output."""

import io

import pytest
import requests
from PIL import Image

from minigpt4_ui.server.catalog import HOSTED, stand_in_version
from minigpt4_ui.server.predictors.builtin import caption, measure, stand_in_answer, words

from .conftest import SERVER_TOKEN, png_bytes
from .test_server import sse_events, sse_raw

AUTH = {"Authorization": f"Bearer {SERVER_TOKEN}"}
LLAVA = "yorickvp/llava-13b"
FACTS = measure(Image.open(io.BytesIO(png_bytes())).convert("RGB"))


def run(server, path: str, body: dict) -> requests.Response:
    return requests.post(f"{server.url}/v1/{path}", json=body, headers={**AUTH, "Prefer": "wait"},
                         timeout=30)


def test_models_endpoint_serves_latest_version_with_its_schema(server):
    model = requests.get(f"{server.url}/v1/models/{LLAVA}", headers=AUTH, timeout=5).json()
    assert (model["owner"], model["name"], model["visibility"]) == ("yorickvp", "llava-13b", "public")
    latest = model["latest_version"]
    assert latest["id"] == stand_in_version(LLAVA) and len(latest["id"]) == 64
    schemas = latest["openapi_schema"]["components"]["schemas"]
    assert list(schemas["Input"]["properties"]) == ["image", "prompt", "top_p", "temperature", "max_tokens"]
    assert schemas["Output"]["x-cog-array-display"] == "concatenate"
    version = requests.get(f"{server.url}/v1/models/{LLAVA}/versions/{latest['id']}", headers=AUTH,
                           timeout=5).json()
    assert version == latest


@pytest.mark.parametrize("path", ["models/nobody/nothing", f"models/{LLAVA}/versions/{'0' * 64}"])
def test_unknown_models_and_versions_get_404(server, path):
    response = requests.get(f"{server.url}/v1/{path}", headers=AUTH, timeout=5)
    assert response.status_code == 404 and response.json()["detail"]


def test_llava_answers_as_an_iterator_of_words(server, png_uri):
    question = "What is unusual about this image?"
    body = {"version": f"{LLAVA}:{stand_in_version(LLAVA)}",
            "input": {"image": png_uri(), "prompt": question}}
    prediction = run(server, "predictions", body).json()
    expected = stand_in_answer(LLAVA, question, FACTS)
    assert prediction["model"] == LLAVA and prediction["status"] == "succeeded"
    assert prediction["output"] == words(expected) and len(prediction["output"]) > 20
    assert f"it is not {LLAVA}" in expected and "640×480 landscape" in expected
    events = sse_events(sse_raw(prediction["urls"]["stream"]))
    assert [e["data"] for e in events if e["event"] == "output"] == words(expected)


def test_llava_follows_the_question_and_max_tokens(server, png_uri):
    body = {"input": {"image": png_uri(), "prompt": "Describe it in one sentence.", "max_tokens": 5}}
    output = run(server, f"models/{LLAVA}/predictions", body).json()["output"]
    assert "".join(output) == "It is a 640×480 landscape"


def test_blip2_caption_is_one_string(server, png_uri):
    body = {"input": {"image": png_uri(), "caption": True}}
    prediction = run(server, "models/andreasjansson/blip-2/predictions", body).json()
    assert prediction["output"] == (f"{caption(FACTS)} (measured by the built-in stand-in for "
                                    "andreasjansson/blip-2, not andreasjansson/blip-2 itself).")
    assert prediction["output"].startswith("A dark blue and white landscape picture")


def test_blip2_counts_earlier_turns_in_its_context(server, png_uri):
    body = {"input": {"image": png_uri(), "question": "And the colours?",
                      "context": "Question: What is it? Answer: a flag."}}
    output = run(server, "models/andreasjansson/blip-2/predictions", body).json()["output"]
    assert output.startswith("Mostly dark blue and white") and "(after 1 earlier turn)" in output


def test_blip_task_from_the_allof_enum(server, png_uri):
    version = stand_in_version("salesforce/blip")
    body = {"version": version, "input": {"image": png_uri(), "task": "visual_question_answering",
                                          "question": "Is it dark?"}}
    assert run(server, "predictions", body).json()["output"].startswith("Answer: It is of medium brightness")


@pytest.mark.parametrize("path, inputs, field, description", [
    ("models/andreasjansson/blip-2/predictions", {"temperature": 0.2}, "input.temperature",
     "Must be greater than or equal to 0.5"),
    ("models/andreasjansson/blip-2/predictions", {"caption": "yes"}, "input.caption",
     "Invalid type. Expected: boolean, given: str"),
    ("models/salesforce/blip/predictions", {"task": "dance"}, "input.task",
     'task must be one of the following: "image_captioning", "visual_question_answering", '
     '"image_text_matching"'),
    (f"models/{LLAVA}/predictions", {"num_beams": 2}, "input.num_beams",
     "Additional property num_beams is not allowed"),
])
def test_each_model_validates_its_own_inputs(server, png_uri, path, inputs, field, description):
    response = run(server, path, {"input": {"image": png_uri(8, 8), "prompt": "x", **inputs}
                                  if "llava" in path else {"image": png_uri(8, 8), **inputs}})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert {"type": response.json()["invalid_fields"][0]["type"], "field": field,
            "description": description} == response.json()["invalid_fields"][0]


def test_every_hosted_model_answers(server, png_uri):
    for model in HOSTED.values():
        question_field = model.spec.question
        body = {"input": {"image": png_uri(32, 32), question_field: "What is this?"}}
        prediction = run(server, f"models/{model.ref}/predictions", body).json()
        assert prediction["status"] == "succeeded", (model.ref, prediction)
        text = "".join(prediction["output"]) if model.spec.streams else prediction["output"]
        assert "32×32" in text and "not" in text, (model.ref, text)


def test_llava_with_history_counts_turns_and_says_when_no_image_came(server):
    body = {"input": {"prompt": "And now?", "history": ["What is it?", "A flag."]}}
    prediction = run(server, "models/yorickvp/llava-v1.6-vicuna-13b/predictions", body).json()
    assert prediction["status"] == "succeeded"
    assert "".join(prediction["output"]).startswith("No image was sent")
