"""Faults injected between the app and a real predictions server, seen through the public `ask` API.

The app (`python app.py`) talks to a `FaultProxy` in front of an embedded server. Each fault gets
its own message; partial answers stay; a user who leaves (Stop, a closed connection) has the
prediction cancelled; and at the end no prediction is left `starting` or `processing`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from types import SimpleNamespace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gradio as gr
import pytest
import requests
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from minigpt4_ui.app import chat, chat_messages
from minigpt4_ui.shared import schema
from minigpt4_ui.app.backend import Backend
from minigpt4_ui.replicate_api import Client as ApiClient, Timeout
from minigpt4_ui.server import start_background
from minigpt4_ui.server.predictors.builtin import BuiltinPredictor
from minigpt4_ui.app.settings import DEFAULT_VERSION, Settings
from minigpt4_ui.app.chat_updates import STOPPING, stop_button
from minigpt4_ui.app.handlers import Studio

from .apprunner import RunningApp
from .fault_proxy import FaultProxy, wait_for
from .fault_server import problem, reply
from .handler_inputs import controls

TOKEN = "r8_fault_test_token_0123456789"
HTML = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"
CREATE = ("POST", r"/v1/predictions")
STREAM = ("GET", r"/v1/streams/[^/]+")
POLL = ("GET", r"/v1/predictions/[^/]+")
CANCEL = ("POST", r"/v1/predictions/[^/]+/cancel")
LIVE = ("starting", "processing")
SHOWN, IDLE_STOP = gr.update(visible=True), stop_button(False)
PARTIAL_WORDS = 6  # the failing predictor's words before its "CUDA" error

# Each fault's message, collected as the tests run, to check that no two faults read alike.
MESSAGES: dict[str, str] = {}


class FlakyPredictor(BuiltinPredictor):
    """The built-in predictor, except that a prompt containing FAIL dies after a few words."""

    def predict(self, inputs, image, log, **options):
        chunks = super().predict(inputs, image, log, **options)
        if "FAIL" not in inputs["prompt"]:
            yield from chunks
            return
        for index, chunk in enumerate(chunks):
            if index == PARTIAL_WORDS:
                raise RuntimeError("CUDA out of memory")
            yield chunk


@pytest.fixture(scope="module")
def server():
    with start_background(token=TOKEN, tokens_per_second=40, predictor=FlakyPredictor()) as running:
        yield running


@pytest.fixture(scope="module")
def proxy(server):
    running = FaultProxy(server.url)
    yield running
    running.close()


@pytest.fixture(scope="module")
def app(proxy, tmp_path_factory):
    running = RunningApp({"REPLICATE_BASE_URL": proxy.url, "REPLICATE_API_TOKEN": TOKEN,
                          "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0"},
                         tmp_path_factory.mktemp("faults") / "app.log")
    yield running
    running.close()


@pytest.fixture(autouse=True)
def clean_proxy(request):
    if "proxy" in request.fixturenames:
        proxy = request.getfixturevalue("proxy")
        proxy.reset()
        yield
        proxy.reset()
    else:
        yield


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "green.png"
    Image.new("RGB", (300, 180), (30, 160, 60)).save(path)
    return str(path)


def predictions(server) -> list[dict]:
    response = requests.get(f"{server.url}/v1/predictions", timeout=5,
                            headers={"Authorization": f"Bearer {TOKEN}"})
    response.raise_for_status()
    return response.json()["results"]


def prediction(server, prediction_id: str) -> dict:
    return requests.get(f"{server.url}/v1/predictions/{prediction_id}", timeout=5,
                        headers={"Authorization": f"Bearer {TOKEN}"}).json()


def count(server) -> int:
    return len(predictions(server))


def answered(server, prompt: str) -> dict:
    """The newest prediction, checked to be the one asked with `prompt` and to have succeeded."""
    newest = predictions(server)[0]
    assert newest["input"]["prompt"] == prompt and newest["status"] == "succeeded", newest
    return newest


def newest_after(server, before: int) -> dict:
    """The prediction created since `before` predictions existed (waits for it)."""
    return wait_for(lambda: (lambda found: found[0] if len(found) > before else None)(predictions(server)),
                    10, "the prediction to be created")


def ended(server, prediction_id: str, timeout: float = 15) -> str:
    """The prediction's terminal status (waits for it)."""
    def status():
        current = prediction(server, prediction_id)["status"]
        return current if current not in LIVE else None
    return wait_for(status, timeout, f"prediction {prediction_id} to end")


def ask(app, photo, prompt="What is this?", **params) -> str:
    return Client(app.url, verbose=False).predict(image=handle_file(photo), prompt=prompt,
                                                  api_name="/ask", **params)


def ask_error(app, photo, prompt="What is this?") -> str:
    with pytest.raises(AppError) as caught:
        ask(app, photo, prompt)
    return str(caught.value)


def wait_partials(job, n: int, timeout: float = 20) -> None:
    wait_for(lambda: len(job.outputs()) >= n, timeout, f"{n} partial answers")


# --- the API answers the create call with an error -----------------------------------------------

CREATE_FAULTS = [
    ("500", problem(500, title="Internal Server Error", detail="boom"),
     "The API answered 500 Internal Server Error: boom — a problem on the server's side; try again later"),
    ("502 html", reply(502, HTML, content_type="text/html"),
     "The API answered 502 Bad Gateway with a non-JSON body — a problem on the server's side"),
    ("503", problem(503, title="Service Unavailable", detail="The service is overloaded",
                    headers={"Retry-After": "0"}),
     "The API answered 503 Service Unavailable: The service is overloaded — a problem on the server's side"),
    ("429 retry-after", problem(429, title="Too Many Requests", detail="Request was throttled.",
                                headers={"Retry-After": "120"}),
     "too many requests — try again in 120 s (the API answered 429 Too Many Requests: Request was throttled.)"),
    ("401", problem(401, title="Unauthenticated", detail="You did not pass a valid authentication token"),
     "the API token was rejected — check REPLICATE_API_TOKEN"),
    ("malformed json", reply(201, '{"id": "abc", "status": "star'),
     "The API answered 201 without a JSON object"),
    ("malformed json error", reply(400, '{"detail": "trunc'),
     "The API answered 400 Bad Request with a non-JSON body"),
    ("html 200", reply(200, HTML, content_type="text/html"),
     "The API answered 200 without a JSON object"),
]


@pytest.mark.parametrize("name, fault, expected", CREATE_FAULTS, ids=[f[0] for f in CREATE_FAULTS])
def test_create_errors_each_get_their_own_message(app, proxy, server, photo, name, fault, expected):
    before = count(server)
    proxy.faults[CREATE] = fault
    message = ask_error(app, photo)
    assert expected in message
    assert "<html" not in message and TOKEN not in message
    assert count(server) == before  # nothing was created, so nothing is left running
    MESSAGES[name] = message
    proxy.reset()
    assert ask(app, photo, "Still there?", max_new_tokens=3) == "This 300×180 landscape"  # the app still serves


def test_429_with_short_retry_after_is_waited_out(app, proxy, server, photo):
    proxy.once(*CREATE, problem(429, detail="Request was throttled.", headers={"Retry-After": "1"}))
    started = time.monotonic()
    answer = ask(app, photo, "Throttled once")
    assert answer == answered(server, "Throttled once")["output"] and answer.endswith("Ask MiniGPT-4 itself for that.")
    assert time.monotonic() - started >= 1.0
    assert [s.status for s in proxy.requests(*CREATE)] == [429, 201]


def test_connection_refused(app, proxy, server, photo):
    proxy.refuse()
    try:
        message = ask_error(app, photo)
    finally:
        proxy.listen()
    assert "could not reach the predictions API: connection refused" in message and proxy.url not in message
    MESSAGES["refused"] = message
    assert ask(app, photo, "Back again") == answered(server, "Back again")["output"]


# --- the stream breaks -----------------------------------------------------------------------------

def test_stream_dropped_midway_falls_back_to_polling_and_finishes(app, proxy, server, photo):
    before = count(server)
    proxy.faults[STREAM] = proxy.drop_stream_after(4)
    job = Client(app.url, verbose=False).submit(image=handle_file(photo), prompt="Dropped stream",
                                                api_name="/ask")
    answer = job.result(timeout=60)
    created = newest_after(server, before)
    assert created["status"] == "succeeded" and answer == created["output"]
    assert proxy.requests(*POLL), "the app did not poll after the stream broke"
    assert len(job.outputs()) > 1 and all(answer.startswith(p) for p in job.outputs())


def test_stream_404_falls_back_to_polling(app, proxy, server, photo):
    before = count(server)
    proxy.faults[STREAM] = problem(404, title="Not found", detail="The requested resource could not be found.")
    answer = ask(app, photo, "No stream")
    created = newest_after(server, before)
    assert answer == created["output"] and created["input"]["prompt"] == "No stream"
    assert [s.status for s in proxy.requests(*STREAM)] == [404]
    assert proxy.requests(*POLL)


def test_stream_drop_then_polling_fails_keeps_the_partial_answer(app, proxy, server, photo):
    before = count(server)
    proxy.faults[STREAM] = proxy.drop_stream_after(5)
    proxy.faults[POLL] = problem(500, title="Internal Server Error", detail="database is down")
    job = Client(app.url, verbose=False).submit(image=handle_file(photo), prompt="Half an answer",
                                                api_name="/ask")
    with pytest.raises(AppError) as caught:
        job.result(timeout=60)
    message = str(caught.value)
    assert "The API answered 500 Internal Server Error: database is down" in message
    MESSAGES["poll 500"] = message
    partials = [p for p in job.outputs() if p]
    assert partials, "the partial answer was lost"
    created = newest_after(server, before)
    proxy.reset()
    # The app cancelled the prediction it could no longer follow.
    assert ended(server, created["id"]) == "canceled"
    final = prediction(server, created["id"])["output"] or ""
    assert all(final.startswith(p) or p.startswith(final) for p in partials)
    assert partials[-1].startswith("This 300×180") and created["input"]["prompt"] == "Half an answer"


def test_stream_stall_past_the_read_timeout_falls_back_to_polling(proxy, server, photo):
    """At the wrapper level: the app's Client timeout is a fixed 30 s with no setting to lower it."""
    client = ApiClient(token=TOKEN, base_url=proxy.url, version=DEFAULT_VERSION, timeout=0.5,
                       poll_interval=0.05)
    proxy.faults[STREAM] = proxy.stall_stream_after(3, seconds=5)
    inputs = chat.build_input(photo, "Stalled stream", schema.defaults())
    progress = list(chat.ask(client, inputs))
    final = progress[-1]
    assert final.status == "succeeded"
    assert final.text == prediction(server, final.prediction_id)["output"]
    assert prediction(server, final.prediction_id)["input"]["prompt"] == "Stalled stream"
    assert proxy.requests(*POLL)


def test_create_stall_past_the_read_timeout_is_a_timeout(proxy, photo):
    client = ApiClient(token=TOKEN, base_url=proxy.url, version=DEFAULT_VERSION, timeout=0.5)
    proxy.faults[CREATE] = proxy.stall(3)
    inputs = chat.build_input(photo, "Stalled create", schema.defaults())
    with pytest.raises(Timeout, match="^the predictions API did not answer within 0.5 s$"):
        list(chat.ask(client, inputs))


# --- the model fails -------------------------------------------------------------------------------

def test_model_error_is_shown_and_the_partial_answer_kept(app, proxy, server, photo):
    before = count(server)
    job = Client(app.url, verbose=False).submit(image=handle_file(photo), prompt="Please FAIL now",
                                                api_name="/ask")
    with pytest.raises(AppError) as caught:
        job.result(timeout=60)
    message = str(caught.value)
    assert "The model failed: the predictor failed: RuntimeError: CUDA out of memory" in message
    MESSAGES["model error"] = message
    created = newest_after(server, before)
    assert ended(server, created["id"]) == "failed"
    partials = [p for p in job.outputs() if p]
    assert partials and created["output"] and created["output"].startswith(partials[-1])
    assert len(partials[-1].split()) <= PARTIAL_WORDS


def test_model_error_in_the_chat_keeps_the_partial_answer_visible(proxy, server, photo):
    """The UI handler: the failed status is shown and the partial answer stays in the chat."""
    studio = Studio(_backend(proxy), Settings())
    last = list(_chat_answer(studio, photo, "Please FAIL here"))[-1]
    status = last.chat[-2]["metadata"]
    assert status["title"] == "The model failed: the predictor failed: RuntimeError: CUDA out of memory"
    assert status["status"] == "done"
    answer = last.chat[-1]["content"]
    assert answer.startswith("This 300×180 landscape image") and len(answer.split()) == PARTIAL_WORDS
    done = studio.chat.answered(last.records)
    assert last.records[-1].status == "failed" and (done.send, done.stop) == (SHOWN, IDLE_STOP)


def test_api_error_midway_in_the_chat_keeps_the_partial_answer(proxy, server, photo):
    studio = Studio(_backend(proxy), Settings())
    proxy.faults[STREAM] = proxy.drop_stream_after(5)
    proxy.faults[POLL] = problem(500, detail="database is down")
    last = list(_chat_answer(studio, photo, "Partial in chat"))[-1]
    assert last.chat[-1]["role"] == "assistant" and last.chat[-1]["content"].startswith("This 300×180")
    assert last.chat[-2]["metadata"]["title"].startswith("The API answered 500")
    assert last.chat[0]["role"] == "user" and chat_messages.text(last.chat[0]) == "Partial in chat"  # nothing lost
    done = studio.chat.answered(last.records)
    assert last.records[-1].status == "error" and (done.send, done.stop) == (SHOWN, IDLE_STOP)
    gr.Chatbot().postprocess(last.chat)


def test_create_error_in_the_chat_is_said_in_the_chat(proxy, server, photo):
    """No answer came, so no empty answer bubble: the question and the API's words stay."""
    studio = Studio(_backend(proxy), Settings())
    proxy.faults[CREATE] = problem(503, title="Service Unavailable", detail="The service is overloaded")
    last = list(_chat_answer(studio, photo, "Anyone there?"))[-1]
    assert [chat_messages.text(m) for m in last.chat[:1]] == ["Anyone there?"] and len(last.chat) == 2
    status = last.chat[-1]["metadata"]
    assert status["title"].startswith("The API answered 503 Service Unavailable: The service is overloaded")
    assert "id" not in status  # nothing was created
    gr.Chatbot().postprocess(last.chat)
    assert studio.slots.current("anonymous") is None  # the question can be sent again


def _chat_answer(studio: Studio, photo: str, question: str, request=None):
    """Send, then the answer stream, as the page chains them."""
    values = controls()
    sent = studio.chat.send(request, photo, question, [], *values)
    assert sent.message == "", sent.message
    chatbot = gr.Chatbot()
    history = chatbot.preprocess(chatbot.postprocess(sent.chat))
    return studio.chat.respond(request, photo, sent.question, history, [], "", schema.SPEC)


def _backend(proxy) -> Backend:
    client = ApiClient(token=TOKEN, base_url=proxy.url, version=DEFAULT_VERSION, poll_interval=0.05)
    return Backend(client=client, embedded=False, notice="")


# --- the user leaves -------------------------------------------------------------------------------

def test_stop_cancels_the_prediction_on_the_server(app, server, photo):
    before = count(server)
    job = Client(app.url, verbose=False).submit(image=handle_file(photo), prompt="Stop me",
                                                api_name="/ask")
    wait_partials(job, 2)
    created = newest_after(server, before)
    job.cancel()
    assert ended(server, created["id"]) == "canceled"


def test_closing_the_chat_handler_cancels_the_prediction(proxy, server, photo):
    """A closed tab closes the `respond` generator."""
    studio = Studio(_backend(proxy), Settings())
    before = count(server)
    events = _chat_answer(studio, photo, "Close me")
    for value in events:
        if len((value.chat[-1].get("content") or "").split()) >= 2:
            break
    created = newest_after(server, before)
    assert prediction(server, created["id"])["status"] in LIVE
    events.close()
    assert ended(server, created["id"]) == "canceled"
    assert studio.slots.current("anonymous") is None


def test_stop_in_the_chat_cancels_the_prediction(proxy, server, photo):
    """The UI's Stop: a flag the running answer notices; it cancels its prediction and ends normally."""
    studio = Studio(_backend(proxy), Settings())
    tab = SimpleNamespace(session_hash="stop-tab", client=SimpleNamespace(host="127.0.0.1"), headers={})
    before = count(server)
    events = _chat_answer(studio, photo, "Stop me in the chat", request=tab)
    for value in events:
        if len((value.chat[-1].get("content") or "").split()) >= 2:
            break
    created = newest_after(server, before)
    assert studio.chat.stop(tab) == gr.update(value=STOPPING, interactive=False)
    rest = list(events)  # the answer runs to its end by itself
    assert rest[-1].chat[-2]["metadata"]["title"].startswith("Stopped by you after ")
    assert rest[-1].chat[-1]["content"].startswith("This 300×180")  # the partial answer stays
    assert {s.status for s in proxy.requests(*CANCEL)} == {200}
    assert ended(server, created["id"]) == "canceled"
    assert studio.slots.current("stop-tab") is None


def test_stop_cancels_once(proxy, server, photo):
    studio = Studio(_backend(proxy), Settings())
    events = _chat_answer(studio, photo, "Stop me once")
    for value in events:
        if len((value.chat[-1].get("content") or "").split()) >= 2:
            break
    studio.chat.stop(None)
    list(events)
    assert len(proxy.requests(*CANCEL)) == 1


def test_a_disconnected_client_has_its_prediction_cancelled(app, server, photo):
    before = count(server)
    child = textwrap.dedent(f"""
        import time
        from gradio_client import Client, handle_file
        job = Client({app.url!r}, verbose=False).submit(image=handle_file({photo!r}),
                                                        prompt="Disconnect me", api_name="/ask")
        while len(job.outputs()) < 2:
            time.sleep(0.05)
        print("PARTIALS", flush=True)
        time.sleep(120)
    """)
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "PARTIALS"
        created = newest_after(server, before)
        assert prediction(server, created["id"])["status"] in LIVE
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    assert ended(server, created["id"]) == "canceled"


def test_cancel_failing_is_logged_and_the_app_carries_on(app, proxy, server, photo):
    """The cancel is answered 500: the prediction then finishes on its own; the app logs a warning."""
    proxy.faults[CANCEL] = problem(500, detail="cancel is broken")
    before = count(server)
    job = Client(app.url, verbose=False).submit(image=handle_file(photo), prompt="Uncancellable",
                                                api_name="/ask")
    wait_partials(job, 2)
    created = newest_after(server, before)
    job.cancel()
    wait_for(lambda: proxy.requests(*CANCEL), 10, "the app to try to cancel")
    assert [s.status for s in proxy.requests(*CANCEL)] == [500]
    wait_for(lambda: "could not cancel prediction" in app.output(), 10, "the warning in the app's log")
    line = next(l for l in app.output().splitlines() if "could not cancel prediction" in l)
    assert created["id"] in line and "500" in line and TOKEN not in line
    # Not cancelled, so it runs to its end by itself rather than staying `processing`.
    assert ended(server, created["id"], timeout=20) == "succeeded"
    assert ask(app, photo, "Next one") == answered(server, "Next one")["output"]


# --- afterwards ------------------------------------------------------------------------------------

def test_every_fault_reads_differently():
    if len(MESSAGES) < 2:
        pytest.skip("run with the fault tests above")
    texts = list(MESSAGES.values())
    assert len(set(texts)) == len(texts), MESSAGES


def test_no_prediction_is_left_running(app, server):
    """Runs last: after every fault above, nothing is left `starting` or `processing`."""
    def settled():
        live = [(p["id"], p["status"], p["input"].get("prompt")) for p in predictions(server)
                if p["status"] in LIVE]
        return not live or None
    wait_for(settled, 20, "every prediction to end")
    statuses = {p["status"] for p in predictions(server)}
    assert statuses <= {"succeeded", "failed", "canceled"}
    assert "Traceback" not in app.output()


# --- a keep-alive connection the server closes (seen once in the 50 × 5 load run) -----------------

def test_create_on_a_keep_alive_connection_the_server_closed_is_not_an_error():
    created = json.dumps({"id": "p1", "status": "starting", "urls": {}}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like uvicorn
        served = 0

        def _reply(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.served += 1
            self._reply(200, b'{"id": "p1", "status": "processing"}')

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.served:  # this connection was idle in the client's pool: close it, answer nothing
                self.close_connection = True
                return
            self._reply(201, created)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        client = ApiClient(token=TOKEN, base_url=f"http://127.0.0.1:{httpd.server_address[1]}",
                           version=DEFAULT_VERSION, timeout=2)
        assert client.get("p1")["status"] == "processing"  # leaves a keep-alive connection in the pool
        assert client.create({"prompt": "hi"})["id"] == "p1"
    finally:
        httpd.shutdown()
        httpd.server_close()
