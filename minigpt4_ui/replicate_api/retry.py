"""When a failed call is tried again (`RetryPolicy`), and what a failed connection was, in words."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from typing import Any, Iterator

import requests
import urllib3

RETRY_STATUSES = frozenset({429, 503, 504})
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
# A Retry-After longer than this is reported to the user rather than silently waited out.
RETRY_AFTER_MAX = 30.0


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
        if attempt == 0 and closed_before_response(exc):
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


def retry_after(response: requests.Response) -> float | None:
    """The Retry-After header in seconds; None when absent or not a number of seconds."""
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


def closed_before_response(exc: BaseException) -> bool:
    """Whether the connection was closed or reset before any byte of a response arrived."""
    return any(isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
               for e in _exception_chain(exc))


def connection_reason(exc: BaseException) -> str:
    """A short cause of a connection failure, in words."""
    for current in _exception_chain(exc):
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "unknown host name"
        if isinstance(current, (ConnectionResetError, urllib3.exceptions.ProtocolError)):
            return "the connection was closed unexpectedly"
    return "connection failed"
