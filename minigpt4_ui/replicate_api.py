"""A small client for Replicate's predictions API: create, get, list, cancel, and follow updates.

`Client._send` makes one call; `RetryPolicy` decides whether a failed one is tried again. Errors are
typed by what a caller would do about them (fix the token, fix the input, wait, try later), in one
table (`_ERRORS`), and their messages never contain the token. The API rules it follows are in
docs/replicate-api-rules.md.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests
import urllib3

from .facts import MODEL, REPLICATE_BASE_URL, TERMINAL
from .sse import iter_events

log = logging.getLogger(__name__)

__all__ = ["APIError", "AuthenticationError", "Client", "ConnectionFailed", "InvalidInputError",
           "NotFoundError", "PaymentRequiredError", "RateLimitError", "ReplicateError",
           "RetryPolicy", "ServerError", "Timeout", "Update"]

USER_AGENT = "minigpt4-studio/0.1"
MIN_SCRUBBED_TOKEN = 8
RETRY_STATUSES = frozenset({429, 503, 504})
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
# A Retry-After longer than this is reported to the user rather than silently waited out.
RETRY_AFTER_MAX = 30.0


class ReplicateError(Exception):
    """Anything that went wrong talking to the predictions API."""


class ConnectionFailed(ReplicateError):
    """The server could not be reached (refused, unknown host, connection dropped)."""


class Timeout(ReplicateError):
    """The server accepted the connection but did not answer in time."""


class APIError(ReplicateError):
    """The API answered with an error status; fields come from its problem+json body.

    status: the HTTP status code
    title: short summary from the body (or the HTTP reason phrase)
    detail: the body's explanation, if any
    invalid_fields: the body's `invalid_fields` list (422), else empty
    retry_after: seconds from the Retry-After header, if any
    """

    def __init__(self, message: str, *, status: int, title: str, detail: str | None = None,
                 invalid_fields: list | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid_fields = invalid_fields or []
        self.retry_after = retry_after


class AuthenticationError(APIError):
    """401: the token is missing or wrong."""


class PaymentRequiredError(APIError):
    """402: the account has no credit or billing set up."""


class NotFoundError(APIError):
    """404: unknown prediction, model or version."""


class InvalidInputError(APIError):
    """422: the request or its input failed validation."""


class RateLimitError(APIError):
    """429: too many requests."""


class ServerError(APIError):
    """5xx: a problem on the server's side."""


@dataclass(frozen=True)
class RetryPolicy:
    """Whether a failed call is tried again, and after how many seconds (None: give up).

    GETs are retried on 429/503/504 and on connection errors. A POST may already have created a
    (paid) prediction, so it is retried only on a 429 with Retry-After, where nothing was, or when
    a reused keep-alive connection was closed before the request reached the server.
    """

    max_retries: int = 5

    def after_connection_error(self, exc: BaseException, *, method: str, attempt: int) -> float | None:
        """The wait before retrying a call that failed to connect or lost its connection."""
        if attempt == 0 and _closed_before_response(exc):
            # A pooled keep-alive connection the server had just closed: the request never
            # reached it, so one immediate retry on a fresh connection is safe, POSTs too.
            return 0.0
        if method != "GET" or attempt >= self.max_retries:
            return None
        return self.backoff(attempt)

    def after_status(self, status: int, *, method: str, attempt: int,
                     retry_after: float | None) -> float | None:
        """The wait before retrying a call the API answered with an error status."""
        retryable = (status in RETRY_STATUSES if method == "GET"
                     else status == 429 and retry_after is not None)
        if not retryable or attempt >= self.max_retries or (retry_after or 0) > RETRY_AFTER_MAX:
            return None
        return self.backoff(attempt) if retry_after is None else retry_after

    @staticmethod
    def backoff(attempt: int) -> float:
        """Exponential backoff: 0.5 s, 1 s, 2 s, … up to BACKOFF_MAX."""
        return min(BACKOFF_FIRST * 2 ** attempt, BACKOFF_MAX)


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
                reason = _connection_reason(exc)
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
                                                attempt=attempt, retry_after=_retry_after(response))
                if delay is None:
                    raise _api_error(response, method, url, self._token)
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
    return "Replicate" if _is_replicate(url) else "the predictions API"


def _is_replicate(url: object) -> bool:
    """Whether `url` is one of Replicate's own (api.replicate.com, a replicate.com page)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme == "https" and (host == "replicate.com" or host.endswith(".replicate.com"))


def replicate_page(prediction: dict) -> str | None:
    """The prediction's page on Replicate (`urls.web`); None when it has none or it is elsewhere."""
    web = (prediction.get("urls") or {}).get("web")
    return web if _is_replicate(web) else None


def shown_prediction(prediction: dict) -> dict:
    """A prediction as a visitor may see it: of its `urls`, only its page on Replicate.

    `get`, `cancel` and `stream` are the API's own addresses, which for a host's own server
    (REPLICATE_BASE_URL, the embedded one) are the host's.
    """
    page = replicate_page(prediction)
    shown = {key: value for key, value in prediction.items() if key != "urls"}
    return {**shown, "urls": {"web": page}} if page else shown


def _retry_after(response: requests.Response) -> float | None:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it: causes, contexts, urllib3's `reason`s and arguments
    (requests wraps urllib3, which wraps the socket error), each once, depth first."""
    stack: list[Any] = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None),
                      *current.args])


def _closed_before_response(exc: BaseException) -> bool:
    """Whether the connection was closed or reset before any byte of a response arrived."""
    return any(isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
               for e in _exception_chain(exc))


def _connection_reason(exc: BaseException) -> str:
    """A short cause of a connection failure, in words."""
    for current in _exception_chain(exc):
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "unknown host name"
        if isinstance(current, (ConnectionResetError, urllib3.exceptions.ProtocolError)):
            return "the connection was closed unexpectedly"
    return "connection failed"


# What each error status means to a caller, and how its message says so. `{answer}` is the status
# and the body's title and detail; `{path}` the request path; `{wait}` when to try again.
_ERRORS: dict[int, tuple[type[APIError], str]] = {
    401: (AuthenticationError,
          "the API token was rejected — check REPLICATE_API_TOKEN (the API answered {answer})"),
    402: (PaymentRequiredError,
          "the Replicate account cannot pay for this prediction — add credit at "
          "https://replicate.com/account/billing (the API answered {answer})"),
    404: (NotFoundError, "{method} {path} found nothing (the API answered {answer})"),
    # With `invalid_fields`, the message lists them instead (see _api_error).
    422: (InvalidInputError, "The API answered {answer}"),
    429: (RateLimitError, "too many requests — {wait} (the API answered {answer})"),
}
_SERVER_ERROR = (ServerError, "The API answered {answer} — a problem on the server's side; "
                              "try again later")
_OTHER_ERROR = (APIError, "The API answered {answer}")


def _api_error(response: requests.Response, method: str, url: str, token: str | None) -> APIError:
    """A typed error whose message says what happened and what to do, built from the body."""
    status = response.status_code
    reason = response.reason or _phrase(status)
    try:
        body = response.json()
    except ValueError:
        body = None
    retry_after = _retry_after(response)
    if isinstance(body, dict):
        title = str(body.get("title") or reason)
        detail = body.get("detail")
        detail = (detail if isinstance(detail, str) else json.dumps(detail)).strip() if detail else None
        invalid = [f for f in body.get("invalid_fields") or [] if isinstance(f, dict)]
        answer = f"{status} {title}" + (f": {detail}" if detail else "")
    else:
        title, detail, invalid = reason, None, []
        answer = f"{status} {reason} with a non-JSON body"

    cls, template = _ERRORS.get(status) or (_SERVER_ERROR if status >= 500 else _OTHER_ERROR)
    wait = (f"try again in {retry_after:g} s" if retry_after is not None
            else "wait a moment and try again")
    message = template.format(answer=answer, method=method, path=urlsplit(url).path, wait=wait)
    if cls is InvalidInputError and invalid:
        message = "the API rejected the input: " + "; ".join(_field_problem(f) for f in invalid)
    # The server should never echo the token, but a message must not carry it even then; a token
    # too short to be a real one would only garble the message.
    if token and len(token) >= MIN_SCRUBBED_TOKEN:
        message = message.replace(token, "[token]")
        detail = detail.replace(token, "[token]") if detail else detail
    return cls(message, status=status, title=title, detail=detail, invalid_fields=invalid,
               retry_after=retry_after)


def _field_problem(field: dict) -> str:
    name = str(field.get("field") or "").removeprefix("input.")
    description = str(field.get("description") or field.get("type") or "invalid")
    return f"{name}: {description}" if name and name != "input" else description


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
