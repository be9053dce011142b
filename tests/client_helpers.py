"""What tests do with `replicate_api.Client` that the app itself never needs, and with the app's own `/ask`."""

from __future__ import annotations

import time

import requests
from gradio_client import Client as AppClient, handle_file

from minigpt4_ui.replicate_api import Client


def finished(client: Client, prediction: dict) -> dict:
    """Follow a prediction with the client's own updates; the final prediction object."""
    *_, last = client.updates(prediction)
    return last.prediction


def create_finished(client: Client, input: dict, **options) -> dict:
    """Create a prediction (`options` as for `Client.create`) and return it once it has ended."""
    return finished(client, client.create(input, **options))


def wait_until_canceled(server_url: str, token: str, prediction_id: str, timeout: float = 15) -> None:
    """Wait for the server to say the prediction was canceled; fail if it ends otherwise or runs on."""
    deadline = time.monotonic() + timeout
    while (status := requests.get(f"{server_url}/v1/predictions/{prediction_id}", timeout=5,
                                  headers={"Authorization": f"Bearer {token}"}).json()["status"]) != "canceled":
        assert status not in ("succeeded", "failed"), f"the prediction ended {status}, not canceled"
        assert time.monotonic() < deadline, f"the prediction is still {status}"
        time.sleep(0.05)


def partly_answered(app_url: str, image: str, prompt: str = "Describe it slowly", timeout: float = 30):
    """A `/ask` job of the app's (gradio_client), once its answer has partly arrived."""
    job = AppClient(app_url, verbose=False).submit(image=handle_file(image), prompt=prompt, api_name="/ask")
    deadline = time.monotonic() + timeout
    while len(job.outputs()) < 2:
        assert time.monotonic() < deadline, "no partial answer arrived"
        time.sleep(0.05)
    return job
