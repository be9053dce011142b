"""Sessions are isolated, and a public host's limits hold: one answer at a time per session, a
per-visitor hourly allowance on the host's token, a queue cap with a clear message, an upload cap.
"""

from __future__ import annotations

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from PIL import Image, ImageDraw

from minigpt4_ui.server import start_background

from .apprunner import RunningApp
from .fault_proxy import wait_for

SESSIONS = 24
ENDING = "ask MiniGPT-4 itself on Replicate."
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
    running = RunningApp({"MINIGPT4_TOKENS_PER_SECOND": "100"}, tmp_path_factory.mktemp("iso") / "app.log")
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
        assert answer.startswith(f"You asked: “{prompt}”"), (prompt, answer)
        assert f"This is a {width}×{height} " in answer and answer.endswith(ENDING)
        assert all(answer.startswith(p) for p in partials), "a partial answer that is not this session's"
        for other, (other_prompt, w, h, _) in enumerate(cases):
            if other != index:
                assert other_prompt not in answer and f"{w}×{h} " not in answer


# --- limits of a public host ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_app(tmp_path_factory):
    """The embedded backend at 4 words a second, a queue of 2 and 1 MB uploads."""
    running = RunningApp({"MINIGPT4_TOKENS_PER_SECOND": "4", "MINIGPT4_MAX_QUEUE": "2",
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
    assert other.result(timeout=30) == "You asked: “Other"
    first.cancel()
    # Once the first answer is stopped, the session may ask again.
    answer = wait_for(lambda: _try(lambda: client.predict(image=handle_file(photo), prompt="Third question",
                                                          max_new_tokens=3, api_name="/ask")),
                      30, "the session's slot to be free")
    assert answer == "You asked: “Third"


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
    assert "File size exceeded maximum allowed size of 1048576 bytes" in response.text
    client = Client(slow_app.url, verbose=False)
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client.predict(image=handle_file(str(big)), prompt="Too big?", api_name="/ask")
    small = _image(img_dir, 400, 300, "small.png")
    assert Path(small).stat().st_size < 1_000_000
    assert client.predict(image=handle_file(small), prompt="Small enough?", max_new_tokens=3,
                          api_name="/ask") == "You asked: “Small"


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
                                                      max_new_tokens=3, api_name="/ask") == f"You asked: “Paid"
    # Bad input is refused before it counts.
    with pytest.raises(AppError, match="prompt: Must not be empty"):
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
