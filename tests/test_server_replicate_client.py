"""The official replicate 1.0.7 client, pointed at the embedded server, works unchanged."""

from __future__ import annotations

import pytest
import replicate
from replicate.exceptions import ModelError, ReplicateError
from replicate.stream import ServerSentEvent
from replicate.version import Versions

from .conftest import SERVER_TOKEN
from .test_server import EXPECTED, PROMPT, VERSION

REF = f"daanelson/minigpt-4:{VERSION}"


@pytest.fixture
def client(server) -> replicate.Client:
    client = replicate.Client(api_token=SERVER_TOKEN, base_url=server.url)
    client.poll_interval = 0.02  # the default 0.5 s would only slow the tests down
    return client


def test_run_returns_the_answer_as_a_string(client, png_uri):
    output = client.run(REF, input={"image": png_uri(), "prompt": PROMPT})
    assert output == EXPECTED


def test_run_of_a_failed_prediction_raises_model_error(client):
    with pytest.raises(ModelError, match="not an image file"):
        client.run(REF, input={"image": "data:image/png;base64,aGVsbG8=", "prompt": PROMPT})


def test_stream_yields_the_chunks_in_order(client, png_uri):
    events = list(client.stream(REF, input={"image": png_uri(), "prompt": PROMPT}))
    chunks = [event.data for event in events if event.event == ServerSentEvent.EventType.OUTPUT]
    assert len(chunks) > 50 and "".join(chunks) == EXPECTED
    assert "".join(str(event) for event in events) == EXPECTED
    assert events[-1].event == ServerSentEvent.EventType.DONE


def test_predictions_create_get_list_wait_and_cancel(client, png_uri):
    prediction = client.predictions.create(version=VERSION,
                                           input={"image": png_uri(), "prompt": PROMPT})
    assert prediction.status == "starting" and prediction.urls["stream"]
    prediction.wait()
    assert (prediction.status, prediction.output) == ("succeeded", EXPECTED)
    fetched = client.predictions.get(prediction.id)
    assert fetched.output == EXPECTED and fetched.metrics["predict_time"] >= 0
    assert prediction.id in [p.id for p in client.predictions.list().results]
    canceled = client.predictions.cancel(prediction.id)
    assert canceled.status == "succeeded"  # already finished: cancel leaves it as it was


def test_cancel_through_the_client(slow_server, png_uri):
    client = replicate.Client(api_token=SERVER_TOKEN, base_url=slow_server.url)
    prediction = client.predictions.create(version=VERSION,
                                           input={"image": png_uri(), "prompt": PROMPT})
    prediction.cancel()
    assert client.predictions.get(prediction.id).status == "canceled"


def test_version_get(client):
    version = Versions(client, model="daanelson/minigpt-4").get(VERSION)
    assert version.id == VERSION
    assert version.openapi_schema["components"]["schemas"]["Output"]["type"] == "string"


def test_errors_surface_as_replicate_errors(server, png_uri):
    with pytest.raises(ReplicateError) as unauthenticated:
        replicate.Client(api_token="wrong", base_url=server.url).predictions.get("x")
    assert (unauthenticated.value.status, unauthenticated.value.title) == (401, "Unauthenticated")
    client = replicate.Client(api_token=SERVER_TOKEN, base_url=server.url)
    with pytest.raises(ReplicateError) as invalid:
        client.predictions.create(version=VERSION,
                                  input={"image": png_uri(8, 8), "prompt": PROMPT, "top_p": 2})
    assert invalid.value.status == 422 and "input.top_p" in invalid.value.detail


def test_models_get_reads_the_latest_schema_and_runs_a_stand_in(client, png_uri):
    model = client.models.get("yorickvp/llava-13b")
    schema = model.latest_version.openapi_schema["components"]["schemas"]
    assert set(schema["Input"]["properties"]) == {"image", "prompt", "top_p", "temperature", "max_tokens"}
    output = client.run(f"yorickvp/llava-13b:{model.latest_version.id}",
                        input={"image": png_uri(), "prompt": "Write a caption.", "max_tokens": 12})
    chunks = list(output)  # an iterator model's output comes back as its chunks
    assert len(chunks) == 12 and "".join(chunks).startswith("A dark blue and white landscape picture")
    streamed = "".join(str(event) for event in client.stream(
        "yorickvp/llava-13b", input={"image": png_uri(), "prompt": "Write a caption."}))
    assert streamed.startswith("A dark blue and white landscape picture") and "not yorickvp/llava-13b itself" in streamed


def test_run_by_model_name_uses_the_models_predictions_route(client, png_uri):
    output = client.run("andreasjansson/blip-2", input={"image": png_uri(), "caption": True})
    assert isinstance(output, str) and output.startswith("A dark blue and white landscape picture")
