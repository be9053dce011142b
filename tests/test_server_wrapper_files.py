"""The wrapper's Files API option (replicate_api.Client(upload_large_images=True)) against the server."""

from __future__ import annotations

import requests

from minigpt4_ui.replicate_api import Client

from .conftest import SERVER_TOKEN, png_bytes
from .test_server import AUTH, EXPECTED, PROMPT, VERSION


def test_large_data_uris_go_through_the_files_api(server, png_uri):
    client = Client(token=SERVER_TOKEN, base_url=server.url, version=VERSION,
                    upload_large_images=True, data_uri_budget=1000)
    image = png_uri()
    assert len(image) > 1000
    prediction = client.create({"image": image, "prompt": PROMPT}, wait=True)
    assert prediction["output"] == EXPECTED
    file_url = prediction["input"]["image"]
    assert file_url.startswith(f"{server.url}/v1/files/")
    file = requests.get(file_url, headers=AUTH, timeout=5).json()
    assert (file["content_type"], file["size"], file["name"]) == ("image/png", len(png_bytes()),
                                                                  "image.png")


def test_small_images_and_the_default_stay_inline(server, png_uri):
    small = png_uri(8, 8)
    uploading = Client(token=SERVER_TOKEN, base_url=server.url, version=VERSION,
                       upload_large_images=True)
    assert uploading.create({"image": small, "prompt": PROMPT})["input"]["image"] == small
    plain = Client(token=SERVER_TOKEN, base_url=server.url, version=VERSION, data_uri_budget=10)
    assert plain.create({"image": small, "prompt": PROMPT})["input"]["image"] == small


def test_upload_file(server):
    client = Client(token=SERVER_TOKEN, base_url=server.url, version=VERSION)
    file = client.upload_file(b"hello", filename="a.txt", content_type="text/plain",
                              metadata={"x": 1})
    assert (file["name"], file["size"], file["metadata"]) == ("a.txt", 5, {"x": 1})
