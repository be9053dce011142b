"""One tiny prediction at start, in the background, so the host knows the model is warm (and that
it answers) before an audience arrives: "warming up" → "ready in N s", or what went wrong."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from PIL import Image

from . import chat, images, wording
from ..replicate_api import Client, ReplicateError

log = logging.getLogger(__name__)

# The cheapest question MiniGPT-4 takes: a small grey picture and one new token, one beam.
PROMPT = "Say OK."
PARAMETERS = {"max_new_tokens": 1, "num_beams": 1}


def tiny_input() -> dict:
    """MiniGPT-4's inputs for the warm-up question."""
    return {"image": images.encode(Image.new("RGB", (32, 32), (128, 128, 128))), "prompt": PROMPT,
            **PARAMETERS}


@dataclass(frozen=True)
class WarmUpStatus:
    """Where the warm-up is: `state` is "warming", "ready" or "failed"; `seconds` since it began
    (until it ended); `problem` says what went wrong, in words a visitor may read."""

    state: str
    seconds: float
    problem: str = ""


class WarmUp:
    """Sends the warm-up question on a thread of its own and says how it went (thread-safe)."""

    def __init__(self, client: Client, *, who: str, clock: Callable[[], float] = time.monotonic):
        """`who` names, in words, who answers it (the model, where), for the log."""
        self.client = client
        self.who = who
        self._clock = clock
        self._started = clock()
        self._status = WarmUpStatus("warming", 0.0)
        self._lock = threading.Lock()

    def start(self) -> "WarmUp":
        log.warning("warming up: one small prediction (max_new_tokens 1) for %s", self.who)
        threading.Thread(target=self._run, name="warm-up", daemon=True).start()
        return self

    def status(self) -> WarmUpStatus:
        with self._lock:
            if self._status.state == "warming":
                return WarmUpStatus("warming", self._clock() - self._started)
            return self._status

    def _run(self) -> None:
        problem = ""
        prediction_id = None
        try:
            for progress in chat.ask(self.client, tiny_input()):
                prediction_id = progress.prediction_id
                if progress.status == "failed":
                    problem = wording.model_failed(progress.error)
                elif progress.finished and progress.status != "succeeded":
                    problem = f"the prediction ended {progress.status}"
        except ReplicateError as exc:
            problem = str(exc)
        except Exception as exc:  # noqa: BLE001 - a host must read why, whatever broke
            log.exception("warm-up failed")
            problem = f"{type(exc).__name__}: {exc}"
        seconds = self._clock() - self._started
        with self._lock:
            self._status = WarmUpStatus("failed" if problem else "ready", seconds, problem)
        if problem:
            log.warning("warm-up failed after %.1f s: %s", seconds, problem)
        else:
            log.warning("warm-up: ready in %.1f s (prediction %s)", seconds, prediction_id)


def notice(status: WarmUpStatus) -> str:
    """The banner's line about the warm-up."""
    if status.state == "warming":
        return (f"**Warming up:** a first small question is on its way to the model ({status.seconds:.0f} s "
                "so far; a cold start can take minutes). Questions asked now wait for it.")
    if status.state == "ready":
        return f"**Ready:** the model answered a warm-up question in {status.seconds:.1f} s."
    return (f"**Warm-up failed** after {status.seconds:.1f} s: {status.problem.rstrip('.')}. Questions "
            "may fail the same way.")
