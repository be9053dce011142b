"""Limits for a public host: one running answer per session, a per-visitor hourly allowance,
and who the visitor is."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

from . import mcp_calls

WINDOW_SECONDS = 3600.0
SWEEP_SECONDS = 60.0  # how often visitors idle for a whole window are forgotten


def visitor_address(peer: str, forwarded: str, *, hops: int) -> str:
    """Who a request comes from, as the hourly allowance counts visitors.

    With `hops` trusted proxies in front, that is the X-Forwarded-For entry the proxy nearest the
    visitor added, `hops` from the right: the entries to its left are whatever the client wrote. Without
    proxies (or when they added fewer entries than expected) it is the connection's `peer`. An IPv6
    visitor is their /64, the block one subscriber is usually given and can rotate through. An
    entry with a port (`1.2.3.4:80`, `[v6]:80`) or in brackets (`[v6]`) is the bare address.
    """
    entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
    address = _host(entries[-hops]) if hops and len(entries) >= hops else peer
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ip.ipv4_mapped or ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _host(entry: str) -> str:
    """An X-Forwarded-For entry without its port or brackets; anything else as it is."""
    if entry.startswith("["):
        host, closed, _ = entry[1:].partition("]")
        return host if closed else entry
    host, colon, port = entry.rpartition(":")
    # One colon is IPv4 and a port; a bare IPv6 address has several.
    return host if colon and ":" not in host and port.isdigit() else entry


def request_visitor(request, *, hops: int) -> str:
    """`visitor_address` of a Starlette or Gradio request, from every X-Forwarded-For line it holds;
    for an MCP tool call, which reaches the queue from the app itself, the visitor who made it."""
    call = mcp_calls.of(request)
    if call is not None:
        return call.visitor
    peer = request.client.host if request.client else "unknown"
    headers = request.headers
    lines = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else [headers.get("x-forwarded-for", "")]
    return visitor_address(peer, ",".join(lines), hops=hops)


class LimitError(Exception):
    """A limit was reached; the message tells the visitor what to do."""


class Guard:
    """Tracks running answers per session and host-paid predictions per visitor (thread-safe)."""

    def __init__(self, *, per_hour: int, clock: Callable[[], float] = time.monotonic):
        self.per_hour = per_hour
        self._clock = clock
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._recent: dict[str, deque[float]] = {}
        self._swept = clock()

    @contextmanager
    def slot(self, session: str, visitor: str | None, predictions: int = 1) -> Iterator[None]:
        """Hold the session's one slot while an answer runs.

        `visitor` is None when the prediction is not paid by the host (the visitor's own token or
        the embedded backend); otherwise its `predictions` (several in a comparison) count towards
        that visitor's hourly allowance.
        """
        with self._lock:
            if session in self._running:
                raise LimitError("You already have an answer in progress: wait for it to finish "
                                 "or press Stop.")
            if visitor is not None and self.per_hour:
                self._count(visitor, predictions)
            self._running.add(session)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(session)

    def visitors(self) -> list[str]:
        """The visitors the guard remembers: those with questions in the last hour."""
        return list(self._recent)

    def _count(self, visitor: str, predictions: int) -> None:
        now = self._clock()
        if now - self._swept >= SWEEP_SECONDS:
            self._forget_idle(now)
        times = self._recent.get(visitor, deque())
        while times and now - times[0] >= WINDOW_SECONDS:
            times.popleft()
        if predictions > self.per_hour:  # more than a whole hour's allowance at once
            raise LimitError(f"This asks {predictions} questions at once, and this demo allows "
                             f"{self.per_hour} per hour per visitor on the host's Replicate account: "
                             "compare fewer models, or enter your own Replicate token.")
        if len(times) + predictions > self.per_hour:
            minutes = max(1, round((WINDOW_SECONDS - (now - times[0])) / 60))
            raise LimitError(f"This demo allows {self.per_hour} questions per hour per visitor on the "
                             f"host's Replicate account. Try again in about {minutes} min, or enter "
                             "your own Replicate token.")
        times.extend([now] * predictions)
        self._recent[visitor] = times  # only visitors with questions in the window are kept

    def _forget_idle(self, now: float) -> None:
        """Forget visitors whose last question is outside the window (they count as new)."""
        self._recent = {visitor: times for visitor, times in self._recent.items()
                        if times and now - times[-1] < WINDOW_SECONDS}
        self._swept = now
