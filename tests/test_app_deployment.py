"""The app (`python app.py`) with a host's deployment (MINIGPT4_DEPLOYMENT) on its predictions API,
and the warm-up question at start: ready, and failing in words."""

from __future__ import annotations

import time

import pytest
import requests
from gradio_client import Client, handle_file

from minigpt4_ui.server import start_background

from .apprunner import RunningApp
from .client_helpers import partly_answered, wait_until_canceled
from .raw_gradio import Session
from .test_public_host import Chat

TOKEN = "r8_deployment_test_token_0123456789"
DEPLOYMENT = "acme/minigpt4-event"
ANSWERED_BY = f"daanelson/minigpt-4 on the host's deployment {DEPLOYMENT} (this host's predictions API)"


@pytest.fixture(scope="module")
def server():
    with start_background(token=TOKEN, tokens_per_second=40, deployments=(DEPLOYMENT,)) as running:
        yield running


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    from .conftest import png_bytes

    path = tmp_path_factory.mktemp("img") / "photo.png"
    path.write_bytes(png_bytes(160, 120))
    return str(path)


def _app(server, tmp_path_factory, deployment: str, *args: str) -> RunningApp:
    return RunningApp({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": TOKEN,
                       "MINIGPT4_DEPLOYMENT": deployment, "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0"},
                      tmp_path_factory.mktemp("deployment") / "app.log", args=args)


@pytest.fixture(scope="module")
def app(server, tmp_path_factory):
    running = _app(server, tmp_path_factory, DEPLOYMENT, "--warm-up")
    yield running
    running.close()


def _predictions(server) -> list[dict]:
    return requests.get(f"{server.url}/v1/predictions", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=5).json()["results"]


def _settled_banner(app) -> str:
    """The banner once the warm-up has ended (the page refreshes it every second until then)."""
    session = Session(app.url)
    deadline = time.monotonic() + 30
    while "**Warming up:**" in (banner := session.run("refresh_banner", [""])[0]):  # no token of its own
        assert time.monotonic() < deadline, f"still warming up: {banner}"
        time.sleep(0.1)
    return banner


def test_the_warm_up_reaches_the_deployment_and_says_ready(app, server):
    banner = _settled_banner(app)
    assert banner.startswith(f"**Backend:** the host's own deployment `{DEPLOYMENT}` on this host's "
                             "predictions API answers")
    assert "**Ready:** the model answered a warm-up question in " in banner
    warm_up = next(p for p in _predictions(server) if p["input"]["prompt"] == "Say OK.")
    assert (warm_up["deployment"], warm_up["status"]) == (DEPLOYMENT, "succeeded")
    assert (warm_up["input"]["max_new_tokens"], warm_up["input"]["num_beams"]) == (1, 1)
    log = app.output()
    assert f"warming up: one small prediction (max_new_tokens 1) for {ANSWERED_BY}" in log
    assert "warm-up: ready in " in log and warm_up["id"] in log
    assert log.index("warming up") < log.index("warm-up: ready")
    assert server.url not in banner


def test_the_chat_answers_through_the_deployment_and_lists_it(app, server, photo):
    chat = Chat(app, photo)
    assert chat.send("What is this?") == ""
    chat.respond()
    assert chat.status().startswith("Done in") and chat.status().endswith(f" · {ANSWERED_BY}")
    newest = _predictions(server)[0]
    assert (newest["deployment"], newest["input"]["prompt"], newest["status"]) == (
        DEPLOYMENT, "What is this?", "succeeded")
    history = chat.answered()[0]["data"]
    assert history[0][1] == "succeeded" and history[0][4] == newest["id"]
    shown = chat.session.queued("show_record", [None, ""], event_data={"index": [0, 0], "value": ""})
    record, message = shown["output"]["data"]
    assert message == "" and record["id"] == newest["id"] and record["deployment"] == DEPLOYMENT


def test_ask_streams_from_the_deployment_and_ask_model_uses_it_too(app, server, photo):
    client = Client(app.url, verbose=False)
    job = client.submit(image=handle_file(photo), prompt="Describe it", api_name="/ask")
    final = job.result(timeout=60)
    assert len(job.outputs()) > 1 and all(final.startswith(partial) for partial in job.outputs())
    assert (_predictions(server)[0]["deployment"], _predictions(server)[0]["output"]) == (DEPLOYMENT, final)
    client.predict(image=handle_file(photo), prompt="Hi", model="", parameters='{"max_new_tokens": 2}',
                   api_name="/ask_model")
    assert _predictions(server)[0]["deployment"] == DEPLOYMENT
    # Another model goes to its own route, not to the deployment.
    client.predict(image=handle_file(photo), prompt="Hi", model="yorickvp/llava-13b",
                   parameters='{"max_tokens": 2}', api_name="/ask_model")
    assert "deployment" not in _predictions(server)[0]


def test_stopping_cancels_the_deployments_prediction(app, server, photo):
    job = partly_answered(app.url, photo)
    prediction = _predictions(server)[0]
    assert prediction["deployment"] == DEPLOYMENT
    job.cancel()
    wait_until_canceled(server.url, TOKEN, prediction["id"])


def test_a_failing_warm_up_is_named_in_the_log_and_the_banner(server, tmp_path_factory):
    app = _app(server, tmp_path_factory, "acme/no-such-deployment", "--warm-up")
    try:
        banner = _settled_banner(app)
        why = ("POST /v1/deployments/acme/no-such-deployment/predictions found nothing (the API answered "
               "404 Not found: The requested resource could not be found.)")
        assert "**Warm-up failed** after " in banner and f"s: {why}. Questions may fail the same way." in banner
        assert "warm-up failed after " in app.output() and why in app.output()
        assert server.url not in banner and TOKEN not in banner + app.output()
    finally:
        app.close()
