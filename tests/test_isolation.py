"""Sessions are isolated, and a public host's limits hold: one answer at a time per session, a
per-visitor hourly allowance on the host's token, a queue cap with a clear message, an upload cap.
"""

from __future__ import annotations

import secrets
import threading
from types import SimpleNamespace
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from PIL import Image, ImageDraw

from minigpt4_ui.shared import schema
from minigpt4_ui.app.backend import Backend
from minigpt4_ui.replicate_api import Client as ApiClient
from minigpt4_ui.server import start_background
from minigpt4_ui.app.settings import DEFAULT_VERSION, Settings
from minigpt4_ui.app.handlers import Studio

from .apprunner import RunningApp
from .fault_proxy import wait_for
from .handler_inputs import controls

SESSIONS = 24
ENDING = "Ask MiniGPT-4 itself for that."
BUSY = "You already have an answer in progress: wait for it to finish or press Stop."
TOKEN = "r8_isolation_host_token_0123456789"


def _image(directory: Path, width: int, height: int, name: str | None = None) -> str:
    path = directory / (name or f"{width}x{height}.png")
    image = Image.new("RGB", (width, height), (200, 40, 40))
    ImageDraw.Draw(image).rectangle((0, 0, width // 2, height), fill=(30, 60, 200))
    image.save(path)
    return str(path)


@pytest.fixture(scope="module")
def img_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("isolation")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The embedded backend; its many sessions all come from one address, allowed to fill the queue."""
    running = RunningApp({"MINIGPT4_TOKENS_PER_SECOND": "100", "MINIGPT4_MAX_QUEUE_PER_VISITOR": "0"},
                         tmp_path_factory.mktemp("iso") / "app.log")
    yield running
    running.close()


def test_concurrent_sessions_each_get_their_own_answer(app, img_dir):
    cases = []
    for i in range(SESSIONS):
        width, height = 120 + 11 * i, 90 + 5 * i
        prompt = f"Session {i:02d} ({secrets.token_hex(3)}): what is in my picture?"
        cases.append((prompt, width, height, _image(img_dir, width, height)))
    start = threading.Barrier(SESSIONS)

    def session(case):
        prompt, width, height, path = case
        client = Client(app.url, verbose=False)
        start.wait(timeout=60)  # every session asks at the same moment
        job = client.submit(image=handle_file(path), prompt=prompt, api_name="/ask")
        return job.result(timeout=120), job.outputs()

    with ThreadPoolExecutor(SESSIONS) as pool:
        results = list(pool.map(session, cases))

    for index, ((prompt, width, height, _), (answer, partials)) in enumerate(zip(cases, results)):
        # Each picture has its own size, so an answer names whose picture it measured.
        assert answer.startswith(f"This {width}×{height} landscape image"), (prompt, answer)
        assert answer.endswith(ENDING)
        assert all(answer.startswith(p) for p in partials), "a partial answer that is not this session's"
        for other, (other_prompt, w, h, _) in enumerate(cases):
            if other != index:
                assert f"{w}×{h} " not in answer


def test_chat_sessions_each_get_their_own_answer_and_their_own_stop(img_dir):
    """The chat's handlers, many tabs at once on one Studio: answers, slots and Stop stay per tab."""
    tabs = 8
    with start_background(token=TOKEN, tokens_per_second=20) as server:
        client = ApiClient(token=TOKEN, base_url=server.url, version=DEFAULT_VERSION, poll_interval=0.05)
        studio = Studio(Backend(client=client, embedded=False, notice=""), Settings(visitor_limit_per_hour=0))
        values = controls()
        start = threading.Barrier(tabs)
        stopper = 3  # this tab presses Stop once its answer has begun

        def tab(i):
            request = SimpleNamespace(session_hash=f"tab-{i}", client=SimpleNamespace(host="127.0.0.1"), headers={})
            path = _image(img_dir, 130 + 7 * i, 90 + 3 * i, f"tab-{i}.png")
            prompt = f"Tab {i:02d} ({secrets.token_hex(3)}): what is in my picture?"
            start.wait(timeout=60)
            sent = studio.chat.send(request, path, prompt, [], *values)
            assert sent.message == ""
            # A second question from the same tab is refused; other tabs are not affected.
            assert studio.chat.send(request, path, "again?", sent.chat, *values).message["value"].startswith(
                "An answer is still being written")
            texts = []
            for update in studio.chat.respond(request, path, sent.question, sent.chat, [], "", schema.SPEC):
                texts.append(update.chat[-1]["content"])
                if i == stopper and len(texts[-1].split()) >= 3:
                    studio.chat.stop(request)
            stored = requests.get(f"{server.url}/v1/predictions/{update.records[0].id}", timeout=10,
                                  headers={"Authorization": f"Bearer {TOKEN}"}).json()
            return prompt, update.chat, texts, stored

        with ThreadPoolExecutor(tabs) as pool:
            results = list(pool.map(tab, range(tabs)))

    for i, (prompt, chat, texts, stored) in enumerate(results):
        answer = chat[-1]["content"]
        width, height = 130 + 7 * i, 90 + 3 * i
        assert stored["input"]["prompt"] == prompt  # this tab's question, and only it, was asked
        assert stored["output"].startswith(answer) and answer.startswith(f"This {width}×{height}"), answer
        assert all(answer.startswith(t) for t in texts if t), "a partial answer that is not this tab's"
        status = chat[-2]["metadata"]["title"]
        if i == stopper:
            assert status.startswith("Stopped by you") and not answer.endswith(ENDING)
            assert stored["status"] == "canceled"
        else:
            assert status.startswith("Done in") and answer.endswith(ENDING) and stored["status"] == "succeeded"
        assert studio.slots.current(f"tab-{i}") is None


# --- limits of a public host ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_app(tmp_path_factory):
    """The embedded backend at 4 words a second, a queue of 2 that one visitor may fill (the
    visitor's share is tested in test_hostile_requests) and 1 MB uploads."""
    running = RunningApp({"MINIGPT4_TOKENS_PER_SECOND": "4", "MINIGPT4_MAX_QUEUE": "2",
                          "MINIGPT4_MAX_QUEUE_PER_VISITOR": "0",
                          "MINIGPT4_MAX_UPLOAD_MB": "1"}, tmp_path_factory.mktemp("slow") / "app.log")
    yield running
    running.close()


def test_one_running_answer_per_session(slow_app, img_dir):
    photo = _image(img_dir, 160, 120)
    client = Client(slow_app.url, verbose=False)
    first = client.submit(image=handle_file(photo), prompt="First question", api_name="/ask")
    wait_for(lambda: len(first.outputs()) >= 1, 30, "the first answer to start")
    with pytest.raises(AppError, match=BUSY):
        client.predict(image=handle_file(photo), prompt="Second question", api_name="/ask")
    # Another session is not held up by this one.
    other = Client(slow_app.url, verbose=False).submit(image=handle_file(photo), prompt="Other session",
                                                       max_new_tokens=3, api_name="/ask")
    assert other.result(timeout=30) == "This 160×120 landscape"
    first.cancel()
    # Once the first answer is stopped, the session may ask again.
    answer = wait_for(lambda: _try(lambda: client.predict(image=handle_file(photo), prompt="Third question",
                                                          max_new_tokens=3, api_name="/ask")),
                      30, "the session's slot to be free")
    assert answer == "This 160×120 landscape"


def _try(call):
    try:
        return call()
    except AppError as exc:
        assert BUSY in str(exc)
        return None


def test_uploads_over_the_limit_are_refused(slow_app, img_dir):
    big = img_dir / "big.bmp"
    Image.effect_noise((1000, 1000), 60).convert("RGB").save(big)  # 3 MB
    assert big.stat().st_size > 2_000_000
    with open(big, "rb") as handle:
        response = requests.post(slow_app.url + "gradio_api/upload", files={"files": ("big.bmp", handle)},
                                 timeout=30)
    assert response.status_code == 413
    assert response.json() == {"detail": "An upload is limited to 1 MB; this one is larger."}
    client = Client(slow_app.url, verbose=False)
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client.predict(image=handle_file(str(big)), prompt="Too big?", api_name="/ask")
    small = _image(img_dir, 400, 300, "small.png")
    assert Path(small).stat().st_size < 1_000_000
    assert client.predict(image=handle_file(small), prompt="Will this one do?", max_new_tokens=3,
                          api_name="/ask") == "This 400×300 landscape"


def test_a_full_queue_says_so(slow_app, img_dir):
    """Runs last on this app: fills it with slow answers until the queue of 2 is full."""
    photo = _image(img_dir, 100, 100, "queue.png")
    config = requests.get(slow_app.url + "config", timeout=30).json()
    dep = next(d for d in config["dependencies"] if d.get("api_name") == "ask")
    values = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    with open(photo, "rb") as handle:
        uploaded = requests.post(slow_app.url + "gradio_api/upload", files={"files": ("q.png", handle)},
                                 timeout=30).json()[0]
    data = [values.get(i) for i in dep["inputs"]]
    data[0] = {"path": uploaded, "orig_name": "q.png", "meta": {"_type": "gradio.FileData"}}
    data[1] = "Hold the line"
    refused = None
    with requests.Session() as session:
        for _ in range(200):
            response = session.post(slow_app.url + "gradio_api/queue/join", timeout=30, json={
                "data": data, "fn_index": dep["id"], "session_hash": secrets.token_hex(6),
                "event_data": None, "trigger_id": dep["targets"][0][0]})
            if response.status_code != 200:
                refused = response
                break
    assert refused is not None, "200 waiting questions and the queue is still not full"
    assert refused.status_code == 503
    assert refused.json()["detail"] == "Queue is full. Max size is 2 and size is 2."
    with pytest.raises(QueueError, match="Queue is full! Please try again."):
        Client(slow_app.url, verbose=False).predict(image=handle_file(photo), prompt="Me too",
                                                    api_name="/ask")


@pytest.fixture(scope="module")
def paid_app(tmp_path_factory):
    """The host's token on an external server (host-paid), 2 questions per visitor per hour."""
    with start_background(token=TOKEN, tokens_per_second=400) as server:
        running = RunningApp({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": TOKEN,
                              "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "2"}, tmp_path_factory.mktemp("paid") / "app.log")
        yield running, server
        running.close()


def test_host_paid_questions_are_limited_per_visitor(paid_app, img_dir):
    app, server = paid_app
    photo = _image(img_dir, 150, 100)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    count = lambda: len(requests.get(server.url + "/v1/predictions", headers=headers, timeout=5).json()["results"])
    for n in range(2):
        assert Client(app.url, verbose=False).predict(image=handle_file(photo), prompt=f"Paid {n}",
                                                      max_new_tokens=3, api_name="/ask") == "This 150×100 landscape"
    # Bad input is refused before it counts.
    with pytest.raises(AppError, match="Type a question first"):
        Client(app.url, verbose=False).predict(image=handle_file(photo), prompt=" ", api_name="/ask")
    limit = "This demo allows 2 questions per hour per visitor on the host's Replicate account"
    # New sessions are still the same visitor. (A forged X-Forwarded-For behind a trusted proxy:
    # tests/test_hostile_app.py.)
    for client in (Client(app.url, verbose=False), Client(app.url, verbose=False)):
        with pytest.raises(AppError) as caught:
            client.predict(image=handle_file(photo), prompt="One more", api_name="/ask")
        assert limit in str(caught.value)
        assert "Try again in about 60 min, or enter your own Replicate token." in str(caught.value)
    assert count() == 2  # the refused questions never reached the API
