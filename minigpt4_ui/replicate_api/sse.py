"""Incremental Server-Sent Events decoder (WHATWG HTML "event stream interpretation")."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    """One dispatched event; `id` is the last event id seen so far in the stream."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


def iter_events(chunks: Iterable[bytes]) -> Iterator[Event]:
    """Decode a byte stream, split anywhere, into events as soon as each one is complete."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    parser = _Parser()
    pending = ""  # the start of a line whose end has not arrived yet
    started = False
    after_cr = False  # a CR ended the last chunk: an LF opening the next one belongs to it
    for chunk in chunks:
        text = decoder.decode(chunk)
        if not text:
            continue
        if not started:
            started = True
            text = text.removeprefix("\ufeff")
        if after_cr and text.startswith("\n"):
            text = text[1:]
        after_cr = text.endswith("\r")
        *lines, pending = _LINE_END.split(pending + text)
        for line in lines:
            event = parser.feed(line)
            if event is not None:
                yield event
    # Whatever is left has no terminating blank line, so by the spec it is never dispatched.


class _Parser:
    """Per-line state machine; `feed` returns an event when a blank line completes one."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.event = ""
        self.data: list[str] = []
        self.retry: int | None = None

    def feed(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "event":
            self.event = value
        elif name == "data":
            self.data.append(value)
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        return None

    def _dispatch(self) -> Event | None:
        event = None
        if self.data:  # an event without any data line is dropped, as the spec says
            event = Event(event=self.event or "message", data="\n".join(self.data),
                          id=self.last_id, retry=self.retry)
        self._reset()
        return event
