"""The embedded server in front of real Cog servers (coglet) running MiniGPT-4 stand-ins."""

from __future__ import annotations

import base64
import hashlib
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
import replicate
import requests
from replicate.stream import ServerSentEvent

from minigpt4_ui.shared import schema
from minigpt4_ui.server import start_background
from minigpt4_ui.server import callbacks
from minigpt4_ui.server.callbacks import CallbackReceiver
from minigpt4_ui.server.predictors.cog import CogPredictor
from minigpt4_ui.app.settings import DEFAULT_VERSION

from .apprunner import free_port
from .cogrunner import CogServer
from .conftest import png_bytes

REF = f"daanelson/minigpt-4:{DEFAULT_VERSION}"
PNG = png_bytes(96, 64)
IMAGE = "data:image/png;base64," + base64.b64encode(PNG).decode()
DIGEST = hashlib.sha256(PNG).hexdigest()[:16]


@pytest.fixture(scope="module")
def string_cog(tmp_path_factory):
    """A one-slot container whose answers take 0.4 s (so questions overlap)."""
    with CogServer("string", tmp_path_factory.mktemp("cog-string"),
                   env={"ANSWER_SECONDS": "0.4"}) as cog:
        cog.wait_for("READY")
        yield cog


@pytest.fixture(scope="module")
def iterator_cog(tmp_path_factory):
    """An iterator container whose own schema allows at most 4 beams (MiniGPT-4 allows 10)."""
    inputs = schema.openapi_input()
    inputs["properties"]["num_beams"]["maximum"] = 4
    with CogServer("iterator", tmp_path_factory.mktemp("cog-iterator"), input_schema=inputs,
                   env={"WORD_SECONDS": "0.03"}) as cog:
        cog.wait_for("READY")
        yield cog


def front(url: str, **options):
    """The embedded server forwarding to the container at `url` (progress by webhook)."""
    options.setdefault("callback_url", "http://127.0.0.1:0")
    predictor = CogPredictor(url, **options)
    server = start_background(predictor=predictor, openapi_schema=predictor.openapi_schema)
    original_close = server.close

    def close() -> None:
        original_close()
        predictor.close()

    server.close = close
    return server


@pytest.fixture(scope="module")
def string_front(string_cog):
    server = front(string_cog.url)
    yield server
    server.close()


def create(server, prompt: str, **params) -> dict:
    response = requests.post(f"{server.url}/v1/predictions", timeout=10, json={
        "version": DEFAULT_VERSION, "input": {"image": IMAGE, "prompt": prompt, **params}})
    assert response.status_code == 201, response.text
    return response.json()


def follow(server, prediction: dict, *, until=("succeeded", "failed", "canceled"),
           timeout: float = 30) -> tuple[dict, list[str]]:
    """Poll a prediction until its status is in `until`; also return every status seen."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = requests.get(f"{server.url}/v1/predictions/{prediction['id']}", timeout=5).json()
        if not seen or seen[-1] != current["status"]:
            seen.append(current["status"])
        if current["status"] in until:
            return current, seen
        time.sleep(0.02)  # polling the API under test, bounded by the deadline
    raise AssertionError(f"prediction stayed {seen[-1]}: {current}")


def test_the_image_and_every_parameter_reach_the_model(string_front):
    client = replicate.Client(api_token="unused", base_url=string_front.url)
    output = client.run(REF, input={"image": IMAGE, "prompt": "What is this?", "num_beams": 2,
                                    "temperature": 0.5, "top_p": 0.7, "repetition_penalty": 1.3,
                                    "max_new_tokens": 77, "max_length": 888})
    assert output == (f"Answer to 'What is this?': image 96x64 sha256:{DIGEST} num_beams=2 "
                      "temperature=0.5 top_p=0.7 repetition_penalty=1.3 max_new_tokens=77 "
                      "max_length=888")


def test_iterator_output_streams_word_by_word(iterator_cog):
    server = front(iterator_cog.url)
    try:
        client = replicate.Client(api_token="unused", base_url=server.url)
        chunks = [str(event) for event in client.stream(REF, input={"image": IMAGE,
                                                                    "prompt": "Stream it"})
                  if event.event == ServerSentEvent.EventType.OUTPUT]
    finally:
        server.close()
    assert len(chunks) >= 10  # the answer has 12 words
    assert "".join(chunks).startswith(f"Answer to 'Stream it': image 96x64 sha256:{DIGEST} ")


def test_the_containers_own_schema_validates_and_is_published(iterator_cog):
    server = front(iterator_cog.url)
    try:
        deadline = time.monotonic() + 10
        while requests.get(f"{server.url}/v1/models/daanelson/minigpt-4/versions/{DEFAULT_VERSION}",
                           timeout=5).json()["openapi_schema"]["components"]["schemas"]["Input"][
                               "properties"]["num_beams"].get("maximum") != 4:
            assert time.monotonic() < deadline, "the container's schema was never published"
            time.sleep(0.05)
        version = requests.get(f"{server.url}/v1/models/daanelson/minigpt-4/versions/"
                               f"{DEFAULT_VERSION}", timeout=5).json()
        rejected = requests.post(f"{server.url}/v1/predictions", timeout=5, json={
            "version": DEFAULT_VERSION, "input": {"image": IMAGE, "prompt": "hi", "num_beams": 5}})
    finally:
        server.close()
    assert version["openapi_schema"]["components"]["schemas"]["Output"] == {"type": "string",
                                                                            "title": "Output"}
    assert rejected.status_code == 422
    assert rejected.json()["invalid_fields"] == [{
        "type": "number_lte", "field": "input.num_beams",
        "description": "Must be less than or equal to 4"}]


def test_a_question_asked_during_setup_is_answered_once_ready(tmp_path):
    with CogServer("string", tmp_path, env={"SETUP_SECONDS": "1.5"}) as cog:
        server = front(cog.url)
        try:
            prediction = create(server, "Early bird?")
            final, seen = follow(server, prediction)
            health = cog.health()
        finally:
            server.close()
    assert final["status"] == "succeeded", final
    assert final["output"].startswith("Answer to 'Early bird?'")
    assert seen[0] == "starting" and seen[-1] == "succeeded"
    assert "is setting up the model" in final["logs"]
    # The container's setup logs, shown once it is up. (Which lines coglet has collected by then
    # varies on a busy machine: its own always, the predictor's printed ones usually.)
    assert "Container setup logs:" in final["logs"] and "Server ready" in final["logs"]
    # It stayed `starting` until the container's setup completed.
    assert final["started_at"] >= health["setup"]["completed_at"][:26]


def test_three_chats_on_a_one_slot_container_are_all_answered(string_front):
    predictions = [create(string_front, f"Chat {n}") for n in range(3)]
    finals = [follow(string_front, p)[0] for p in predictions]
    assert [f["status"] for f in finals] == ["succeeded"] * 3
    assert [f["output"].split(":")[0] for f in finals] == [f"Answer to 'Chat {n}'" for n in range(3)]
    assert sum("The model is busy" in f["logs"] for f in finals) >= 2


def test_stop_cancels_inside_the_container_which_then_answers_the_next(string_cog, string_front):
    prediction = create(string_front, "Describe it slowly (stop test)")
    follow(string_front, prediction, until=("processing",))
    canceled = requests.post(f"{string_front.url}/v1/predictions/{prediction['id']}/cancel",
                             timeout=10).json()
    assert canceled["status"] == "canceled"
    deadline = time.monotonic() + 10
    while "Describe it slowly (stop test)" not in string_cog.cancellations():
        assert time.monotonic() < deadline, "the container never saw the cancel"
        time.sleep(0.05)
    final, _ = follow(string_front, create(string_front, "And now?"))
    assert final["status"] == "succeeded"
    assert "The model is busy" not in final["logs"]


def test_a_model_error_shows_its_own_text(string_front):
    final, _ = follow(string_front, create(string_front, "please fail"))
    assert final["status"] == "failed"
    assert "CUDA out of memory (stand-in failure for 'please fail')" in final["error"]


def test_a_failed_setup_shows_its_own_text(tmp_path):
    with CogServer("string", tmp_path, env={"FAIL_SETUP": "weights missing at /src/weights"}) as cog:
        cog.wait_for("SETUP_FAILED")
        server = front(cog.url)
        try:
            final, _ = follow(server, create(server, "Hello?"))
        finally:
            server.close()
    assert final["status"] == "failed"
    assert "the Cog container failed to set up the model" in final["error"] and cog.url not in final["error"]
    assert "weights missing at /src/weights" in final["error"]


def test_an_unreachable_container_gets_a_clear_message(caplog):
    url = f"http://127.0.0.1:{free_port()}"
    server = front(url, unreachable_s=0.5)
    try:
        final, seen = follow(server, create(server, "Anyone there?"))
    finally:
        server.close()
    assert seen == ["starting", "failed"]
    assert final["error"].startswith("could not reach the Cog container for 0.5 s (connection refused)")
    assert "Cannot reach the Cog container (connection refused)" in final["logs"]
    assert url not in final["error"] + final["logs"]  # a visitor reads these; the host's log says where
    assert f"could not reach the Cog container at {url} for 0.5 s (connection refused)" in caplog.text


def test_without_a_callback_url_answers_arrive_whole_and_stop_still_works(string_cog):
    server = front(string_cog.url, callback_url=None)
    try:
        final, _ = follow(server, create(server, "Whole?"))
        running = create(server, "Think slowly (sync stop test)")
        follow(server, running, until=("processing",))
        canceled = requests.post(f"{server.url}/v1/predictions/{running['id']}/cancel",
                                 timeout=10).json()
    finally:
        server.close()
    assert final["status"] == "succeeded" and final["output"].startswith("Answer to 'Whole?'")
    assert "the answer arrives whole" in final["logs"]
    assert canceled["status"] == "canceled"
    assert "Think slowly (sync stop test)" in string_cog.cancellations()


def test_a_callback_url_the_container_cannot_reach_falls_back_to_whole_answers(string_cog):
    # 192.0.2.1 (TEST-NET-1) is not this machine: the receiver listens on all interfaces, and
    # the container's webhooks to that address go nowhere.
    server = front(string_cog.url, callback_url="http://192.0.2.1:0", callback_grace_s=0.5)
    try:
        first, _ = follow(server, create(server, "First?"))
        second, _ = follow(server, create(server, "Second?"))
    finally:
        server.close()
    assert first["status"] == "succeeded" and first["output"].startswith("Answer to 'First?'")
    assert "No progress reached the callback URL (--cog-callback-url)" in first["logs"]
    assert "192.0.2.1" not in first["logs"]  # the host's log has it, visitors do not
    assert second["status"] == "succeeded"
    assert "the answer arrives whole" in second["logs"]


def test_python_m_server_fronts_a_container(string_cog, tmp_path):
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "minigpt4_ui.server", "--port", str(port), "--cog",
             string_cog.url, "--cog-callback-url", "http://127.0.0.1:0"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "Ctrl-C" not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        client = replicate.Client(api_token="unused", base_url=f"http://127.0.0.1:{port}")
        output = client.run(REF, input={"image": IMAGE, "prompt": "Via the CLI?"})
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert f"the Cog container at {string_cog.url}" in log_path.read_text()
    assert output.startswith("Answer to 'Via the CLI?'")


# ---- the webhook receiver against callers that are not the container

@pytest.fixture
def receiver():
    receiver = CallbackReceiver("http://127.0.0.1:0", read_timeout_s=0.5)
    yield receiver
    receiver.close()


def _connect(receiver: CallbackReceiver) -> socket.socket:
    host, port = receiver.base_url.removeprefix("http://").split("/")[0].split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _answer(sock: socket.socket) -> bytes:
    """Everything the receiver sends until it closes the connection."""
    answer = b""
    while part := sock.recv(4096):
        answer += part
    return answer


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("path", [b"/not-the-secret/abc", b"/\xe9/abc", b"/"])
def test_a_post_to_a_wrong_path_is_refused_before_its_body_is_read(receiver, path):
    with _connect(receiver) as sock:
        sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n")
        started = time.monotonic()
        # Not one byte of the 60 MB was sent: the answer comes anyway, and the connection ends.
        assert _answer(sock).startswith(b"HTTP/1.0 404 ")
        assert time.monotonic() - started < 1


def test_a_webhook_larger_than_its_prediction_could_send_is_refused_unread(receiver):
    url, inbox = receiver.open("p1", sent_bytes=1_000)
    too_long = 1_000 + callbacks.ANSWER_BYTES + 1
    with _connect(receiver) as sock:
        sock.sendall(f"POST {urllib.parse.urlsplit(url).path} HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: {too_long}\r\n\r\n".encode())
        assert _answer(sock).startswith(b"HTTP/1.0 413 ")
    assert inbox.empty()


@pytest.mark.parametrize("length", ["9" * 10_000, "²", "-1", ""])
def test_a_webhook_without_a_usable_length_gets_411(receiver, length):
    url, inbox = receiver.open("p1", sent_bytes=1_000)
    with _connect(receiver) as sock:
        sock.sendall(f"POST {urllib.parse.urlsplit(url).path} HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Length: {length}\r\n\r\n{{}}".encode("latin-1"))
        assert _answer(sock).startswith(b"HTTP/1.0 411 ")
    assert inbox.empty()


def test_webhooks_reach_their_inbox_and_late_ones_are_acknowledged(receiver):
    url, inbox = receiver.open("p1", sent_bytes=1_000)
    assert requests.post(url, json={"status": "processing", "output": ["Hi"]}, timeout=5).status_code == 200
    assert requests.post(url, json=["not", "an", "object"], timeout=5).status_code == 200
    assert inbox.get(timeout=5) == {"status": "processing", "output": ["Hi"]} and inbox.empty()
    receiver.discard("p1")
    assert requests.post(url, json={"status": "succeeded"}, timeout=5).status_code == 200


def test_idle_connections_are_closed_after_the_read_timeout(receiver):
    url, inbox = receiver.open("p1", sent_bytes=1_000)
    silent = _connect(receiver)
    half_sent = _connect(receiver)
    half_sent.sendall(f"POST {urllib.parse.urlsplit(url).path} HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 100\r\n\r\n{".encode())
    started = time.monotonic()
    assert _closed_within(silent, 3) and _closed_within(half_sent, 3)
    assert 0.4 < time.monotonic() - started < 3
    assert inbox.empty()
    silent.close()
    half_sent.close()


def test_a_flood_of_idle_connections_holds_a_bounded_number_of_threads():
    receiver = CallbackReceiver("http://127.0.0.1:0", read_timeout_s=3)
    try:
        url, inbox = receiver.open("p1", sent_bytes=1_000)
        threads_before = threading.active_count()
        flood = [_connect(receiver) for _ in range(200)]
        served = threading.active_count() - threads_before
        # Those past the limit are closed at once; the others wait out their read timeout.
        refused = sum(_closed_within(sock, 0.1) for sock in flood)
        assert served <= callbacks.MAX_CONNECTIONS and refused >= 200 - callbacks.MAX_CONNECTIONS
        started = time.monotonic()
        while True:  # a webhook is served again once the idle ones time out
            try:
                if requests.post(url, json={"status": "starting"}, timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                assert time.monotonic() - started < 6, "the receiver never served a webhook again"
                time.sleep(0.05)
        assert inbox.get(timeout=5) == {"status": "starting"}
        for sock in flood:
            sock.close()
    finally:
        receiver.close()
