"""A prediction's event journal and its SSE wire encoding (docs/replicate-api-rules.md, "Streaming").

Every event carries an `id:` because replicate-python drops events until it has seen one, names are
only `output`, `logs`, `error` and `done`, and each event ends with a blank line.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass

HELLO = b": hi\n\n"
KEEPALIVE = b": keepalive\n\n"

DONE_OK = "{}"
DONE_CANCELED = json.dumps({"reason": "canceled"})
DONE_ERROR = json.dumps({"reason": "error"})


@dataclass(frozen=True)
class Event:
    """One SSE event: its position in the prediction's journal, its name and its text."""

    seq: int
    name: str  # output | logs | error | done
    data: str


def encode(event: Event, *, epoch: int) -> bytes:
    """Serialize an event; multi-line data becomes several `data:` lines, as clients rejoin them."""
    lines = event.data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    # "data: " strips exactly one space on the client, so a chunk " word" keeps its own space.
    body = "".join(f"data: {line}\n" for line in lines)
    return f"event: {event.name}\nid: {epoch}:{event.seq}\n{body}\n".encode()


def parse_last_event_id(value: str | None) -> int | None:
    """The sequence number in a `Last-Event-ID` header we issued (`<epoch>:<seq>`), else None."""
    if not value:
        return None
    _, _, seq = value.strip().rpartition(":")
    # Checked as text: int() refuses over 4300 digits and non-ASCII digits such as "²";
    # no journal reaches 18 digits, so a longer id is not one we issued.
    return int(seq) if seq.isascii() and seq.isdigit() and len(seq) <= 18 else None


class Journal:
    """Append-only events of one prediction, with waiting for asyncio tasks.

    Writers are runner threads; readers are SSE handlers and `Prefer: wait` requests on the
    event loop, woken by `call_soon_threadsafe` so that no reader polls.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.finished = False
        self._lock = threading.Lock()
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def append(self, name: str, data: str, *, final: bool = False) -> None:
        """Add an event and wake every waiter; `final` marks the journal complete."""
        with self._lock:
            if self.finished:
                return
            self.events.append(Event(seq=len(self.events), name=name, data=data))
            self.finished = final
            waiters = list(self._async_waiters)
        for loop, flag in waiters:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:  # that loop has closed; its reader is gone
                pass

    def since(self, seq: int) -> tuple[list[Event], bool]:
        """Events after `seq` (-1 for all) and whether the journal is complete."""
        with self._lock:
            return self.events[seq + 1:], self.finished

    async def changed(self, seq: int, timeout: float) -> bool:
        """Wait until an event after `seq` exists or the journal completes; False on timeout."""
        flag = asyncio.Event()
        waiter = (asyncio.get_running_loop(), flag)
        with self._lock:
            if self.finished or len(self.events) > seq + 1:
                return True
            self._async_waiters.add(waiter)
        try:
            await asyncio.wait_for(flag.wait(), timeout=timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock:
                self._async_waiters.discard(waiter)

    async def until_finished(self, timeout: float) -> bool:
        """Wait on the event loop until the journal completes or `timeout` seconds pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            events, finished = self.since(-1)
            remaining = deadline - loop.time()
            if finished or remaining <= 0:
                return finished
            await self.changed(len(events) - 1, remaining)
