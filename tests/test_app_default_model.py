"""`python app.py` with no flags and no token: SmolVLM on ONNX Runtime answers, from the cache or
after a download from a loopback stand-in for the Hub; the built-in stand-in answers only when the
model cannot be had. The tiny fixture (tests/fixtures/tiny-smolvlm) plays SmolVLM-256M here."""

from __future__ import annotations

import json
import time

import pytest
import requests
from gradio_client import Client, handle_file

from minigpt4_ui.app import images
from minigpt4_ui.shared import schema
from minigpt4_ui.server.image_input import decode, read_image
from minigpt4_ui.server.predictors.builtin import BuiltinPredictor
from minigpt4_ui.server.predictors.onnx_engine import Decoding, OnnxVLM

from .apprunner import ROOT, RunningApp, free_port
from .fake_hub import FakeHub
from .hf_cache import FIXTURE, cache_repo

REPO = "HuggingFaceTB/SmolVLM-256M-Instruct"
PHOTO = str(ROOT / "assets" / "coffee.jpg")
QUESTION = "What is in this picture?"
GREEDY = {"num_beams": 1, "temperature": 0.01, "max_new_tokens": 12}
INT8 = ("onnx/vision_encoder_int8.onnx", "onnx/embed_tokens_int8.onnx", "onnx/decoder_model_merged_int8.onnx")
OTHER_PRECISIONS = tuple(p.relative_to(FIXTURE).as_posix() for p in (FIXTURE / "onnx").glob("*.onnx")
                         if p.relative_to(FIXTURE).as_posix() not in INT8)


def expected_answer() -> str:
    """What the int8 model says to QUESTION about PHOTO, as the app sends it (a small JPEG)."""
    picture = decode(read_image(images.to_input(PHOTO)))
    engine = OnnxVLM(FIXTURE, precision="int8", threads=1)
    inputs = schema.validate({"image": "data:,", "prompt": QUESTION, **GREEDY})
    prompt = engine.prepare(inputs, picture)
    return engine.decode(list(engine.generate(prompt, Decoding.from_inputs(inputs, prompt.max_new_tokens))))


def stand_in_answer() -> str:
    picture = decode(read_image(images.to_input(PHOTO)))
    inputs = schema.validate({"image": "data:,", "prompt": QUESTION, **GREEDY})
    return "".join(BuiltinPredictor().predict(inputs, picture, lambda line: None))


def ask(app: RunningApp):
    return Client(app.url, verbose=False).submit(image=handle_file(PHOTO), prompt=QUESTION, **GREEDY,
                                                 api_name="/ask")


def banner(app: RunningApp) -> str:
    return requests.get(app.url + "config", timeout=10).text


@pytest.fixture(scope="module")
def answer() -> str:
    return expected_answer()


def test_with_the_model_in_the_cache_it_answers_not_the_stand_in(tmp_path, answer):
    cache_repo(tmp_path / "hub", REPO, skip=OTHER_PRECISIONS)
    app = RunningApp({"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}, tmp_path / "app.log")
    try:
        assert ask(app).result(timeout=60) == answer
        assert answer != stand_in_answer()
        # Picked by its own name (the picker, Compare, /ask_model), the same model answers.
        assert Client(app.url, verbose=False).predict(
            image=handle_file(PHOTO), prompt=QUESTION, model=REPO, parameters=json.dumps(GREEDY),
            api_name="/ask_model") == answer
        assert "SmolVLM-256M-Instruct**, a small open model, answers on this machine" in banner(app)
    finally:
        app.close()


def test_a_cached_model_is_used_without_asking_the_hub_anything(tmp_path, answer):
    cache_repo(tmp_path / "hub", REPO, skip=OTHER_PRECISIONS)
    with FakeHub({REPO: FIXTURE}) as hub:
        app = RunningApp(hub.env(tmp_path, HF_HUB_OFFLINE="0"), tmp_path / "app.log")
        try:
            assert ask(app).result(timeout=60) == answer
        finally:
            app.close()
        assert hub.requests == []


def test_no_cache_and_no_network_means_the_stand_in_within_5_s(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = RunningApp({"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": dead}, tmp_path / "app.log")
    try:
        started = time.monotonic()
        assert ask(app).result(timeout=30) == stand_in_answer()
        assert time.monotonic() - started < 5
        page = banner(app)
        assert "Demo mode:** a built-in stand-in answers" in page
        assert "the host gets it by starting the app once with network access" in page
        assert dead not in page
    finally:
        app.close()


def test_downloads_off_means_the_stand_in_and_no_request(tmp_path):
    with FakeHub({REPO: FIXTURE}) as hub:
        app = RunningApp(hub.env(tmp_path, HF_HUB_OFFLINE="0"), tmp_path / "app.log", args=("--no-download",))
        try:
            assert ask(app).result(timeout=30) == stand_in_answer()
        finally:
            app.close()
        assert hub.requests == []


def test_the_first_start_downloads_only_what_it_needs_while_a_question_waits(tmp_path, answer):
    # About 0.9 MB at 100 KB/s: long enough to see the app up and ask while it downloads.
    with FakeHub({REPO: FIXTURE}, bytes_per_second=100_000) as hub:
        hub.cut_after("onnx/decoder_model_merged_int8.onnx", 50_000)  # one broken connection
        app = RunningApp(hub.env(tmp_path, HF_HUB_OFFLINE="0"), tmp_path / "app.log")
        try:
            # The page is up at once; its banner follows the download (tests/e2e: it updates live).
            assert "Starting:** looking for SmolVLM-256M-Instruct" in banner(app) \
                or "Getting SmolVLM-256M-Instruct" in banner(app)
            job = ask(app)
            assert job.result(timeout=90) == answer  # it waited for the model: no stand-in answer
            fetched = {r.split("/resolve/", 1)[1].split("/", 1)[1] for r in hub.requests
                       if r.startswith("GET") and "/resolve/" in r}
            assert set(INT8) <= fetched and not fetched & set(OTHER_PRECISIONS)
            assert "model.safetensors" not in fetched
            snapshot = next((tmp_path / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots").iterdir())
            for name in INT8:
                assert (snapshot / name).read_bytes() == (FIXTURE / name).read_bytes()
            assert "Fetching" in app.output() or "Download" in app.output()  # tqdm's bar in the terminal
        finally:
            app.close()
    # The next start finds everything in the cache and asks the Hub nothing.
    with FakeHub({REPO: FIXTURE}) as hub:
        app = RunningApp(hub.env(tmp_path, HF_HUB_OFFLINE="0"), tmp_path / "again.log")
        try:
            assert ask(app).result(timeout=60) == answer
        finally:
            app.close()
        assert hub.requests == []


def test_a_download_that_keeps_failing_says_so_and_the_stand_in_answers(tmp_path):
    with FakeHub({REPO: FIXTURE}) as hub:
        hub.fail("onnx/decoder_model_merged_int8.onnx", status=500, times=100)
        app = RunningApp(hub.env(tmp_path, HF_HUB_OFFLINE="0"), tmp_path / "app.log")
        try:
            assert ask(app).result(timeout=60) == stand_in_answer()
            assert "downloading HuggingFaceTB/SmolVLM-256M-Instruct failed 3 times" in app.output()
        finally:
            app.close()
