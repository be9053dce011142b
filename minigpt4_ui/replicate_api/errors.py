"""The wrapper's errors, typed by what a caller would do about them (fix the token, fix the input,
wait, try later), built from the API's problem+json body with one table (`_ERRORS`); their
messages never contain the token."""

from __future__ import annotations

import json
from http import HTTPStatus
from urllib.parse import urlsplit

import requests

from .retry import retry_after

MIN_SCRUBBED_TOKEN = 8


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


# What each error status means to a caller, and how its message says so. `{answer}` is the status
# and the body's title and detail; `{path}` the request path; `{wait}` when to try again.
_ERRORS: dict[int, tuple[type[APIError], str]] = {
    401: (AuthenticationError,
          "the API token was rejected — check REPLICATE_API_TOKEN (the API answered {answer})"),
    402: (PaymentRequiredError,
          "the Replicate account cannot pay for this prediction — add credit at "
          "https://replicate.com/account/billing (the API answered {answer})"),
    404: (NotFoundError, "{method} {path} found nothing (the API answered {answer})"),
    # With `invalid_fields`, the message lists them instead (see api_error).
    422: (InvalidInputError, "The API answered {answer}"),
    429: (RateLimitError, "too many requests — {wait} (the API answered {answer})"),
}
_SERVER_ERROR = (ServerError, "The API answered {answer} — a problem on the server's side; "
                              "try again later")
_OTHER_ERROR = (APIError, "The API answered {answer}")


def api_error(response: requests.Response, method: str, url: str, token: str | None) -> APIError:
    """A typed error whose message says what happened and what to do, built from the body."""
    status = response.status_code
    reason = response.reason or _phrase(status)
    try:
        body = response.json()
    except ValueError:
        body = None
    waited = retry_after(response)
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
    wait = (f"try again in {waited:g} s" if waited is not None
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
               retry_after=waited)


def _field_problem(field: dict) -> str:
    name = str(field.get("field") or "").removeprefix("input.")
    description = str(field.get("description") or field.get("type") or "invalid")
    return f"{name}: {description}" if name and name != "input" else description


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
