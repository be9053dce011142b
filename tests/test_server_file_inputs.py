"""A Files API upload used as a prediction's image input (as replicate-python and the JS client
do with large images), through `replicate_api.Client`."""

from __future__ import annotations

import json

import requests

from minigpt4_ui.replicate_api import Client

from .client_helpers import create_finished
from .conftest import SERVER_TOKEN, png_bytes
from .test_server import AUTH, EXPECTED, PROMPT, VERSION


def upload(server, content: bytes, *, filename: str, content_type: str, metadata: dict) -> dict:
    """POST /v1/files as the official clients send it: the content and a JSON metadata part."""
    response = requests.post(f"{server.url}/v1/files", headers=AUTH, timeout=10, files={
        "content": (filename, content, content_type),
        "metadata": (None, json.dumps(metadata), "application/json")})
    response.raise_for_status()
    return response.json()


def test_an_uploaded_image_answers_like_a_data_uri(server):
    file = upload(server, png_bytes(), filename="image.png", content_type="image/png", metadata={})
    client = Client(token=SERVER_TOKEN, base_url=server.url, version=VERSION)
    prediction = create_finished(client, {"image": file["urls"]["get"], "prompt": PROMPT})
    assert prediction["output"] == EXPECTED
    assert prediction["input"]["image"].startswith(f"{server.url}/v1/files/")
    stored = requests.get(file["urls"]["get"], headers=AUTH, timeout=5).json()
    assert (stored["content_type"], stored["size"], stored["name"]) == ("image/png", len(png_bytes()),
                                                                        "image.png")


def test_upload_keeps_name_size_and_metadata(server):
    file = upload(server, b"hello", filename="a.txt", content_type="text/plain", metadata={"x": 1})
    assert (file["name"], file["size"], file["metadata"]) == ("a.txt", 5, {"x": 1})
