"""Limits for a public host: one running answer per session, a per-visitor hourly allowance."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from typing import Callable, Iterator

WINDOW_SECONDS = 3600.0


class LimitError(Exception):
    """A limit was reached; the message tells the visitor what to do."""


class Guard:
    """Tracks running answers per session and host-paid predictions per visitor (thread-safe)."""

    def __init__(self, *, per_hour: int, clock: Callable[[], float] = time.monotonic):
        self.per_hour = per_hour
        self._clock = clock
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._recent: defaultdict[str, deque[float]] = defaultdict(deque)

    @contextmanager
    def slot(self, session: str, visitor: str | None) -> Iterator[None]:
        """Hold the session's one slot while an answer runs.

        `visitor` is None when the prediction is not paid by the host (the visitor's own token or
        the embedded backend); otherwise it counts towards that visitor's hourly allowance.
        """
        with self._lock:
            if session in self._running:
                raise LimitError("You already have an answer in progress: wait for it to finish "
                                 "or press Stop.")
            if visitor is not None and self.per_hour:
                self._count(visitor)
            self._running.add(session)
        try:
            yield
        finally:
            with self._lock:
                self._running.discard(session)

    def _count(self, visitor: str) -> None:
        now = self._clock()
        times = self._recent[visitor]
        while times and now - times[0] >= WINDOW_SECONDS:
            times.popleft()
        if len(times) >= self.per_hour:
            minutes = max(1, round((WINDOW_SECONDS - (now - times[0])) / 60))
            raise LimitError(f"This demo allows {self.per_hour} questions per hour per visitor on the "
                             f"host's Replicate account. Try again in about {minutes} min, or enter "
                             "your own Replicate token.")
        times.append(now)
