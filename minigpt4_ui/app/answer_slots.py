"""One answer at a time per browser session, and the Stop switch of that answer.

Stop is a flag the running answer reads between updates, not a Gradio cancellation: a cancelled
event paints Gradio's red "Error" badge over its outputs when the host is busy, while an answer
that notices the flag ends normally, keeps its partial text and cancels its prediction itself.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import mcp_calls

# A slot whose answer has not started by then was abandoned: its tab closed between Send and the
# answer, or the queue refused the answer. (An answer waits in the queue only when every one of
# its workers is busy.)
ABANDONED_AFTER_SECONDS = 60.0


@dataclass
class AnswerSlot:
    """The slot of one question: taken when it is sent, freed when its answer ends."""

    stop: threading.Event = field(default_factory=threading.Event)
    taken_at: float = field(default_factory=time.monotonic)
    started: bool = False


class AnswerSlots:
    """The sessions' slots (thread-safe): Send takes one, Stop flips it, the answer frees it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, AnswerSlot] = {}

    def take(self, session: str) -> AnswerSlot | None:
        """A new slot for the session's next answer, or None while another answer holds one."""
        with self._lock:
            held = self._slots.get(session)
            if held is not None and (held.started or time.monotonic() - held.taken_at < ABANDONED_AFTER_SECONDS):
                return None
            slot = self._slots[session] = AnswerSlot()
            return slot

    def current(self, session: str) -> AnswerSlot | None:
        with self._lock:
            return self._slots.get(session)

    def stop(self, session: str) -> bool:
        """Ask the session's running (or waiting) answer to stop; False when there is none."""
        with self._lock:
            slot = self._slots.get(session)
        if slot is None:
            return False
        slot.stop.set()
        return True

    def free(self, session: str, slot: AnswerSlot) -> None:
        with self._lock:
            if self._slots.get(session) is slot:
                del self._slots[session]


def session_of(request: Any) -> str:
    """Whose one answer at a time: the browser session's, or an MCP tool call's own (every call
    comes back through one gradio_client session)."""
    call = mcp_calls.of(request)
    if call is not None:
        return f"mcp-{call.call_id}"
    return getattr(request, "session_hash", None) or "anonymous"
