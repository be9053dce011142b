"""The running app (`python app.py`) against hostile requests: huge or deeply nested bodies, pixel
bombs as `data:` URIs, forged chat histories, and one visitor trying to fill the shared queue.
Each was reproduced against the app before the limits in `request_limits`, `fair_queue` and
`chat_messages.MAX_MESSAGES` (issue #18)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from pathlib import Path

import pytest
import requests
from gradio_client import Client, handle_file
from PIL import Image

from minigpt4_ui.app import chat_messages, fair_queue, request_limits
from minigpt4_ui.shared.schema import PARAMETERS
from minigpt4_ui.replicate_api.sse import iter_events

from .apprunner import RunningApp
from .attacks import TrickleServer, pixel_bomb_png
from .fault_proxy import wait_for
from .raw_gradio import Session

ENDING = "Ask MiniGPT-4 itself for that."  # the last words of the stand-in's full report


class Memory:
    """The app's resident memory, sampled every 20 ms while a block runs: `growth_mb` is its peak
    over what it was before."""

    def __init__(self, pid: int):
        self.status = Path(f"/proc/{pid}/status")

    def rss_kib(self) -> int:
        line = next(line for line in self.status.read_text().splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1])

    def __enter__(self) -> "Memory":
        self.before = self.peak = self.rss_kib()
        self._done = threading.Event()

        def sample():
            while not self._done.wait(0.02):
                self.peak = max(self.peak, self.rss_kib())
        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._sampler.join()
        self.growth_mb = (self.peak - self.before) / 1024


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile-requests")
    running = RunningApp({"MINIGPT4_ALLOW_PRIVATE_URLS": "1", "MINIGPT4_TOKENS_PER_SECOND": "400",
                          "MINIGPT4_TRUSTED_PROXY_HOPS": "1", "MINIGPT4_DOWNLOADS": "0"},
                         workdir / "app.log")
    running.workdir = workdir
    yield running
    running.close()


@pytest.fixture(scope="module")
def photo(app) -> str:
    path = app.workdir / "photo.png"
    Image.new("RGB", (120, 90), (200, 40, 40)).save(path)
    return str(path)


def _dependency(app, api_name: str) -> int:
    config = requests.get(app.url + "config", timeout=30).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


def _page_seconds(app) -> float:
    asked = time.monotonic()
    assert requests.get(app.url, timeout=30).ok
    return time.monotonic() - asked


def _completion(app, session: str, timeout: float = 30) -> dict:
    with requests.get(app.url + "gradio_api/queue/data", params={"session_hash": session}, stream=True,
                      timeout=timeout) as response:
        for event in iter_events(response.iter_content(None)):
            message = json.loads(event.data)
            if message.get("msg") == "process_completed":
                return message
    raise AssertionError("the stream ended without a result")


def test_a_data_uri_pixel_bomb_is_refused_before_it_is_decoded(app):
    """13000×13000 pixels in a 0.9 MB request: Gradio's own decoder took 16 s and 3.1 GB."""
    uri = "data:image/png;base64," + base64.b64encode(pixel_bomb_png(13000, 13000)).decode()
    image = {"url": uri, "path": None, "meta": {"_type": "gradio.FileData"}}
    with Memory(app.process.pid) as memory:
        asked = time.monotonic()
        event = requests.post(app.url + "gradio_api/call/ask", timeout=30, json={
            "data": [image, "What is this?", *[field.default for field in PARAMETERS]]}).json()["event_id"]
        said = requests.get(app.url + f"gradio_api/call/ask/{event}", timeout=30).text
        seconds = time.monotonic() - asked
    assert "The image is 13000×13000 pixels; images up to 64 megapixels are accepted." in said.encode().decode(
        "unicode_escape")
    assert seconds < 3 and memory.growth_mb < 100, (seconds, memory.growth_mb)


def test_a_small_data_uri_image_is_answered_like_an_upload(app):
    with open(Path(__file__).parent.parent / "assets" / "coffee.jpg", "rb") as jpeg:
        uri = "data:image/jpeg;base64," + base64.b64encode(jpeg.read()).decode()
    event = requests.post(app.url + "gradio_api/call/ask", timeout=30, json={
        "data": [{"url": uri, "path": None, "meta": {"_type": "gradio.FileData"}}, "What is this?",
                 *[field.default for field in PARAMETERS]]}).json()["event_id"]
    said = requests.get(app.url + f"gradio_api/call/ask/{event}", timeout=60).text
    assert "event: complete" in said and ENDING in said


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_56_mb_body_is_refused_unread_and_pages_stay_fast(app, chunked):
    """800k chat messages to the `new_image` handler: 42.7 s of work, pages 29.8 s, 1.1 GB kept."""
    messages = json.dumps([{"role": "user", "content": "x" * 40}] * 800_000)
    body = f'{{"fn_index": {_dependency(app, "new_image")}, "data": [null, {messages}]}}'.encode()
    assert len(body) > 56_000_000
    payload = (body[i:i + 1_000_000] for i in range(0, len(body), 1_000_000)) if chunked else body
    log_before = app.log_path.stat().st_size
    with Memory(app.process.pid) as memory:
        for path in ("gradio_api/run/predict", "gradio_api/queue/join"):
            refused = requests.post(app.url + path, data=payload, timeout=30,
                                    headers={"Content-Type": "application/json"})
            assert refused.status_code == 413
            assert refused.json()["detail"] == "A request to this app is limited to 8 MB; this one is larger."
            payload = body
        assert _page_seconds(app) < 2
    assert memory.growth_mb < 100, memory.growth_mb
    assert app.log_path.stat().st_size - log_before < 10_000  # the body is not written to the log


@pytest.mark.parametrize("body, said", [
    (b"[" * 100_000 + b"]" * 100_000, f"The request body nests deeper than {request_limits.MAX_JSON_DEPTH} levels."),
    (json.dumps({"data": [[{"role": "user", "content": "x"}] * 7_000]}).encode(),
     f"The request body holds more than {request_limits.MAX_JSON_VALUES:,} values."),
    (b'{"data": [' * 3 + b"not json", "The request body is not valid JSON."),
], ids=["deep", "many-values", "malformed"])
def test_a_body_of_a_shape_no_page_sends_is_refused_in_words(app, body, said):
    refused = requests.post(app.url + "gradio_api/queue/join", data=body, timeout=30,
                            headers={"Content-Type": "application/json"})
    assert (refused.status_code, refused.json()["detail"]) == (400, said)


def test_queued_handlers_cannot_be_called_around_the_queue(app):
    direct = requests.post(app.url + "gradio_api/run/predict", timeout=30, json={
        "fn_index": _dependency(app, "load_url"), "data": ["http://127.0.0.1:9/a.png"]})
    assert direct.status_code == 404 and "join the queue" in direct.json()["detail"]


def test_a_forged_history_longer_than_any_chat_is_refused_by_every_handler(app, photo):
    """60k messages made one answer take 218 s instead of 0.6 s: each streamed word re-drew them."""
    forged = [{"role": role, "content": [{"type": "text", "text": "Hi"}], "metadata": None, "options": None}
              for role in ("user", "assistant")] * (chat_messages.MAX_MESSAGES // 2 + 1)
    answered = requests.post(app.url + "gradio_api/run/predict", timeout=30, json={
        "fn_index": _dependency(app, "undo"), "data": [forged], "session_hash": secrets.token_hex(6)})
    assert chat_messages.TOO_LONG in answered.text, answered.text[:300]
    checked = Session(app.url).queued("new_image", [None, forged])  # it reads the image: queued
    assert chat_messages.TOO_LONG in json.dumps(checked), json.dumps(checked)[:300]


def test_a_chat_at_its_question_limit_says_so_and_keeps_the_question(app):
    config = requests.get(app.url + "config", timeout=30).json()
    send = _dependency(app, "send")
    inputs = next(d for d in config["dependencies"] if d["id"] == send)["inputs"]
    history = [{"role": "user", "content": [{"type": "text", "text": f"Question {n}"}], "metadata": None,
                "options": None} for n in range(chat_messages.MAX_QUESTIONS)]
    sent = requests.post(app.url + "gradio_api/run/predict", timeout=30, json={
        "fn_index": send, "session_hash": secrets.token_hex(6),
        "data": [None, "One more?", history, *[None] * (len(inputs) - 3)]}).json()
    chat, prompt, question, message = sent["data"][:4]
    assert chat_messages.TOO_LONG in json.dumps(message)
    assert "__type__" in json.dumps(chat) and "__type__" in json.dumps(prompt)  # both untouched


def test_one_visitor_cannot_fill_the_queue_for_the_others(app, photo):
    """200 URL loads in 0.8 s from one visitor used to leave every other visitor 'Queue is full'."""
    limit = fair_queue.per_visitor(128)
    load_url = _dependency(app, "load_url")
    with TrickleServer(phase="headers", interval=3.0) as slow:
        outcomes = []
        for n in range(3 * limit):
            joined = requests.post(app.url + "gradio_api/queue/join", timeout=30,
                                   headers={"X-Forwarded-For": "198.51.100.9"}, json={
                                       "data": [f"{slow.url}/{n}.png"], "fn_index": load_url,
                                       "session_hash": secrets.token_hex(6)})
            outcomes.append(joined.status_code)
            if joined.status_code != 200:
                assert joined.json()["detail"].startswith(f"You already have {limit} requests waiting or running")
        assert outcomes.count(200) == limit and outcomes.count(503) == 2 * limit, outcomes
        # Everyone else is served as usual meanwhile.
        assert _page_seconds(app) < 2
        for n in range(3):
            other = Client(app.url, verbose=False, headers={"X-Forwarded-For": f"203.0.113.{n + 20}"})
            assert other.predict(image=handle_file(photo), prompt="Me too?", api_name="/ask").endswith(ENDING)
        wait_for(lambda: slow.open_connections() == 0, 60, "the slow loads to be cut off")
    # Once their loads ended, the same visitor may queue again.
    again = requests.post(app.url + "gradio_api/queue/join", timeout=30, headers={"X-Forwarded-For": "198.51.100.9"},
                          json={"data": [""], "fn_index": load_url, "session_hash": secrets.token_hex(6)})
    assert again.status_code == 200
