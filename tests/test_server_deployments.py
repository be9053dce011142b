"""Deployments on the embedded server: the official Python client's flows, this project's wrapper,
and raw HTTP for what the clients do not check."""

from __future__ import annotations

import pytest
import replicate
import requests
from replicate.exceptions import ReplicateError
from replicate.stream import ServerSentEvent

from minigpt4_ui import replicate_api
from minigpt4_ui.server import start_background

from .conftest import SERVER_TOKEN
from .test_server import EXPECTED, PROMPT, VERSION

DEPLOYMENT = "acme/minigpt4-event"


@pytest.fixture(scope="module")
def deployed():
    with start_background(token=SERVER_TOKEN, tokens_per_second=400, deployments=(DEPLOYMENT,)) as fast, \
            start_background(token=SERVER_TOKEN, tokens_per_second=4, deployments=(DEPLOYMENT,)) as slow:
        yield fast, slow


@pytest.fixture
def client(deployed) -> replicate.Client:
    client = replicate.Client(api_token=SERVER_TOKEN, base_url=deployed[0].url)
    client.poll_interval = 0.02
    return client


def test_deployments_get_names_its_release(client):
    deployment = client.deployments.get(DEPLOYMENT)
    assert (deployment.owner, deployment.name, deployment.id) == ("acme", "minigpt4-event", DEPLOYMENT)
    release = deployment.current_release
    assert (release.number, release.model, release.version) == (1, "daanelson/minigpt-4", VERSION)
    assert (release.configuration.hardware, release.configuration.min_instances,
            release.configuration.max_instances) == ("cpu", 1, 1)
    assert release.created_by.username == "acme"


def test_deployments_list(client):
    assert [d.id for d in client.deployments.list().results] == [DEPLOYMENT]


def test_deployment_predictions_create_wait_get_and_list(client, png_uri):
    prediction = client.deployments.get(DEPLOYMENT).predictions.create(
        input={"image": png_uri(), "prompt": PROMPT})
    assert prediction.status == "starting" and prediction.urls["stream"]
    prediction.wait()
    assert (prediction.status, prediction.output, prediction.version) == ("succeeded", EXPECTED, VERSION)
    fetched = client.predictions.get(prediction.id)
    assert fetched.output == EXPECTED
    assert prediction.id in [p.id for p in client.predictions.list().results]


def test_the_two_other_ways_to_create_on_a_deployment(client, png_uri):
    by_namespace = client.deployments.predictions.create(DEPLOYMENT, input={"image": png_uri(), "prompt": PROMPT})
    by_keyword = client.predictions.create(deployment=DEPLOYMENT, input={"image": png_uri(), "prompt": PROMPT})
    by_namespace.wait()
    by_keyword.wait()
    assert by_namespace.output == by_keyword.output == EXPECTED


def test_a_deployment_prediction_streams(client, png_uri):
    prediction = client.deployments.predictions.create(DEPLOYMENT, input={"image": png_uri(), "prompt": PROMPT})
    events = list(prediction.stream())
    chunks = [event.data for event in events if event.event == ServerSentEvent.EventType.OUTPUT]
    assert len(chunks) > 50 and "".join(chunks) == EXPECTED


def test_a_deployment_prediction_cancels(deployed, png_uri):
    client = replicate.Client(api_token=SERVER_TOKEN, base_url=deployed[1].url)
    prediction = client.deployments.predictions.create(DEPLOYMENT, input={"image": png_uri(), "prompt": PROMPT})
    prediction.cancel()
    assert client.predictions.get(prediction.id).status == "canceled"


def test_unknown_deployment_and_bad_input(client, png_uri):
    with pytest.raises(ReplicateError) as missing:
        client.deployments.get("acme/no-such-deployment")
    assert missing.value.status == 404
    with pytest.raises(ReplicateError) as missing_create:
        client.deployments.predictions.create("acme/no-such-deployment", input={"image": png_uri(), "prompt": PROMPT})
    assert missing_create.value.status == 404
    with pytest.raises(ReplicateError) as invalid:
        client.deployments.predictions.create(DEPLOYMENT, input={"image": png_uri(8, 8), "prompt": PROMPT, "top_p": 2})
    assert invalid.value.status == 422 and "input.top_p" in invalid.value.detail


def test_a_deployment_takes_no_version_in_the_body(deployed, png_uri):
    answer = requests.post(f"{deployed[0].url}/v1/deployments/{DEPLOYMENT}/predictions",
                           headers={"Authorization": f"Bearer {SERVER_TOKEN}"},
                           json={"version": VERSION, "input": {"image": png_uri(), "prompt": PROMPT}}, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["invalid_fields"][0]["description"] == "Additional property version is not allowed"
    plain = requests.post(f"{deployed[0].url}/v1/predictions", headers={"Authorization": f"Bearer {SERVER_TOKEN}"},
                          json={"version": VERSION, "input": {"image": png_uri(), "prompt": PROMPT}}, timeout=10)
    assert "deployment" not in plain.json()  # only a deployment's predictions name one


def test_the_wrapper_creates_on_its_deployment_and_follows_it(deployed, png_uri):
    client = replicate_api.Client(token=SERVER_TOKEN, base_url=deployed[0].url, version=VERSION,
                                  deployment=DEPLOYMENT)
    created = client.create({"image": png_uri(), "prompt": PROMPT})
    assert (created["deployment"], created["version"]) == (DEPLOYMENT, VERSION)
    text = "".join(update.text for update in client.updates(created))
    assert text == EXPECTED
    # Another model or version named in the call goes where it says, not to the deployment.
    other = client.create({"image": png_uri(), "prompt": PROMPT}, version=VERSION)
    assert "deployment" not in other


def test_the_wrapper_names_a_missing_deployment(deployed, png_uri):
    client = replicate_api.Client(token=SERVER_TOKEN, base_url=deployed[0].url, version=VERSION,
                                  deployment="acme/gone")
    with pytest.raises(replicate_api.NotFoundError) as missing:
        client.create({"image": png_uri(), "prompt": PROMPT})
    assert "POST /v1/deployments/acme/gone/predictions found nothing" in str(missing.value)
    assert deployed[0].url not in str(missing.value)


def test_a_bad_deployment_name_is_refused_at_start():
    with pytest.raises(ValueError, match="owner/name"):
        start_background(token=SERVER_TOKEN, deployments=("no-slash",))
