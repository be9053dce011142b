"""The client against the project's embedded Replicate-compatible server, over real HTTP."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from minigpt4_ui.replicate_api import (AuthenticationError, Client, InvalidInputError, replicate_page, shown_prediction)
from minigpt4_ui.server import start_background
from minigpt4_ui.app.settings import DEFAULT_VERSION

from .client_helpers import create_finished

TOKEN = "t"


@pytest.fixture(scope="module")
def server():
    with start_background(host="127.0.0.1", port=0, token=TOKEN, tokens_per_second=200,
                          page_size=2) as running:
        yield running


@pytest.fixture
def client(server):
    return Client(token=TOKEN, base_url=server.url, version=DEFAULT_VERSION, poll_interval=0.02)


def image_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 35, 35)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def inputs(**overrides) -> dict:
    return {"image": image_uri(), "prompt": "What is in this picture?", **overrides}


def test_streamed_text_equals_final_output(client):
    prediction = client.create(inputs())
    assert prediction["urls"]["stream"]
    updates = list(client.updates(prediction))
    texts = [u.text for u in updates if u.text]
    final = updates[-1]
    assert len(texts) > 1
    assert final.status == "succeeded"
    assert "".join(texts) == final.prediction["output"]
    assert final.prediction["metrics"]["predict_time"] >= 0
    assert all(u.prediction is None for u in updates[:-1])


def test_max_new_tokens_is_honoured_through_the_stream(client):
    updates = list(client.updates(client.create(inputs(max_new_tokens=3))))
    assert len("".join(u.text for u in updates).split()) == 3


def test_a_followed_prediction_ends_succeeded(client):
    prediction = create_finished(client, inputs())
    assert prediction["status"] == "succeeded"
    assert prediction["output"].startswith("This ")


def test_get(client):
    created = create_finished(client, inputs())
    assert client.get(created["id"]) == created


def test_list_follows_pages(client):
    ids = {create_finished(client, inputs(max_new_tokens=1))["id"] for _ in range(3)}
    listed = [p["id"] for p in client.list()]
    assert ids <= set(listed)
    assert len(listed) == len(set(listed))


def test_cancel_mid_stream_ends_canceled():
    # A slow server, so that the answer (about 70 words) is still streaming when the cancel arrives.
    with start_background(host="127.0.0.1", port=0, token=TOKEN, tokens_per_second=20) as slow:
        client = Client(token=TOKEN, base_url=slow.url, version=DEFAULT_VERSION, poll_interval=0.02)
        prediction = client.create(inputs())
        seen = []
        for update in client.updates(prediction):
            if update.text and not any(u.text for u in seen):
                client.cancel(prediction["id"])
            seen.append(update)
    assert seen[-1].status == "canceled"
    assert seen[-1].prediction["status"] == "canceled"
    assert 0 < len("".join(u.text for u in seen).split()) < 30


def test_invalid_input_lists_the_fields(client):
    with pytest.raises(InvalidInputError) as caught:
        client.create({"prompt": "", "max_length": 0, "temperature": 9})
    message = str(caught.value)
    assert "image is required" in message
    assert "max_length: Must be greater than or equal to" in message
    assert "temperature: Must be less than or equal to" in message
    assert caught.value.status == 422 and len(caught.value.invalid_fields) >= 3


def test_wrong_token_is_an_authentication_error(server):
    client = Client(token="wrong", base_url=server.url, version="v")
    with pytest.raises(AuthenticationError, match="check REPLICATE_API_TOKEN"):
        client.get("anything")


@pytest.mark.parametrize("urls, shown", [
    ({"get": "http://127.0.0.1:5000/v1/predictions/p1", "web": "https://replicate.com/p/p1"},
     {"web": "https://replicate.com/p/p1"}),
    ({"get": "http://10.0.0.5/v1/predictions/p1", "stream": "http://10.0.0.5/v1/streams/p1",
      "web": "http://10.0.0.5/p/p1"}, None),
    ({"web": "https://replicate.com.example.org/p/p1"}, None),
])
def test_a_prediction_is_shown_without_the_hosts_addresses(urls, shown):
    """Issue 18: the History panel showed `urls.get`, `cancel` and `stream` of the host's server."""
    prediction = {"id": "p1", "status": "succeeded", "urls": urls}
    assert shown_prediction(prediction).get("urls") == shown
    assert replicate_page(prediction) == (shown or {}).get("web")
