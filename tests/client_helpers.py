"""What tests do with `replicate_api.Client` that the app itself never needs."""

from __future__ import annotations

import time

import requests

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
