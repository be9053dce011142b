"""The host's token never leaves the server: not in any HTTP response of the app, nor in any log.

The app runs with a long, distinctive token against a predictions server (its own process, so its
log is captured too). Every response is recorded (status line, headers, body): the page, its
assets, the config, the API description, successful answers, refused input, model and API errors,
and a second app whose token the server rejects. Then all of it, and both processes' output, is
searched for the token, its `Bearer` form and its base64 form.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from PIL import Image

from minigpt4_ui.shared import schema
from minigpt4_ui.app.backend import Backend
from minigpt4_ui.replicate_api import Client as ApiClient
from minigpt4_ui.app.settings import DEFAULT_VERSION, Settings
from minigpt4_ui.replicate_api.sse import iter_events
from minigpt4_ui.app.handlers import Studio

from .apprunner import ROOT, RunningApp, free_port
from .handler_inputs import controls

TOKEN = "r8_HOST_SECRET_" + secrets.token_hex(20)
WRONG = "r8_WRONG_SECRET_" + secrets.token_hex(20)


def forms(token: str) -> list[str]:
    """The ways a token could leak: as is, as a header value, base64-encoded, or in part."""
    return [token, f"Bearer {token}", base64.b64encode(token.encode()).decode().rstrip("="),
            token[len("r8_"):][:24]]


class Recorder:
    """Every response seen, as text: 'label status' line, headers, body."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def add(self, label: str, response: requests.Response, body: str | None = None) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        text = response.text if body is None else body
        self.records.append((f"{label} {response.status_code}", f"{headers}\n\n{text}"))

    def get(self, label: str, url: str, **kwargs) -> requests.Response:
        response = requests.get(url, timeout=30, **kwargs)
        self.add(label, response)
        return response

    def leaks(self, needles: list[str]) -> list[str]:
        return [label for label, text in self.records for needle in needles if needle in text]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m minigpt4_ui.server` with the host's token, its output kept in a log file."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPLICATE_", "MINIGPT4_"))}
    env.update(MINIGPT4_SERVER_TOKEN=TOKEN, PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "minigpt4_ui.server", "--port", str(port),
                                    "--tokens-per-second", "400"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/", timeout=2)
            break
        except requests.ConnectionError:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    process.url, process.log = url, log
    yield process
    process.terminate()
    process.wait(timeout=15)


@pytest.fixture(scope="module")
def app(server, tmp_path_factory):
    running = RunningApp({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": TOKEN},
                         tmp_path_factory.mktemp("app") / "app.log")
    yield running
    running.close()


@pytest.fixture(scope="module")
def rejected_app(server, tmp_path_factory):
    """An app whose token the server does not accept (every prediction is a 401)."""
    running = RunningApp({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": WRONG},
                         tmp_path_factory.mktemp("wrong") / "app.log")
    yield running
    running.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "teal.png"
    Image.new("RGB", (220, 140), (30, 130, 130)).save(path)
    return path


def raw_ask(recorder: Recorder, url: str, image: Path | None, prompt: str, label: str, **params) -> list[dict]:
    """`ask` over Gradio's own queue protocol, as a browser speaks it, recording every response."""
    config = requests.get(url + "config", timeout=30).json()
    dep = next(d for d in config["dependencies"] if d.get("api_name") == "ask")
    values = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    data = [values.get(i) for i in dep["inputs"]]
    if image is not None:
        with open(image, "rb") as handle:
            uploaded = requests.post(url + "gradio_api/upload", files={"files": (image.name, handle)}, timeout=30)
        recorder.add(f"{label} upload", uploaded)
        data[0] = {"path": uploaded.json()[0], "orig_name": image.name, "meta": {"_type": "gradio.FileData"}}
    data[1] = prompt
    names = [f.name for f in schema.FIELDS]
    for name, value in params.items():
        data[names.index(name)] = value
    session_hash = secrets.token_hex(6)
    joined = requests.post(url + "gradio_api/queue/join", timeout=30, json={
        "data": data, "fn_index": dep["id"], "session_hash": session_hash, "event_data": None,
        "trigger_id": dep["targets"][0][0]})
    recorder.add(f"{label} join", joined)
    messages: list[dict] = []
    with requests.get(url + "gradio_api/queue/data", params={"session_hash": session_hash}, stream=True,
                      timeout=60) as response:
        raw = bytearray()

        def chunks():
            while chunk := response.raw.read1(65536):
                raw.extend(chunk)
                yield chunk

        for event in iter_events(chunks()):
            message = json.loads(event.data)
            messages.append(message)
            if message.get("msg") in ("process_completed", "close_stream"):
                break
        recorder.add(f"{label} stream", response, body=raw.decode(errors="replace"))
    return messages


def _completed(messages: list[dict]) -> dict:
    return next(m for m in messages if m.get("msg") == "process_completed")


def test_the_token_appears_in_no_response_and_no_log(app, rejected_app, server, photo, tmp_path):
    recorder = Recorder()

    # The page, everything it links to on the app, the config and the API's description.
    page = recorder.get("page", app.url)
    assert page.ok
    linked = {urljoin(app.url, m) for m in re.findall(r'(?:src|href)="([^"#]+)"', page.text)}
    same_origin = sorted(u for u in linked if urlsplit(u).netloc == urlsplit(app.url).netloc)
    assert same_origin, "the page links no assets of its own"
    for asset in same_origin[:80]:
        recorder.get(f"asset {urlsplit(asset).path}", asset)
    for path in ("config", "gradio_api/info", "gradio_api/info?all_endpoints=true", "gradio_api/openapi.json",
                 "gradio_api/startup-events", "manifest.json", "theme.css", "robots.txt",
                 "gradio_api/queue/status", "nonexistent-page"):
        recorder.get(path, app.url + path)

    # A successful answer, streamed.
    ok = _completed(raw_ask(recorder, app.url, photo, "What colour is it?", "ask ok"))
    assert ok["success"] and ok["output"]["data"][0].startswith("Mostly teal")

    # Refused input, a damaged image, a parameter out of range.
    bad = _completed(raw_ask(recorder, app.url, photo, "", "ask empty prompt"))
    assert not bad["success"] and "Type a question first" in bad["output"]["error"]
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    broken = _completed(raw_ask(recorder, app.url, damaged, "hi", "ask damaged"))
    assert not broken["success"]
    out_of_range = _completed(raw_ask(recorder, app.url, photo, "hi", "ask out of range", temperature=9))
    assert "Temperature must be at most 2" in out_of_range["output"]["error"]

    # The API rejects the other app's token: a 401 all the way to the user.
    rejected = _completed(raw_ask(recorder, rejected_app.url, photo, "hi", "ask 401"))
    assert not rejected["success"] and "the API token was rejected" in rejected["output"]["error"]
    recorder.get("rejected config", rejected_app.url + "config")

    # The predictions the app made, as the server stores them (the app's own view of them).
    listing = requests.get(server.url + "/v1/predictions", headers={"Authorization": f"Bearer {TOKEN}"},
                           timeout=10)
    assert listing.ok and listing.json()["results"]

    assert len(recorder.records) > 20
    assert recorder.leaks(forms(TOKEN) + forms(WRONG)) == []
    for name, output in (("app log", app.output()), ("rejected app log", rejected_app.output()),
                         ("server log", server.log.read_text(errors="replace"))):
        for needle in forms(TOKEN) + forms(WRONG):
            assert needle not in output, f"the token is in the {name}"


def chat_answer(studio: Studio, photo: Path, question: str, visitor_token: str = "") -> list:
    """Send, then the answer stream, as the page chains them; every update as the page saw it."""
    values = controls()
    sent = studio.chat.send(None, str(photo), question, [], *values)
    assert sent.message == "", sent.message
    stream = studio.chat.respond(None, str(photo), sent.question, sent.chat, [], visitor_token, schema.SPEC)
    return [repr(sent)] + [repr(update) for update in stream]  # the handler reuses its lists


def test_the_chat_handlers_never_output_the_token(server, photo):
    """What the UI shows (chat, status, the request as JSON/curl/Python, history, a prediction)."""
    client = ApiClient(token=TOKEN, base_url=server.url, version=DEFAULT_VERSION, poll_interval=0.05)
    studio = Studio(Backend(client=client, embedded=False, notice=""), Settings())
    values = controls()
    sent = studio.chat.send(None, str(photo), "Any secrets?", [], *values)
    outputs = list(studio.chat.respond(None, str(photo), sent.question, sent.chat, [], "", schema.SPEC))
    shown_updates = [repr(update) for update in outputs]
    last = outputs[-1]
    assert last.chat[-1]["content"].startswith("This 220×140 landscape image")
    assert last.records[0].status == "succeeded"
    shown = studio.show_record(last.records, "", type("Select", (), {"index": [0]})())
    assert shown[0]["id"] == last.records[0].id
    done = studio.chat.answered(last.records)  # History and View request, once the answer has ended
    text = repr(sent) + "".join(shown_updates) + repr(shown) + repr(done)
    assert "curl" in done.request_curl and "REPLICATE_API_TOKEN" in text  # the snippets name the variable instead
    assert server.url not in done.request_curl + done.request_python  # nor the host's API address
    for needle in forms(TOKEN):
        assert needle not in text


def test_a_visitor_token_is_not_shown_either(server, photo):
    """A visitor's own token is used for their calls (on Replicate only, never on the host's
    server: tests/test_public_host.py) and never written into any output."""
    visitor = "r8_VISITOR_SECRET_" + secrets.token_hex(16)
    client = ApiClient(token=TOKEN, base_url=server.url, version=DEFAULT_VERSION, poll_interval=0.05)
    studio = Studio(Backend(client=client, embedded=False, notice=""), Settings())
    text = "".join(chat_answer(studio, photo, "Mine?", visitor_token=visitor))
    assert "could not reach Replicate" in text  # from the test machine, which has no network
    listed = studio.account_predictions(visitor)
    assert "could not reach Replicate" in listed[1]
    text += repr(listed)
    for needle in forms(visitor) + forms(TOKEN):
        assert needle not in text
