"""The client against a scripted loopback server: error bodies, retries, broken streams, secrecy."""

from __future__ import annotations

import logging
import socket

import pytest

from minigpt4_ui import replicate_api
from minigpt4_ui.replicate_api import (APIError, AuthenticationError, Client, ConnectionFailed, InvalidInputError, NotFoundError, PaymentRequiredError, RateLimitError, ServerError, Timeout, Update)

from .fault_server import FaultServer, json_reply, problem, reply, sse

TOKEN = "r8_SECRET_TEST_TOKEN"
HTML = "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>"


@pytest.fixture
def server():
    fault = FaultServer().start()
    yield fault
    fault.close()


@pytest.fixture
def client(server):
    return Client(token=TOKEN, base_url=server.url, version="v1", timeout=2.0, poll_interval=0.01)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(replicate_api.retry, "BACKOFF_FIRST", 0.01)


def prediction(server, status="starting", output=None, *, stream=True, logs="", error=None, **extra):
    urls = {"get": f"{server.url}/v1/predictions/p1", "cancel": f"{server.url}/v1/predictions/p1/cancel"}
    if stream:
        urls["stream"] = f"{server.url}/stream/p1"
    return {"id": "p1", "model": "daanelson/minigpt-4", "version": "v1", "status": status,
            "output": output, "logs": logs, "error": error, "urls": urls, **extra}


def joined(updates: list[Update]) -> str:
    return "".join(u.text for u in updates)


# --- error bodies -------------------------------------------------------------------------------

def test_401_names_the_token_variable(server, client):
    server.script("GET", "/v1/predictions/p1", problem(
        401, title="Unauthenticated", detail="You did not pass a valid authentication token"))
    with pytest.raises(AuthenticationError) as caught:
        client.get("p1")
    message = str(caught.value)
    assert "the API token was rejected — check REPLICATE_API_TOKEN" in message
    assert "You did not pass a valid authentication token" in message
    assert caught.value.status == 401 and caught.value.title == "Unauthenticated"


def test_402_points_to_billing(server, client):
    server.script("POST", "/v1/predictions", problem(
        402, title="Payment Required", detail="You have insufficient credit to run this model."))
    with pytest.raises(PaymentRequiredError, match="insufficient credit") as caught:
        client.create({"prompt": "hi"})
    assert "billing" in str(caught.value)


def test_404_says_what_was_not_found(server, client):
    server.script("GET", "/v1/predictions/nope", problem(
        404, detail="The requested resource could not be found."))
    with pytest.raises(NotFoundError) as caught:
        client.get("nope")
    assert "/v1/predictions/nope" in str(caught.value)
    assert caught.value.detail == "The requested resource could not be found."


def test_422_lists_each_invalid_field(server, client):
    fields = [
        {"type": "number_gte", "field": "input.max_length", "description": "Must be greater than or equal to 1"},
        {"type": "required", "field": "input", "description": "prompt is required"},
    ]
    server.script("POST", "/v1/predictions", problem(
        422, title="Input validation failed", invalid_fields=fields,
        detail="- input.max_length: Must be greater than or equal to 1\n- input: prompt is required\n"))
    with pytest.raises(InvalidInputError) as caught:
        client.create({"max_length": 0})
    assert str(caught.value) == ("the API rejected the input: max_length: Must be greater than or "
                                 "equal to 1; prompt is required")
    assert caught.value.invalid_fields == fields


def test_422_without_invalid_fields_uses_detail(server, client):
    server.script("POST", "/v1/predictions", problem(
        422, detail="Streaming not supported for the output type of the requested version."))
    with pytest.raises(InvalidInputError, match="Streaming not supported"):
        client.create({})


@pytest.mark.parametrize("status, phrase", [(500, "Internal Server Error"), (502, "Bad Gateway")])
def test_5xx_with_html_body_is_summarised_not_dumped(server, client, status, phrase):
    server.script("POST", "/v1/predictions", reply(status, HTML, content_type="text/html"))
    with pytest.raises(ServerError) as caught:
        client.create({})
    message = str(caught.value)
    assert f"The API answered {status} {phrase} with a non-JSON body" in message
    assert "<html" not in message and "nginx" not in message


def test_malformed_json_error_body(server, client):
    server.script("GET", "/v1/predictions/p1", reply(400, '{"detail": "trunc'))
    with pytest.raises(APIError, match="The API answered 400 Bad Request with a non-JSON body"):
        client.get("p1")


def test_success_without_json_is_an_error_not_a_crash(server, client):
    server.script("GET", "/v1/predictions/p1", reply(200, HTML, content_type="text/html"))
    with pytest.raises(APIError, match="without a JSON object"):
        client.get("p1")


# --- retries ------------------------------------------------------------------------------------

def test_get_429_is_retried_honouring_retry_after(server, client):
    throttled = problem(429, detail="Request was throttled.", headers={"Retry-After": "0"})
    server.script("GET", "/v1/predictions/p1", throttled, throttled, json_reply(200, {"id": "p1"}))
    assert client.get("p1") == {"id": "p1"}
    assert len(server.seen("GET", "/v1/predictions/p1")) == 3


def test_get_503_gives_server_error_after_max_retries(server):
    client = Client(token=TOKEN, base_url=server.url, version="v1", max_retries=2)
    server.script("GET", "/v1/predictions/p1", problem(503, detail="busy", headers={"Retry-After": "0"}))
    with pytest.raises(ServerError, match="503"):
        client.get("p1")
    assert len(server.seen("GET", "/v1/predictions/p1")) == 3


def test_get_500_is_not_retried(server, client):
    server.script("GET", "/v1/predictions/p1", problem(500, detail="boom"))
    with pytest.raises(ServerError):
        client.get("p1")
    assert len(server.seen("GET", "/v1/predictions/p1")) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_post_error_is_never_retried(server, client, status):
    server.script("POST", "/v1/predictions", problem(status, detail="boom", headers={"Retry-After": "0"}))
    with pytest.raises(ServerError):
        client.create({})
    assert len(server.seen("POST", "/v1/predictions")) == 1


def test_post_429_with_retry_after_is_retried(server, client):
    server.script("POST", "/v1/predictions",
                  problem(429, detail="Request was throttled.", headers={"Retry-After": "0"}),
                  json_reply(201, prediction(server)))
    assert client.create({})["id"] == "p1"
    assert len(server.seen("POST", "/v1/predictions")) == 2


def test_post_429_without_retry_after_is_raised(server, client):
    server.script("POST", "/v1/predictions", problem(429, detail="Request was throttled."))
    with pytest.raises(RateLimitError, match="wait a moment"):
        client.create({})
    assert len(server.seen("POST", "/v1/predictions")) == 1


def test_long_retry_after_is_reported_not_waited(server, client):
    server.script("GET", "/v1/predictions/p1", problem(429, detail="slow down", headers={"Retry-After": "120"}))
    with pytest.raises(RateLimitError, match="try again in 120 s") as caught:
        client.get("p1")
    assert caught.value.retry_after == 120
    assert len(server.seen("GET", "/v1/predictions/p1")) == 1


def test_retries_are_logged_at_debug(server, client, caplog):
    server.script("GET", "/v1/predictions/p1", problem(503, headers={"Retry-After": "0"}),
                  json_reply(200, {"id": "p1"}))
    with caplog.at_level(logging.DEBUG, logger="minigpt4_ui.replicate_api"):
        client.get("p1")
    assert "answered 503; retry 1/5" in caplog.text


# --- transport faults ---------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused(monkeypatch):
    base = f"http://127.0.0.1:{closed_port()}"
    client = Client(token=TOKEN, base_url=base, version="v1", max_retries=2)
    with pytest.raises(ConnectionFailed) as caught:
        client.get("p1")
    # The message reaches visitors, and the address is the host's (issue 18).
    assert str(caught.value) == "could not reach the predictions API: connection refused"
    with pytest.raises(ConnectionFailed, match="connection refused"):
        client.create({})


def test_read_timeout(server):
    client = Client(token=TOKEN, base_url=server.url, version="v1", timeout=0.3, max_retries=0)
    server.script("GET", "/v1/predictions/p1", server.stall)
    with pytest.raises(Timeout) as caught:
        client.get("p1")
    assert str(caught.value) == "the predictions API did not answer within 0.3 s"


# --- requests as sent ---------------------------------------------------------------------------

def test_create_sends_version_input_and_headers(server, client):
    server.script("POST", "/v1/predictions", json_reply(201, prediction(server)))
    client.create({"prompt": "hi"})
    sent = server.seen("POST", "/v1/predictions")[0]
    assert sent.json() == {"version": "v1", "input": {"prompt": "hi"}, "stream": True}
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["User-Agent"].startswith("minigpt4-studio/")
    assert sent.headers["Content-Type"] == "application/json"
    assert "Prefer" not in sent.headers


def test_no_token_sends_no_authorization(server):
    server.script("GET", "/v1/predictions/p1", json_reply(200, {"id": "p1"}))
    Client(token=None, base_url=server.url, version="v1").get("p1")
    assert "Authorization" not in server.requests[0].headers


def test_list_follows_absolute_next_urls(server, client):
    server.script("GET", "/v1/predictions", json_reply(200, {
        "next": f"{server.url}/v1/predictions?cursor=2", "previous": None, "results": [{"id": "a"}, {"id": "b"}]}))
    server.script("GET", "/v1/predictions?cursor=2", json_reply(200, {
        "next": None, "previous": f"{server.url}/v1/predictions", "results": [{"id": "c"}]}))
    assert [p["id"] for p in client.list()] == ["a", "b", "c"]


def test_cancel_posts_to_cancel(server, client):
    server.script("POST", "/v1/predictions/p1/cancel", json_reply(200, prediction(server, "canceled")))
    assert client.cancel("p1")["status"] == "canceled"


# --- following a prediction ---------------------------------------------------------------------

def event(name: str, data: str, id_: int, newline: str = "\n") -> str:
    lines = [f"event: {name}", f"id: 1700000000:{id_}", *(f"data: {line}" for line in data.split("\n")), "", ""]
    return newline.join(lines)


def test_stream_with_heartbeats_multiline_and_crlf(server, client):
    server.script("GET", "/stream/p1", sse(
        ": hi\n\n",
        event("output", "The", 0),
        ": keepalive\n\n",
        event("output", " image\nshows", 1, newline="\r\n"),
        event("logs", "step 1\n", 2),
        event("output", " a cat", 3),
        event("done", "{}", 4),
    ))
    final = prediction(server, "succeeded", "The image\nshows a cat", logs="step 1\n",
                       metrics={"predict_time": 1.5})
    server.script("GET", "/v1/predictions/p1", json_reply(200, final))
    updates = list(client.updates(prediction(server)))
    assert [u.text for u in updates if u.text] == ["The", " image\nshows", " a cat"]
    assert updates[0].status == "processing"
    assert [u.logs for u in updates if u.logs] == ["step 1\n"]
    assert updates[-1] == Update("succeeded", prediction=final)
    assert len(server.seen("GET", "/v1/predictions/p1")) == 1
    sent = server.seen("GET", "/stream/p1")[0].headers
    assert sent["Accept"] == "text/event-stream" and sent["Cache-Control"] == "no-store"


def test_stream_error_then_done(server, client):
    server.script("GET", "/stream/p1", sse(
        event("output", "Hal", 0),
        event("error", '{"detail": "CUDA out of memory"}', 1),
        event("done", '{"reason": "error"}', 2),
    ))
    server.script("GET", "/v1/predictions/p1", json_reply(200, prediction(server, "failed", "Hal")))
    updates = list(client.updates(prediction(server)))
    assert joined(updates) == "Hal"
    assert updates[-1].status == "failed"
    assert updates[-1].error == "CUDA out of memory"


def test_stream_done_canceled(server, client):
    server.script("GET", "/stream/p1", sse(event("output", "Hi", 0), event("done", '{"reason": "canceled"}', 1)))
    server.script("GET", "/v1/predictions/p1", json_reply(200, prediction(server, "canceled", None)))
    updates = list(client.updates(prediction(server)))
    assert joined(updates) == "Hi"
    assert updates[-1].status == "canceled" and updates[-1].error is None
    assert updates[-1].prediction["status"] == "canceled"


def test_stream_404_falls_back_to_polling(server, client):
    server.script("GET", "/stream/p1", problem(404, detail="The requested resource could not be found."))
    server.script("GET", "/v1/predictions/p1",
                  json_reply(200, prediction(server, "starting")),
                  json_reply(200, prediction(server, "processing", "Hello")),
                  json_reply(200, prediction(server, "processing", "Hello")),
                  json_reply(200, prediction(server, "processing", "Hello world", logs="a\n")),
                  json_reply(200, prediction(server, "succeeded", "Hello world!", logs="a\nb\n")))
    updates = list(client.updates(prediction(server)))
    assert [(u.status, u.text, u.logs) for u in updates] == [
        ("processing", "Hello", ""), ("processing", " world", "a\n"), ("succeeded", "!", "b\n")]
    assert updates[-1].prediction["output"] == "Hello world!"


def test_stream_drop_midway_resumes_by_polling_without_duplicates(server, client):
    # The connection closes after two events, without `done`.
    server.script("GET", "/stream/p1", sse(event("output", "Hel", 0), event("output", "lo", 1)))
    server.script("GET", "/v1/predictions/p1",
                  json_reply(200, prediction(server, "processing", "Hello wor")),
                  json_reply(200, prediction(server, "succeeded", "Hello world")))
    updates = list(client.updates(prediction(server)))
    assert [u.text for u in updates] == ["Hel", "lo", " wor", "ld"]
    assert updates[-1].status == "succeeded"


def test_stream_cut_inside_an_event_keeps_only_complete_events(server, client):
    server.script("GET", "/stream/p1", sse(event("output", "Hel", 0), "event: output\ndata: lo wo"))
    server.script("GET", "/v1/predictions/p1", json_reply(200, prediction(server, "succeeded", "Hello world")))
    updates = list(client.updates(prediction(server)))
    assert [u.text for u in updates] == ["Hel", "lo world"]


def test_stream_stall_times_out_then_polls(server):
    client = Client(token=TOKEN, base_url=server.url, version="v1", timeout=0.3, poll_interval=0.01)
    server.script("GET", "/stream/p1", server.stall)
    server.script("GET", "/v1/predictions/p1", json_reply(200, prediction(server, "succeeded", "ok")))
    assert [(u.status, u.text) for u in client.updates(prediction(server))] == [("succeeded", "ok")]


def test_without_stream_url_polls_from_the_start(server, client):
    server.script("GET", "/v1/predictions/p1",
                  json_reply(200, prediction(server, "starting", stream=False)),
                  json_reply(200, prediction(server, "processing", stream=False)),
                  json_reply(200, prediction(server, "succeeded", ["Hel", "lo", ""], stream=False)))
    updates = list(client.updates(prediction(server, stream=False)))
    assert [(u.status, u.text) for u in updates] == [("processing", ""), ("succeeded", "Hello")]
    assert not server.seen("GET", "/stream/p1")


def test_failed_prediction_reports_its_error(server, client):
    server.script("GET", "/v1/predictions/p1",
                  json_reply(200, prediction(server, "failed", error="CUDA out of memory", stream=False)))
    (final,) = client.updates(prediction(server, stream=False))
    assert final.status == "failed" and final.error == "CUDA out of memory"


def test_updates_of_a_finished_prediction_fetch_it_once(server, client):
    done = prediction(server, "succeeded", "done")
    server.script("GET", "/v1/predictions/p1", json_reply(200, done))
    assert list(client.updates(done)) == [Update("succeeded", text="done", prediction=done)]
    assert not server.seen("GET", "/stream/p1")


# --- the token stays secret ---------------------------------------------------------------------

def test_token_never_in_errors_repr_or_logs(server, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client(token=TOKEN, base_url=server.url, version="v1", timeout=0.3, max_retries=1,
                    poll_interval=0.01)
    assert TOKEN not in repr(client) and TOKEN not in str(client)
    server.script("GET", "/v1/predictions/echo", problem(401, title="Unauthenticated", detail=f"bad token {TOKEN}"))
    server.script("GET", "/v1/predictions/busy", problem(503, headers={"Retry-After": "0"}))
    server.script("GET", "/v1/predictions/stall", server.stall)
    server.script("POST", "/v1/predictions", reply(502, HTML, content_type="text/html"))
    server.script("GET", "/stream/p1", problem(404))
    server.script("GET", "/v1/predictions/p1", json_reply(200, prediction(server, "succeeded", "x")))
    refused = Client(token=TOKEN, base_url=f"http://127.0.0.1:{closed_port()}", version="v1", max_retries=1)

    errors = []
    for call in (lambda: client.get("echo"), lambda: client.get("busy"), lambda: client.get("stall"),
                 lambda: client.create({}), lambda: refused.get("p1")):
        with pytest.raises(Exception) as caught:
            call()
        errors.append(caught.value)
    list(client.updates(prediction(server)))

    assert [type(e) for e in errors] == [AuthenticationError, ServerError, Timeout, ServerError, ConnectionFailed]
    for error in errors:
        assert TOKEN not in str(error) and TOKEN not in repr(error)
        assert TOKEN not in str(getattr(error, "detail", ""))
        assert error.__cause__ is None
    assert "[token]" in str(errors[0])
    assert caplog.records and TOKEN not in caplog.text
