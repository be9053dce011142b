"""The official replicate 1.0.7 Python client's flows for files, webhooks, models and deadlines."""

from __future__ import annotations

import io
import json

import pytest
import replicate
from replicate.exceptions import ReplicateError
from replicate.webhook import WebhookValidationError

from minigpt4_ui.server import start_background

from .conftest import SERVER_TOKEN, png_bytes
from .test_server import EXPECTED, PROMPT, VERSION
from .test_server_webhooks import Receiver

REF = f"daanelson/minigpt-4:{VERSION}"


@pytest.fixture
def client(server) -> replicate.Client:
    client = replicate.Client(api_token=SERVER_TOKEN, base_url=server.url)
    client.poll_interval = 0.02
    return client


def test_run_uploads_a_local_file_through_the_files_api(client, tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(png_bytes())
    with open(path, "rb") as image:  # the client's default strategy: POST /v1/files, send urls.get
        output = client.run(REF, input={"image": image, "prompt": PROMPT})
    assert output == EXPECTED
    assert client.files.list()[0].name == "cat.png"  # newest first


def test_run_with_base64_strategy(client):
    output = client.run(REF, input={"image": io.BytesIO(png_bytes()), "prompt": PROMPT},
                        file_encoding_strategy="base64")
    assert output == EXPECTED


def test_run_of_the_model_without_a_version_uses_the_models_endpoint(client, png_uri):
    assert client.run("daanelson/minigpt-4", input={"image": png_uri(), "prompt": PROMPT}) == EXPECTED


def test_stream_of_the_model_without_a_version(client, png_uri):
    text = "".join(str(event) for event in
                   client.stream("daanelson/minigpt-4", input={"image": png_uri(), "prompt": PROMPT}))
    assert text == EXPECTED


def test_models_predictions_create(client, png_uri):
    prediction = client.models.predictions.create(
        model="daanelson/minigpt-4", input={"image": png_uri(), "prompt": PROMPT})
    prediction.wait()
    assert (prediction.status, prediction.output) == ("succeeded", EXPECTED)


def test_files_create_get_list_delete(client):
    file = client.files.create(io.BytesIO(b"hello"), filename="hello.txt",
                               content_type="text/plain", metadata={"k": "v"})
    assert (file.name, file.size, file.content_type, file.metadata) == ("hello.txt", 5, "text/plain",
                                                                          {"k": "v"})
    assert file.checksums["md5"] == file.etag == "5d41402abc4b2a76b9719d911017c592"
    assert client.files.get(file.id).id == file.id
    assert file.id in [f.id for f in client.files.list()]
    assert client.files.delete(file.id) is True  # a 204
    with pytest.raises(ReplicateError) as gone:
        client.files.get(file.id)
    assert gone.value.status == 404


def test_webhook_secret_and_validation(png_uri):
    with start_background(token=SERVER_TOKEN, tokens_per_second=400, allow_hosts=("127.0.0.1",)) as running, \
            Receiver() as receiver:
        client = replicate.Client(api_token=SERVER_TOKEN, base_url=running.url)
        secret = client.webhooks.default.secret()
        assert secret.key.startswith("whsec_")
        prediction = client.predictions.create(
            version=VERSION, input={"image": png_uri(), "prompt": PROMPT},
            webhook=receiver.url, webhook_events_filter=["start", "completed"])
        assert receiver.wait_for(lambda bodies: bodies and bodies[-1]["status"] == "succeeded")
        for headers, body, _ in receiver.calls:
            client.webhooks.validate(headers=headers, body=body.decode(), secret=secret)
            assert json.loads(body)["id"] == prediction.id
        headers, body, _ = receiver.calls[-1]
        with pytest.raises(WebhookValidationError):
            client.webhooks.validate(headers=headers, body=body.decode() + " ", secret=secret)
        with pytest.raises(WebhookValidationError):
            client.webhooks.validate(headers={**headers, "webhook-signature": "v1,AAAA"},
                                     body=body.decode(), secret=secret)


def test_predictions_create_with_wait(client, png_uri):
    prediction = client.predictions.create(version=VERSION, wait=10,
                                           input={"image": png_uri(), "prompt": PROMPT})
    assert (prediction.status, prediction.output) == ("succeeded", EXPECTED)


def test_unknown_version_and_model_errors(client, png_uri):
    with pytest.raises(ReplicateError) as bad:
        client.predictions.create(version="0" * 64, input={"image": png_uri(8, 8), "prompt": PROMPT})
    assert (bad.value.status, bad.value.title) == (422, "Invalid version or not permitted")
    with pytest.raises(ReplicateError) as other:
        client.run("someone/else", input={"image": png_uri(8, 8), "prompt": PROMPT})
    assert other.value.status == 422
