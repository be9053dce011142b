"""What tests do with `replicate_api.Client` that the app itself never needs."""

from __future__ import annotations

from minigpt4_ui.replicate_api import Client


def finished(client: Client, prediction: dict) -> dict:
    """Follow a prediction with the client's own updates; the final prediction object."""
    *_, last = client.updates(prediction)
    return last.prediction


def create_finished(client: Client, input: dict, **options) -> dict:
    """Create a prediction (`options` as for `Client.create`) and return it once it has ended."""
    return finished(client, client.create(input, **options))
