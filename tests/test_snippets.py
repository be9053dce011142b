"""The request behind an answer, shown as JSON, curl and Python: the snippets run as shown.

Each snippet addresses Replicate with `$REPLICATE_API_TOKEN` and the visitor's own image file. Here
they run for real against a local predictions server standing in for api.replicate.com: curl with
bash (the API address swapped for the server's), Python with the official `replicate` client
(pointed at the server with REPLICATE_BASE_URL, which the client reads).
"""

from __future__ import annotations

import ast
import base64
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from minigpt4_ui.app import chat, snippets
from minigpt4_ui.shared import schema
from minigpt4_ui.server import start_background
from minigpt4_ui.app.settings import DEFAULT_VERSION

from .conftest import png_bytes

TOKEN = "r8_snippet_test_token_0123456789"
MODEL = "daanelson/minigpt-4"
PROMPT = "What's in \"this\" picture? It's mine; $HOME `id` stays text."
INPUTS = {"image": "data:image/jpeg;base64," + "A" * 5000, "prompt": "What's this?", "top_p": 0.9}


@pytest.fixture(scope="module")
def server():
    with start_background(token=TOKEN, tokens_per_second=400) as running:
        yield running


@pytest.fixture
def folder(tmp_path) -> Path:
    """The visitor's own folder, holding the image file the snippets name."""
    (tmp_path / "my photo.png").write_bytes(png_bytes(320, 200))
    return tmp_path


def _inputs(folder: Path, **params) -> dict:
    """What the app sends for a question about the file (the image encoded as the app does)."""
    return chat.build_input(str(folder / "my photo.png"), PROMPT, {**schema.defaults(), **params})


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPLICATE_", "MINIGPT4_"))}
    return {**env, **extra}


def _newest(server) -> dict:
    found = requests.get(f"{server.url}/v1/predictions", headers={"Authorization": f"Bearer {TOKEN}"},
                         timeout=10).json()["results"]
    assert found, "no prediction was created"
    return found[0]


def test_data_uri_is_shortened_with_its_size():
    shown = snippets.displayed_input(INPUTS)["image"]
    assert shown.startswith("data:image/jpeg;base64,AAA") and "5,023 characters in all" in shown
    assert snippets.displayed_input({"image": "https://x/y.png"})["image"] == "https://x/y.png"
    shown_json = json.loads(snippets.request_json(INPUTS, "v1"))
    assert shown_json["version"] == "v1" and shown_json["input"]["prompt"] == "What's this?"
    assert "A" * 100 not in snippets.request_json(INPUTS, "v1")


def test_curl_is_shell_addressed_to_replicate_with_the_token_from_the_environment():
    command = snippets.curl(INPUTS, version="v1", image_file="photo.jpg")
    setup, request = command.split("\n", 1)
    assert setup == "IMAGE=\"data:image/jpeg;base64,$(base64 < photo.jpg | tr -d '\\n')\""
    words = shlex.split(request.replace("\\\n", " "))
    pipe = words.index("|")
    assert words[:2] == ["printf", "%s"] and words[-2:] == ["--data-binary", "@-"]  # the body via stdin
    assert words[pipe + 1:pipe + 6] == ["curl", "-s", "-X", "POST", "https://api.replicate.com/v1/predictions"]
    assert "Authorization: Bearer $REPLICATE_API_TOKEN" in words
    body = json.loads(words[2])
    assert body["version"] == "v1" and body["input"]["prompt"] == "What's this?"
    assert body["input"]["image"] == "$IMAGE"  # filled from the file when the shell runs it
    assert "A" * 100 not in command  # never the app's own data URI


def test_python_snippet_parses_and_names_the_model_and_the_file():
    code = snippets.python(INPUTS, model=MODEL, version="v1", image_file="photo.jpg")
    tree = ast.parse(code)
    assert f"'{MODEL}:v1'" in code and "open('photo.jpg', 'rb')" in code
    assert "base_url" not in code and "api_token" not in code
    assert any(isinstance(node, ast.Import) and node.names[0].name == "replicate" for node in tree.body)


def test_curl_snippet_runs_as_shown(server, folder):
    inputs = _inputs(folder, max_new_tokens=40, temperature=0.5)
    command = snippets.curl(inputs, version=DEFAULT_VERSION, image_file="my photo.png")
    assert server.url not in command and TOKEN not in command
    assert command.count(snippets.REPLICATE_API) == 1
    local = command.replace(snippets.REPLICATE_API, server.url)
    done = subprocess.run(["bash", "-c", local], cwd=folder, env=_env(REPLICATE_API_TOKEN=TOKEN),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answered = json.loads(done.stdout)
    created = _newest(server)
    assert answered["id"] == created["id"]
    assert created["input"]["prompt"] == PROMPT  # quotes, $ and backticks reach the API as typed
    assert created["input"]["max_new_tokens"] == 40 and created["input"]["temperature"] == 0.5
    assert created["input"]["image"].startswith("data:image/png;base64,")
    # The file itself was sent, not the app's re-encoded copy.
    assert base64.b64decode(created["input"]["image"].split(",", 1)[1]) == (folder / "my photo.png").read_bytes()
    assert answered["status"] == "succeeded" and "320×200" in answered["output"]


def test_curl_snippet_runs_with_a_photo_of_ordinary_size(server, folder):
    (folder / "big.bmp").write_bytes(_bmp(400, 300))  # 360 KB, an everyday size for a photo
    inputs = chat.build_input(str(folder / "big.bmp"), "Big?", schema.defaults())
    local = snippets.curl(inputs, version=DEFAULT_VERSION, image_file="big.bmp").replace(
        snippets.REPLICATE_API, server.url)
    done = subprocess.run(["bash", "-c", local], cwd=folder, env=_env(REPLICATE_API_TOKEN=TOKEN),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["input"]["prompt"] == "Big?"


def _bmp(width: int, height: int) -> bytes:
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 50).convert("RGB").save(buffer, format="BMP")
    return buffer.getvalue()


def test_python_snippet_runs_as_shown(server, folder):
    inputs = _inputs(folder, max_new_tokens=40)
    code = snippets.python(inputs, model=MODEL, version=DEFAULT_VERSION, image_file="my photo.png")
    assert server.url not in code and TOKEN not in code
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=120,
                          env=_env(REPLICATE_BASE_URL=server.url, REPLICATE_API_TOKEN=TOKEN))
    assert done.returncode == 0, done.stderr
    created = _newest(server)
    assert created["input"]["prompt"] == PROMPT and created["input"]["max_new_tokens"] == 40
    assert created["status"] == "succeeded" and "320×200" in created["output"]
    assert done.stdout.strip() == created["output"]  # it prints the answer
    # The client uploaded the visitor's file through the Files API and sent its URL.
    headers = {"Authorization": f"Bearer {TOKEN}"}
    uploaded = requests.get(f"{server.url}/v1/files", headers=headers, timeout=10).json()["results"][0]
    assert uploaded["size"] == (folder / "my photo.png").stat().st_size
    assert created["input"]["image"].startswith(server.url) and uploaded["id"] in created["input"]["image"]
    content = requests.get(f"{server.url}/v1/files/{uploaded['id']}/download", headers=headers, timeout=10).content
    assert content == (folder / "my photo.png").read_bytes()
