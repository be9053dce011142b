"""The prediction object as the API returns it: creation, timestamps, `urls`, and its closing
SSE events; the runner changes it, the routes present it."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone

from ..shared.facts import TERMINAL
from . import events
from .events import Journal

ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, as in Replicate's newer ids


def now(after_seconds: float = 0.0) -> str:
    """The current UTC time (plus `after_seconds`) as RFC 3339 with microseconds and a Z."""
    moment = datetime.now(timezone.utc) + timedelta(seconds=after_seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def seconds_between(start: str, end: str) -> float:
    """The time from one of our timestamps to another, in seconds (as `metrics` report it)."""
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 6)


def new_prediction(*, model: str, version: str, input: dict, deadline: str | None = None,
                   deployment: str | None = None) -> dict:
    """A fresh `starting` prediction object (without `urls`, which depend on the request); one
    made on a deployment names it (`owner/name`), as Replicate's do."""
    prediction = {"id": "".join(secrets.choice(ID_ALPHABET) for _ in range(26)), "model": model,
                  "version": version, "input": input, "logs": "", "output": None,
                  "data_removed": False, "error": None, "status": "starting", "created_at": now(),
                  "started_at": None, "completed_at": None, "source": "api", "metrics": {},
                  "deadline": deadline}
    return {**prediction, "deployment": deployment} if deployment else prediction


def present(prediction: dict, base_url: str) -> dict:
    """A stored prediction with the `urls` of the server address `base_url` (no trailing /)."""
    base = f"{base_url}/v1"
    pid = prediction["id"]
    return {**prediction, "urls": {"get": f"{base}/predictions/{pid}",
                                   "cancel": f"{base}/predictions/{pid}/cancel",
                                   "stream": f"{base}/streams/{pid}"}}


def terminal_events(prediction: dict) -> list[tuple[str, str]]:
    """The closing SSE events for a finished prediction: `error` (if failed), then `done`."""
    if prediction["status"] == "failed":
        return [("error", json.dumps({"detail": prediction["error"]})), ("done", events.DONE_ERROR)]
    if prediction["status"] in ("canceled", "aborted"):
        return [("done", events.DONE_CANCELED)]
    return [("done", events.DONE_OK)]


def replay_journal(prediction: dict) -> Journal:
    """A journal rebuilt from a stored prediction whose live journal is gone (e.g. after a restart)."""
    journal = Journal()
    if prediction["logs"]:
        journal.append("logs", prediction["logs"])
    if prediction["output"]:
        output = prediction["output"]
        journal.append("output", "".join(output) if isinstance(output, list) else output)
    if prediction["status"] in TERMINAL:
        for name, data in terminal_events(prediction):
            journal.append(name, data, final=name == "done")
    return journal
