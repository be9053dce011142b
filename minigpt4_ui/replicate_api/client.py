"""`Client`: one predictions API, one token, one model version. `Client._send` makes one call;
its `RetryPolicy` decides whether a failed one is tried again. The API rules it follows are in
docs/replicate-api-rules.md."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests
import urllib3

from ..shared.facts import MODEL, REPLICATE_BASE_URL, TERMINAL
from .errors import APIError, ConnectionFailed, ReplicateError, Timeout, api_error
from .pages import is_replicate
from .retry import RetryPolicy, connection_reason, retry_after
from .sse import iter_events

log = logging.getLogger(__name__)

USER_AGENT = "minigpt4-studio/0.1"


@dataclass(frozen=True)
class Update:
    """What changed in a prediction since the previous update (text and logs are deltas)."""

    status: str
    text: str = ""
    logs: str = ""
    error: str | None = None
    prediction: dict | None = None  # the full prediction, when fetched (always on the final update)


class Client:
    """Talks to one predictions API with one token for one model version."""

    def __init__(self, *, token: str | None, base_url: str = REPLICATE_BASE_URL,
                 model: str = MODEL, version: str, deployment: str | None = None,
                 timeout: float = 30.0, poll_interval: float = 0.5, max_retries: int = 5,
                 session: requests.Session | None = None) -> None:
        """`deployment` (`owner/name`): the host's own deployment of `model`, which then runs
        its own predictions instead of `version`.
        `timeout` bounds connecting and each read; on the SSE stream it must exceed the
        server's heartbeat interval (15 s on Replicate), which the 30 s default does.
        `max_retries` bounds the retries of one call (see RetryPolicy)."""
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.version = version
        self.deployment = deployment
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.retry = RetryPolicy(max_retries=max_retries)
        self._session = session or requests.Session()
        self._headers = {"User-Agent": USER_AGENT}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        deployment = f", deployment={self.deployment!r}" if self.deployment else ""
        return (f"Client(base_url={self.base_url!r}, model={self.model!r}, "
                f"version={self.version!r}{deployment}, token={'set' if self._token else 'unset'})")

    def create(self, input: dict, *, stream: bool = True, model: str | None = None,
               version: str | None = None) -> dict:
        """Start a prediction and return it at once (follow it with `updates`).

        It runs `version` when given, else `model` (`owner/name`, its latest version, through the
        models predictions route) when given, else this client's deployment when it has one
        (`POST /v1/deployments/{owner}/{name}/predictions`), else this client's own version.
        """
        body: dict[str, Any] = {"input": input, "stream": stream}
        path = "/v1/predictions"
        if version:
            body["version"] = version
        elif model:
            path = f"/v1/models/{model}/predictions"
        elif self.deployment:
            path = f"/v1/deployments/{self.deployment}/predictions"
        else:
            body["version"] = self.version
        return _json(self._send("POST", path, json_body=body))

    def get_model(self, owner: str, name: str) -> dict:
        """The model, with `latest_version` and its `openapi_schema`."""
        return _json(self._send("GET", f"/v1/models/{owner}/{name}"))

    def get_version(self, owner: str, name: str, version_id: str) -> dict:
        """One version of a model, with its `openapi_schema`."""
        return _json(self._send("GET", f"/v1/models/{owner}/{name}/versions/{version_id}"))

    def get(self, prediction_id: str) -> dict:
        """The prediction as the server knows it now."""
        return _json(self._send("GET", f"/v1/predictions/{prediction_id}"))

    def cancel(self, prediction_id: str) -> dict:
        """Ask the server to stop the prediction; returns it (usually with status `canceled`)."""
        return _json(self._send("POST", f"/v1/predictions/{prediction_id}/cancel"))

    def list(self) -> Iterator[dict]:
        """Every prediction of the account, newest first, fetching pages as needed."""
        url: str | None = "/v1/predictions"
        while url:
            page = _json(self._send("GET", url))
            yield from page.get("results") or []
            url = page.get("next")

    def updates(self, prediction: dict) -> Iterator[Update]:
        """Follow a prediction to its end: stream when possible, poll otherwise or after a break.

        Each update carries only new text and logs; the last one is terminal and carries the
        final prediction (output, error, metrics).
        """
        seen = _Seen(status=prediction.get("status") or "starting")
        stream_url = (prediction.get("urls") or {}).get("stream")
        if stream_url and seen.status not in TERMINAL:
            yield from self._stream(stream_url, seen)
        yield from self._poll(prediction["id"], seen)

    def _stream(self, url: str, seen: _Seen) -> Iterator[Update]:
        """Yield updates from the SSE stream until `done`; any failure just ends it (polling follows)."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        try:
            with self._send("GET", url, headers=headers, stream=True) as response:
                for event in iter_events(_chunks(response)):
                    if event.event == "output":
                        seen.text += event.data
                        seen.status = "processing"
                        yield Update("processing", text=event.data)
                    elif event.event == "logs":
                        seen.logs += event.data
                        yield Update(seen.status, logs=event.data)
                    elif event.event == "error":
                        seen.error = _error_text(event.data)
                    elif event.event == "done":
                        return
            log.debug("stream %s ended before `done`; polling instead", url)
        except ReplicateError as exc:
            log.debug("stream %s unavailable (%s); polling instead", url, exc)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            log.debug("stream %s broke (%s); polling instead", url, type(exc).__name__)

    def _poll(self, prediction_id: str, seen: _Seen) -> Iterator[Update]:
        while True:
            prediction = self.get(prediction_id)
            status = prediction.get("status") or seen.status
            text = seen.take_text(_output_text(prediction.get("output")))
            logs = seen.take_logs(prediction.get("logs") or "")
            if status in TERMINAL:
                yield Update(status, text=text, logs=logs, prediction=prediction,
                             error=prediction.get("error") or seen.error)
                return
            if text or logs or status != seen.status:
                seen.status = status
                yield Update(status, text=text, logs=logs)
            time.sleep(self.poll_interval)

    def _send(self, method: str, path_or_url: str, *, json_body: dict | None = None,
              headers: dict[str, str] | None = None, stream: bool = False) -> requests.Response:
        """One API call, retried as `self.retry` decides; a 2xx response or a ReplicateError."""
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        attempt = 0
        while True:
            try:
                response = self._session.request(method, url, json=json_body,
                                                 headers={**self._headers, **(headers or {})},
                                                 timeout=self.timeout, stream=stream)
            except requests.Timeout:  # before ConnectionError: ConnectTimeout is both
                log.warning("%s %s did not answer within %g s", method, _origin(url), self.timeout)
                raise Timeout(f"{_named(url)} did not answer within {self.timeout:g} s") from None
            except requests.ConnectionError as exc:
                reason = connection_reason(exc)
                delay = self.retry.after_connection_error(exc, method=method, attempt=attempt)
                if delay is None:
                    log.warning("%s %s: %s", method, _origin(url), reason)
                    raise ConnectionFailed(f"could not reach {_named(url)}: {reason}") from None
                log.debug("%s %s: %s; retry %d/%d in %.1f s", method, url, reason, attempt + 1,
                          self.retry.max_retries, delay)
            else:
                if response.status_code < 400:
                    return response
                delay = self.retry.after_status(response.status_code, method=method,
                                                attempt=attempt, retry_after=retry_after(response))
                if delay is None:
                    raise api_error(response, method, url, self._token)
                response.close()
                log.debug("%s %s answered %d; retry %d/%d in %.1f s", method, url,
                          response.status_code, attempt + 1, self.retry.max_retries, delay)
            time.sleep(delay)
            attempt += 1


@dataclass
class _Seen:
    """What `updates` has already yielded, so that polling resumes without repeating text."""

    status: str
    text: str = ""
    logs: str = ""
    error: str | None = None

    def take_text(self, full: str) -> str:
        new = full[len(self.text):]
        self.text += new
        return new

    def take_logs(self, full: str) -> str:
        new = full[len(self.logs):]
        self.logs += new
        return new


def _chunks(response: requests.Response) -> Iterator[bytes]:
    # read1 hands over whatever has arrived; iter_content would wait for EOF on an unchunked body.
    while chunk := response.raw.read1(65536, decode_content=True):
        yield chunk


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):  # an iterator model's chunks
        return "".join(item for item in output if isinstance(item, str))
    return ""


def _error_text(data: str) -> str:
    """The `detail` of an SSE error event's JSON, else the raw data."""
    try:
        body = json.loads(data)
    except ValueError:
        return data
    return str(body.get("detail") or data) if isinstance(body, dict) else data


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise APIError(f"The API answered {response.status_code} without a JSON object",
                       status=response.status_code, title=response.reason or "")
    return body


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _named(url: str) -> str:
    """Who answers at `url`, in words a visitor may read: the messages reach every visitor, and a
    host's own address is the host's to know (the log has it)."""
    return "Replicate" if is_replicate(url) else "the predictions API"
