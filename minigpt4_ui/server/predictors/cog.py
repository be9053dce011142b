"""A model in a Cog container (e.g. the real MiniGPT-4 on your GPU), reached over its HTTP API.

Every Replicate model is a Cog container; `docker run -p 5000:5000 --gpus=all r8.im/<model>@<id>`
serves the model at `http://127.0.0.1:5000`. This predictor forwards each prediction to it, so the
embedded server keeps speaking Replicate's API (history, SSE, cancel, clients) in front of it.

The container's API (coglet 0.23): `PUT /predictions/{id}` with `Prefer: respond-async` answers
202 and then reports progress only by webhook (cumulative `logs`, `output` growing as a list for
iterator models, the final state); without that header the same `PUT` answers when the
prediction ends. `POST /predictions/{id}/cancel` cancels either. 409 means every slot is busy,
503 that setup has not finished (or failed: `GET /health-check` tells which), 422 a rejected input.

With a callback URL (an address where the container can reach this process) answers stream;
without one, or when no webhook arrives, each prediction is one synchronous `PUT` whose answer
arrives whole. Behind a load balancer any instance may answer, so a 409 is retried (on a new
connection, for balancers that balance connections), and a cancel that lands on an instance
without the prediction (404) is sent again.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import requests
from PIL import Image

from . import LogFn, PredictionError
from ..callbacks import CallbackReceiver

CONNECT_S = 5.0
POLL_S = 0.1  # how often a waiting question retries a busy or booting container
UNREACHABLE_S = 30.0  # how long an unreachable container is retried (e.g. while it starts)
WAIT_S = 20 * 60.0  # how long a question waits for setup or a free slot (weights take minutes)
CALLBACK_GRACE_S = 5.0  # a started prediction's first webhook comes at once; none by now = none will
ACCEPT_S = 0.25  # a synchronous PUT still open after this was accepted (refusals come in ms)
CANCEL_CONFIRM_S = 5.0
CANCEL_ATTEMPTS = 6
HEALTH_EVERY_S = 5.0
# Cog's own HTTP API ends a prediction in one of these (it has no `aborted`).
COG_TERMINAL = frozenset({"succeeded", "failed", "canceled"})
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """One state of a container prediction: cumulative logs and output text, status, error."""

    status: str
    logs: str
    text: str
    error: str | None

    @classmethod
    def from_json(cls, payload: dict) -> "Report":
        return cls(status=payload.get("status") or "starting", logs=payload.get("logs") or "",
                   text=output_text(payload.get("output")), error=payload.get("error"))


def output_text(output: object) -> str:
    """A Cog output as text: a string as is, an iterator's list of chunks joined."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(item if isinstance(item, str) else json.dumps(item) for item in output)
    return json.dumps(output)


def image_input(ref: object, image: Image.Image) -> str:
    """The image as the container gets it: the caller's data URI, else the decoded picture as PNG.

    URLs and Files-API files were already fetched and checked by the server, and the container
    may have no network, so it never fetches anything itself.
    """
    if isinstance(ref, str) and ref.startswith("data:"):
        return ref
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class CogPredictor:
    """Forwards predictions to the Cog container at `url`; see the module docstring.

    `callback_url` (`http://HOST:PORT`, port 0 for any) is where the container's webhooks go;
    without it answers arrive whole. `unreachable_s` and `wait_s` bound how long a question is
    retried against an unreachable container and a booting or busy one.
    """

    reports_start = True  # the prediction stays `starting` until the container runs it

    def __init__(self, url: str, *, callback_url: str | None = None,
                 unreachable_s: float = UNREACHABLE_S, wait_s: float = WAIT_S):
        self.url = url.rstrip("/")
        self._unreachable_s = unreachable_s
        self._wait_s = wait_s
        self._session = requests.Session()
        try:
            self._receiver = CallbackReceiver(callback_url) if callback_url else None
        except (ValueError, OSError) as exc:
            raise PredictionError(f"cannot listen for the container's webhooks at "
                                  f"{callback_url}: {exc}") from None
        self._callbacks_fail = False  # set when no webhook ever reached the receiver
        self._document: dict | None = None
        self._closed = threading.Event()
        threading.Thread(target=self._fetch_schema, daemon=True, name="cog-schema").start()

    @property
    def streams(self) -> bool:
        """Whether progress arrives as it happens (webhooks) rather than whole at the end."""
        return self._receiver is not None and not self._callbacks_fail

    def openapi_schema(self) -> dict | None:
        """The container's OpenAPI document once it has served one with `image` and `prompt`."""
        return self._document

    def close(self) -> None:
        """Stop the webhook receiver and the schema fetcher."""
        self._closed.set()
        if self._receiver is not None:
            self._receiver.close()
        self._session.close()

    def predict(self, inputs: dict, image: Image.Image, log: LogFn,
                cancel: threading.Event | None = None,
                started: Callable[[], None] | None = None) -> Iterator[str]:
        """Run one prediction in the container, yielding new output text as it arrives.

        `started()` is called once the container is running it; until then the prediction
        waits through the container's setup, busy slots and restarts.
        """
        body = {"input": {**inputs, "image": image_input(inputs["image"], image)}}
        call = _Call(self, body, log, cancel or threading.Event(), started or (lambda: None))
        yield from call.run()

    def _fetch_schema(self) -> None:
        # The container serves its schema only once setup is done, so keep asking until then.
        while not self._closed.is_set():
            try:
                response = self._session.get(f"{self.url}/openapi.json", timeout=CONNECT_S)
            except requests.RequestException:
                response = None
            if response is not None and response.status_code == 200:
                try:
                    document = response.json()
                    inputs = document["components"]["schemas"]["Input"]
                except (ValueError, KeyError, TypeError):
                    inputs = {}
                if {"image", "prompt"} <= set(inputs.get("properties") or ()):
                    self._document = document
                else:
                    logger.warning("the Cog container at %s has no image and prompt inputs in its "
                                   "schema; validating with MiniGPT-4's", self.url)
                return
            if response is not None and response.status_code not in (503, 502, 504):
                return  # no schema file in the container: MiniGPT-4's stands in
            self._closed.wait(2.0)


class _Call:
    """One prediction's trip through the container."""

    def __init__(self, owner: CogPredictor, body: dict, log: LogFn, cancel: threading.Event,
                 started: Callable[[], None]):
        self.owner = owner
        self.url = owner.url
        self.body = body
        self.log = log
        self.cancel = cancel
        self.started = started
        self.id = secrets.token_hex(13)
        self.is_started = False
        self.heard = False  # a webhook arrived
        self.ended = False  # the container reported a final state
        self.lost_since: float | None = None
        # After a 409 (or a cancel's 404) the next request opens a new connection, so that a
        # balancer that balances connections (a Kubernetes Service) can pick another instance.
        self.new_connection = False
        self.logs = ""
        self.text = ""
        self.notes: set[str] = set()

    def run(self) -> Iterator[str]:
        receiver = self.owner._receiver
        if receiver is None or self.owner._callbacks_fail:
            self._note("sync", "Progress is not streamed: the container has no callback URL "
                               "(--cog-callback-url) it can reach, so the answer arrives whole.")
            yield from self._sync()
            return
        webhook, inbox = receiver.open(self.id, sent_bytes=len(json.dumps(self.body)))
        try:
            yield from self._async(webhook, inbox)
        finally:
            receiver.discard(self.id)

    # ---- asynchronous: PUT with Prefer: respond-async, progress by webhook

    def _async(self, webhook: str, inbox: queue.Queue) -> Iterator[str]:
        body = {**self.body, "webhook": webhook}
        if self._submit(lambda: self._put(body, {"Prefer": "respond-async"})) is None:
            return  # canceled while waiting
        try:
            heard = yield from self._follow(inbox)
        finally:
            if not self.ended:
                # Without webhooks nothing would confirm the cancel, so it is not waited for.
                self._cancel_in_container(inbox, confirm=self.heard)
        if not heard:
            self.owner._callbacks_fail = True  # later questions go synchronously at once
            self._note("sync", f"No progress reached {self.owner._receiver.base_url.rsplit('/', 1)[0]} "
                               f"from the container within {CALLBACK_GRACE_S:g} s, so it cannot "
                               "call that address; asking again synchronously (the answer "
                               "arrives whole).")
            yield from self._sync()

    def _follow(self, inbox: queue.Queue) -> Iterator[str]:
        """Yield output from webhooks until the end; returns False if none ever came."""
        accepted_at = last_check = time.monotonic()
        while not self.ended:
            try:
                payload = inbox.get(timeout=POLL_S)
            except queue.Empty:
                now = time.monotonic()
                if self.cancel.is_set():
                    break
                if not self.heard and now - accepted_at > CALLBACK_GRACE_S:
                    return False
                if now - last_check > HEALTH_EVERY_S:
                    last_check = now
                    self._check_alive()
                continue
            self.heard = True
            yield from self._apply(Report.from_json(payload))
        return True

    # ---- synchronous: PUT without Prefer, answered when the prediction ends

    def _sync(self) -> Iterator[str]:
        answers: queue.Queue = queue.Queue()
        response = self._submit(lambda: self._put_sync(answers))
        if response is None:
            return
        try:
            while response is _RUNNING:
                self._start()
                try:
                    response = answers.get(timeout=POLL_S)
                except queue.Empty:
                    if self.cancel.is_set():
                        return
            if isinstance(response, Exception):
                self.ended = True  # the connection is gone, and the container's state with it
                raise PredictionError(f"lost the Cog container at {self.url} during the "
                                      f"prediction: {_reason(response)}")
            if not response.ok:
                self.ended = True
                raise PredictionError(f"the Cog container at {self.url} answered "
                                      f"{response.status_code}: {response.text[:300]}")
            yield from self._apply(_report(response))
        finally:
            if not self.ended:
                self._cancel_in_container(answers, confirm=True)

    def _put_sync(self, answers: queue.Queue) -> requests.Response | object:
        """Start a synchronous PUT on a thread; its response if it came at once, else _RUNNING."""
        def send() -> None:
            try:
                answers.put(self._put(self.body, {}, read_timeout=None))
            except requests.RequestException as exc:
                answers.put(exc)

        threading.Thread(target=send, daemon=True, name="cog-put").start()
        try:
            answer = answers.get(timeout=ACCEPT_S)
        except queue.Empty:
            return _RUNNING
        if isinstance(answer, requests.RequestException):
            raise answer
        return answer

    # ---- shared

    def _put(self, body: dict, headers: dict, read_timeout: float | None = CONNECT_S
             ) -> requests.Response:
        return self.owner._session.put(f"{self.url}/predictions/{self.id}",
                                       json={"id": self.id, **body},
                                       headers={**headers, **self._connection_header()},
                                       timeout=(CONNECT_S, read_timeout))

    def _connection_header(self) -> dict:
        return {"Connection": "close"} if self.new_connection else {}

    def _submit(self, attempt: Callable[[], object]) -> object:
        """Retry `attempt` through unreachability, setup and busy slots; None if canceled.

        Returns what `attempt` returned once the container took the prediction.
        """
        unreachable_since = waiting_since = None
        waited_for_setup = False  # its setup logs are shown once it takes the prediction
        while not self.cancel.is_set():
            try:
                response = attempt()
            except requests.RequestException as exc:
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > self.owner._unreachable_s:
                    raise PredictionError(
                        f"could not reach the Cog container at {self.url} for "
                        f"{self.owner._unreachable_s:g} s ({_reason(exc)}); is it running, and is "
                        "that its address?") from None
                # A container that is not listening yet may be booting: its setup can end before
                # the first answer, so no 503 would ever say it was setting up.
                waited_for_setup = True
                self._note("unreachable", f"Cannot reach the Cog container at {self.url} "
                                          f"({_reason(exc)}); retrying for up to "
                                          f"{self.owner._unreachable_s:g} s.")
                self.cancel.wait(POLL_S)
                continue
            unreachable_since = None
            if response is _RUNNING:
                return response
            self.new_connection = response.status_code == 409
            if response.status_code in (409, 503):
                waiting_since = waiting_since or time.monotonic()
                if response.status_code == 409:
                    self._note("busy", "The model is busy: every prediction slot of the "
                                       f"container at {self.url} is in use. Your question is sent "
                                       "as soon as one frees.")
                else:
                    waited_for_setup = self._check_setup() or waited_for_setup
                if time.monotonic() - waiting_since > self.owner._wait_s:
                    what = "busy" if response.status_code == 409 else "not ready"
                    raise PredictionError(f"the Cog container at {self.url} was still {what} "
                                          f"after {self.owner._wait_s:g} s")
                self.cancel.wait(POLL_S)
                continue
            if response.status_code == 422:
                raise PredictionError("the Cog container rejected the input: "
                                      f"{_validation_detail(response)}")
            if response.status_code >= 400:
                raise PredictionError(f"the Cog container at {self.url} answered "
                                      f"{response.status_code}: {response.text[:300]}")
            if waited_for_setup:
                self._log_setup()
            return response
        return None

    def _check_setup(self) -> bool:
        """After a 503: True while the container sets up; raises if setup failed for good."""
        health = self._health()
        status = health.get("status")
        setup = health.get("setup") or {}
        if status == "SETUP_FAILED":
            raise PredictionError(f"the Cog container at {self.url} failed to set up the model:\n"
                                  f"{(setup.get('logs') or '').strip()}")
        if status == "DEFUNCT":
            raise PredictionError(f"the Cog container at {self.url} is defunct (its worker "
                                  "stopped); restart it")
        if status in ("STARTING", "UNHEALTHY"):
            started_at = (setup.get("started_at") or "")[:19].replace("T", " ")
            self._note("setup", f"The container at {self.url} is setting up the model (status "
                                f"{status}, since {started_at} UTC); a cold start can take "
                                "minutes. Your question is sent when it is ready.")
            return True
        return False

    def _log_setup(self) -> None:
        logs = (self._health().get("setup") or {}).get("logs")
        if logs:
            self.log("Container setup logs:\n" + logs.rstrip("\n") + "\n")

    def _health(self) -> dict:
        try:
            response = self.owner._session.get(f"{self.url}/health-check", timeout=CONNECT_S)
            return response.json() if response.ok else {}
        except (requests.RequestException, ValueError):
            return {}

    def _check_alive(self) -> None:
        """While webhooks are awaited: fail once the container has been gone too long."""
        if self._health():
            self.lost_since = None
            return
        self.lost_since = self.lost_since or time.monotonic()
        if time.monotonic() - self.lost_since > self.owner._unreachable_s:
            self.ended = True
            raise PredictionError(f"lost the Cog container at {self.url}: no answer for "
                                  f"{self.owner._unreachable_s:g} s")

    def _apply(self, report: Report) -> Iterator[str]:
        """Log and yield what is new in a report, and end on a final one.

        Webhooks may arrive out of order; a stale one is shorter than what was seen and adds
        nothing.
        """
        if report.status != "starting":
            self._start()
        if report.logs.startswith(self.logs) and len(report.logs) > len(self.logs):
            self.log(report.logs[len(self.logs):])
            self.logs = report.logs
        if report.text.startswith(self.text) and len(report.text) > len(self.text):
            chunk, self.text = report.text[len(self.text):], report.text
            yield chunk
        self.ended = report.status in COG_TERMINAL
        if report.status == "failed":
            raise PredictionError(report.error or "the model failed without a message")
        if report.status == "canceled" and not self.cancel.is_set():
            raise PredictionError(f"the Cog container at {self.url} canceled the prediction")

    def _start(self) -> None:
        if not self.is_started:
            self.is_started = True
            self.started()

    def _cancel_in_container(self, answers: queue.Queue, *, confirm: bool) -> None:
        """Cancel the container's prediction and (if `confirm`) wait until it has ended."""
        for _ in range(CANCEL_ATTEMPTS):
            try:
                response = self.owner._session.post(f"{self.url}/predictions/{self.id}/cancel",
                                                    headers=self._connection_header(),
                                                    timeout=CONNECT_S)
            except requests.RequestException as exc:
                logger.warning("could not cancel %s in %s: %s", self.id, self.url, _reason(exc))
                return
            if response.status_code != 404:
                break
            # 404: it has ended, or a load balancer sent the cancel to another instance.
            self.new_connection = True
            if _ended(answers, timeout=POLL_S):
                return
        if confirm:
            _ended(answers, timeout=CANCEL_CONFIRM_S)

    def _note(self, key: str, text: str) -> None:
        """Log a status note once per prediction."""
        if key not in self.notes:
            self.notes.add(key)
            self.log(text + "\n")


_RUNNING = object()  # a synchronous PUT the container accepted and is working on


def _ended(answers: queue.Queue, *, timeout: float) -> bool:
    """Wait for a terminal webhook or the synchronous PUT's answer."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            answer = answers.get(timeout=remaining)
        except queue.Empty:
            return False
        if not isinstance(answer, dict) or answer.get("status") in COG_TERMINAL:
            return True
    return False


def _report(response: requests.Response) -> Report:
    try:
        return Report.from_json(response.json())
    except ValueError:
        raise PredictionError(f"the Cog container answered with something that is not JSON: "
                              f"{response.text[:300]}") from None


def _validation_detail(response: requests.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])[2:])) or 'input'}: {d.get('msg')}"
                         for d in detail if isinstance(d, dict))
    return str(detail)


def _reason(exc: Exception) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        return "connection refused" if "refused" in text.lower() else "connection failed"
    return type(exc).__name__
