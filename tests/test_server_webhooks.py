"""A loopback HTTP receiver that records webhooks (and can fail the first N of them)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """`url` takes POSTs; `calls` holds (headers, raw body, time) of every one received."""

    def __init__(self, *, fail_first: int = 0, status: int = 500):
        self.calls: list[tuple[dict[str, str], bytes, float]] = []
        self.fail_first = fail_first
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._cond:
                    receiver.calls.append((dict(self.headers.items()), body, time.monotonic()))
                    failing = len(receiver.calls) <= receiver.fail_first
                    receiver._cond.notify_all()
                self.send_response(status if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook?user=42"

    def bodies(self) -> list[dict]:
        with self._cond:
            return [json.loads(body) for _, body, _ in self.calls]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Wait until predicate(list of parsed bodies) is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate([json.loads(body) for _, body, _ in self.calls]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ---------------------------------------------------------------- the server's webhooks

import pytest  # noqa: E402
import requests  # noqa: E402

from minigpt4_ui.server import start_background  # noqa: E402
from minigpt4_ui.shared.webhook_signature import WebhookVerificationError, verify  # noqa: E402

from .conftest import SERVER_TOKEN  # noqa: E402
from .test_server import AUTH, EXPECTED, PROMPT, VERSION  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def hooked():
    """A server at 80 words/s (an answer takes ~1.3 s) with a known secret and fast retries; its
    webhooks may reach the receivers on loopback."""
    with start_background(token=SERVER_TOKEN, tokens_per_second=80, webhook_secret=SECRET,
                          webhook_retry_delays=(0.05, 0.1, 0.2), allow_hosts=("127.0.0.1",)) as running:
        yield running


def post(server, image, **body):
    return requests.post(f"{server.url}/v1/predictions", headers=AUTH, timeout=10,
                         json={"version": VERSION, "input": {"image": image, "prompt": PROMPT},
                               **body})


def test_secret_endpoint_returns_the_signing_key(hooked):
    response = requests.get(f"{hooked.url}/v1/webhooks/default/secret", headers=AUTH, timeout=5)
    assert response.status_code == 200 and response.json() == {"key": SECRET}
    assert requests.get(f"{hooked.url}/v1/webhooks/default/secret", timeout=5).status_code == 401


def test_generated_secret_survives_a_restart(tmp_path):
    db = str(tmp_path / "p.sqlite3")
    keys = []
    for _ in range(2):
        with start_background(token=SERVER_TOKEN, db_path=db) as running:
            keys.append(requests.get(f"{running.url}/v1/webhooks/default/secret", headers=AUTH,
                                     timeout=5).json()["key"])
    assert keys[0] == keys[1] and keys[0].startswith("whsec_")


def test_all_events_are_signed_ordered_and_throttled(hooked, png_uri):
    with Receiver() as receiver:
        prediction = post(hooked, png_uri(), webhook=receiver.url).json()
        assert receiver.wait_for(lambda bodies: bodies and bodies[-1]["status"] == "succeeded")
        time.sleep(0.3)  # nothing may follow the final webhook
        calls = list(receiver.calls)
    bodies = [json.loads(body) for _, body, _ in calls]
    assert {b["id"] for b in bodies} == {prediction["id"]}
    assert bodies[0]["status"] == "processing" and bodies[0]["started_at"]  # `start`
    assert bodies[-1]["output"] == EXPECTED and bodies[-1]["completed_at"]
    assert bodies[-1]["urls"]["get"] == f"{hooked.url}/v1/predictions/{prediction['id']}"
    assert [b["status"] for b in bodies[1:-1]] == ["processing"] * (len(bodies) - 2)
    outputs = [b["output"] or "" for b in bodies]
    assert outputs == sorted(outputs, key=len) and len(bodies) >= 4  # growing, several updates
    intermediate = [at for (_, _, at), b in zip(calls, bodies) if b["output"] and b["status"] == "processing"]
    gaps = [b - a for a, b in zip(intermediate, intermediate[1:])]
    assert all(gap >= 0.45 for gap in gaps), gaps  # output/logs at most once per 500 ms
    ids = set()
    for headers, body, _ in calls:
        verify(SECRET, headers, body)
        ids.add(headers["webhook-id"])
        assert headers["Content-Type"] == "application/json"
    assert len(ids) == len(calls)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, calls[0][0], calls[0][1] + b" ")


def test_events_filter_completed_only_and_query_params_pass_through(hooked, png_uri):
    with Receiver() as receiver:
        post(hooked, png_uri(), webhook=receiver.url, webhook_events_filter=["completed"])
        assert receiver.wait_for(lambda bodies: bodies and bodies[-1]["status"] == "succeeded")
        time.sleep(0.2)
        assert len(receiver.calls) == 1
        assert receiver.calls[0][0]["Host"].startswith("127.0.0.1")


def test_events_filter_start_and_completed(hooked, png_uri):
    with Receiver() as receiver:
        post(hooked, png_uri(), webhook=receiver.url, webhook_events_filter=["start", "completed"])
        assert receiver.wait_for(lambda bodies: bodies and bodies[-1]["status"] == "succeeded")
        time.sleep(0.2)
        assert [b["status"] for b in receiver.bodies()] == ["processing", "succeeded"]


def test_the_final_webhook_is_retried_with_the_same_id(hooked, png_uri):
    with Receiver(fail_first=2) as receiver:
        post(hooked, png_uri(), webhook=receiver.url, webhook_events_filter=["completed"])
        assert receiver.wait_for(lambda bodies: len(bodies) == 3, timeout=10)
        time.sleep(0.4)
        calls = list(receiver.calls)
    assert len(calls) == 3  # two failures, then delivered: no more
    assert len({headers["webhook-id"] for headers, _, _ in calls}) == 1
    assert calls[1][2] - calls[0][2] >= 0.04 and calls[2][2] - calls[1][2] >= 0.09  # backoff


def test_intermediate_webhooks_are_not_retried(hooked, png_uri):
    with Receiver(fail_first=1) as receiver:
        post(hooked, png_uri(), webhook=receiver.url, webhook_events_filter=["start", "completed"])
        assert receiver.wait_for(lambda bodies: bodies and bodies[-1]["status"] == "succeeded")
        time.sleep(0.2)
        assert [b["status"] for b in receiver.bodies()] == ["processing", "succeeded"]


def test_webhook_completed_legacy_field(hooked, png_uri):
    with Receiver() as receiver:
        post(hooked, png_uri(8, 8), webhook_completed=receiver.url)
        assert receiver.wait_for(lambda bodies: bodies and bodies[-1]["status"] == "succeeded")
        time.sleep(0.2)
        assert len(receiver.calls) == 1


def test_canceled_prediction_sends_its_final_webhook(hooked, png_uri):
    with Receiver() as receiver:
        prediction = post(hooked, png_uri(), webhook=receiver.url,
                          webhook_events_filter=["completed"]).json()
        requests.post(prediction["urls"]["cancel"], headers=AUTH, timeout=10)
        assert receiver.wait_for(lambda bodies: bodies and bodies[-1]["status"] == "canceled")


@pytest.mark.parametrize("body, field, kind", [
    ({"webhook": "ftp://example.com/x"}, "webhook", "format"),
    ({"webhook": "https://example.com", "webhook_events_filter": ["start", "finish"]},
     "webhook_events_filter.1", "enum"),
    ({"webhook": "https://example.com", "webhook_events_filter": "completed"},
     "webhook_events_filter", "invalid_type"),
])
def test_bad_webhook_fields_get_422(hooked, png_uri, body, field, kind):
    response = post(hooked, png_uri(8, 8), **body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    (problem,) = response.json()["invalid_fields"]
    assert (problem["field"], problem["type"]) == (field, kind)
