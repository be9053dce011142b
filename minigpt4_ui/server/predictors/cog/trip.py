"""One prediction's trip through a Cog container: what the container reported, turned into the
prediction's progress (started, logs, new output text, its end)."""

from __future__ import annotations

import base64
import io
import json
import secrets
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

from PIL import Image

from .. import LogFn, PredictionError

# Cog's own HTTP API ends a prediction in one of these (it has no `aborted`).
COG_TERMINAL = frozenset({"succeeded", "failed", "canceled"})


@dataclass(frozen=True)
class Report:
    """One state of a container prediction: cumulative logs and output text, status, error."""

    status: str
    logs: str
    text: str
    error: str | None

    @classmethod
    def from_json(cls, payload: dict) -> "Report":
        return cls(status=payload.get("status") or "starting", logs=payload.get("logs") or "",
                   text=output_text(payload.get("output")), error=payload.get("error"))


def output_text(output: object) -> str:
    """A Cog output as text: a string as is, an iterator's list of chunks joined."""
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "".join(item if isinstance(item, str) else json.dumps(item) for item in output)
    return json.dumps(output)


def image_input(ref: object, image: Image.Image) -> str:
    """The image as the container gets it: the caller's data URI, else the decoded picture as PNG.

    URLs and Files-API files were already fetched and checked by the server, and the container
    may have no network, so it never fetches anything itself.
    """
    if isinstance(ref, str) and ref.startswith("data:"):
        return ref
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Trip:
    """One prediction in the container: its id and request body, and what has been seen of it."""

    def __init__(self, body: dict, log: LogFn, cancel: threading.Event, started: Callable[[], None]):
        self.id = secrets.token_hex(13)
        self.body = body
        self.log = log
        self.cancel = cancel
        self._started = started
        self.is_started = False
        self.heard = False  # a webhook arrived
        self.ended = False  # the container reported a final state, or is gone with it
        # After a 409 (or a cancel's 404) the next request opens a new connection, so that a
        # balancer that balances connections (a Kubernetes Service) can pick another instance.
        self.new_connection = False
        self.logs = ""
        self.text = ""
        self._notes: set[str] = set()

    def apply(self, report: Report) -> Iterator[str]:
        """Log and yield what is new in a report, and end on a final one.

        Webhooks may arrive out of order; a stale one is shorter than what was seen and adds
        nothing.
        """
        if report.status != "starting":
            self.start()
        if report.logs.startswith(self.logs) and len(report.logs) > len(self.logs):
            self.log(report.logs[len(self.logs):])
            self.logs = report.logs
        if report.text.startswith(self.text) and len(report.text) > len(self.text):
            chunk, self.text = report.text[len(self.text):], report.text
            yield chunk
        self.ended = report.status in COG_TERMINAL
        if report.status == "failed":
            raise PredictionError(report.error or "the model failed without a message")
        if report.status == "canceled" and not self.cancel.is_set():
            raise PredictionError("the Cog container canceled the prediction")

    def start(self) -> None:
        """Say once that the container runs the prediction."""
        if not self.is_started:
            self.is_started = True
            self._started()

    def note(self, key: str, text: str) -> None:
        """Log a status note once per prediction."""
        if key not in self._notes:
            self._notes.add(key)
            self.log(text + "\n")
