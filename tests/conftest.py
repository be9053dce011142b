"""Shared fixtures: embedded predictions servers on loopback, and PNG data URIs."""

from __future__ import annotations

import base64
import io
import os
import tempfile
from typing import Callable, Iterator

import pytest
from PIL import Image

from minigpt4_ui.server import RunningServer, start_background

SERVER_TOKEN = "test-token-not-secret"
# Tests never reach the Hugging Face Hub and never see the developer's own cache: an app started
# without a token finds no SmolVLM and answers with the built-in stand-in, unless a test lays out
# a cache (hf_cache.py) or a loopback Hub (fake_hub.py) of its own. huggingface_hub reads these
# at import, so they are set before anything imports it; apps started as subprocesses inherit them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="minigpt4-tests-hf-home-")


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """A token-protected server streaming at 400 words per second (an answer takes ~0.2 s)."""
    with start_background(token=SERVER_TOKEN, tokens_per_second=400) as running:
        yield running


@pytest.fixture(scope="session")
def slow_server() -> Iterator[RunningServer]:
    """A server at 4 words per second, for catching predictions while they run."""
    with start_background(token=SERVER_TOKEN, tokens_per_second=4) as running:
        yield running


def png_bytes(width: int = 640, height: int = 480, colour: tuple[int, int, int] = (20, 30, 100)) -> bytes:
    """A PNG of one colour, with a white band on the left third so there are two colours."""
    image = Image.new("RGB", (width, height), colour)
    image.paste((250, 250, 250), (0, 0, width // 3, height))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def png_uri() -> Callable[..., str]:
    """Make a `data:image/png;base64,...` URI; takes png_bytes' arguments."""
    def make(*args, **kwargs) -> str:
        return "data:image/png;base64," + base64.b64encode(png_bytes(*args, **kwargs)).decode()
    return make
