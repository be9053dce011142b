"""`python app.py --local-model FOLDER`: a real (tiny, random) vision-language model, offline."""

import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="the local model needs requirements-local.txt")
pytest.importorskip("transformers", reason="the local model needs requirements-local.txt")

import requests  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from .apprunner import ROOT, RunningApp  # noqa: E402
from .tiny_vlm import build_tiny_vlm  # noqa: E402

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = build_tiny_vlm(tmp_path_factory.mktemp("tiny-model"))
    running = RunningApp(OFFLINE, tmp_path_factory.mktemp("local-app") / "app.log",
                         args=("--local-model", str(folder)))
    yield running
    running.close()


def test_the_local_model_streams_answers_through_the_app(app):
    page = requests.get(app.url, timeout=10).text
    assert "Local model" in page
    job = Client(app.url, verbose=False).submit(
        image=handle_file(str(ROOT / "assets" / "coffee.jpg")), prompt="What is in this picture?",
        num_beams=1, temperature=0.01, max_new_tokens=12, api_name="/ask")
    final = job.result(timeout=120)
    assert len(final.split()) == 12
    assert len(job.outputs()) > 1


def test_a_missing_model_stops_the_app_at_once_with_a_clear_message(tmp_path):
    result = subprocess.run([sys.executable, "app.py", "--local-model", str(tmp_path / "nowhere")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, env={**OFFLINE, "PATH": ""})
    assert result.returncode == 1
    assert f"error: no model folder at {tmp_path / 'nowhere'}" in result.stderr
