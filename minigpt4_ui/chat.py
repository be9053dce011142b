"""One question about an image, end to end: validate, encode, predict, follow, cancel on close."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator

from . import images, schema
from .replicate_api import TERMINAL, Client, ReplicateError

log = logging.getLogger(__name__)

# A public demo's own cap: about 4,000 tokens of English, the model's default max_length.
MAX_PROMPT_CHARS = 16_000
# The model itself sets no upper bound on these; the demo's own caps, just above its defaults.
APP_MAXIMUM = {"max_length": 4096, "max_new_tokens": 4096}

# How often the elapsed time is refreshed while the backend is silent (a cold boot can take minutes).
TICK_SECONDS = 1.0


@dataclass(frozen=True)
class Progress:
    """What is known about the answer at one moment; every field is real backend state."""

    status: str  # "preparing", then the prediction's status
    text: str = ""
    elapsed: float = 0.0
    prediction_id: str | None = None
    web_url: str | None = None
    logs: str = ""
    error: str | None = None
    predict_time: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """The six parameters validated, with defaults for missing ones; raises schema.InputError.

    A parameter given as None is a cleared field, refused by name rather than defaulted, and the
    app's own caps (APP_MAXIMUM) apply on top of the model's bounds.
    """
    checked = _checked({**params, "image": "pending", "prompt": "pending"}, [])
    return {field.name: checked[field.name] for field in schema.PARAMETERS}


def build_input(image: str | None, prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check the inputs, then encode the image; raises schema.InputError or images.ImageError.

    Every problem with the prompt and parameters is reported at once, before the (slower) image
    decoding.
    """
    problems = [] if image else [schema.Problem("image", "required", "add an image first")]
    if isinstance(prompt, str) and len(prompt) > MAX_PROMPT_CHARS:
        problems.append(schema.Problem("prompt", "max_length", f"{len(prompt):,} characters is too long; "
                                       f"up to {MAX_PROMPT_CHARS:,} are accepted"))
    elif isinstance(prompt, str) and "\x00" in prompt:
        problems.append(schema.Problem("prompt", "invalid_character", "contains a NUL character (\\0)"))
    checked = _checked({**params, "image": "pending", "prompt": prompt}, problems)
    return {**checked, "image": images.to_input(image)}


def _checked(inputs: dict[str, Any], problems: list[schema.Problem]) -> dict[str, Any]:
    """schema.validate plus the app's own rules, every problem reported at once."""
    for field in schema.PARAMETERS:
        value = inputs.get(field.name)
        if field.name in inputs and value is None:
            problems.append(schema.Problem(field.name, "required",
                                           f"{field.label} is empty: enter a number"))
        cap = APP_MAXIMUM.get(field.name)
        if (cap is not None and isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value) and value > cap):
            problems.append(schema.Problem(field.name, "app_maximum",
                                           f"{field.label} must be at most {cap:,}"))
    try:
        checked = schema.validate({k: v for k, v in inputs.items() if v is not None})
    except schema.InputError as exc:
        problems += exc.problems
    if problems:
        raise schema.InputError(problems)
    return checked


def ask(client: Client, inputs: dict[str, Any]) -> Iterator[Progress]:
    """Run one prediction and yield its progress; closing the generator cancels it on the server.

    Updates are read on a helper thread so that elapsed time keeps moving while the backend is
    silent; the thread ends by itself once the prediction is terminal (cancel makes it so).
    """
    started = time.monotonic()
    progress = Progress(status="starting")
    prediction = client.create(inputs, stream=True)
    progress = replace(progress, status=prediction.get("status", "starting"), prediction_id=prediction["id"],
                       web_url=(prediction.get("urls") or {}).get("web"))
    updates: queue.Queue = queue.Queue()
    threading.Thread(target=_follow, args=(client, prediction, updates), daemon=True).start()
    try:
        yield progress
        while not progress.finished:
            try:
                item = updates.get(timeout=TICK_SECONDS)
            except queue.Empty:
                progress = replace(progress, elapsed=time.monotonic() - started)
                yield progress
                continue
            if isinstance(item, Exception):
                raise item
            progress = _apply(progress, item, elapsed=time.monotonic() - started)
            yield progress
    finally:
        if not progress.finished:
            _cancel_quietly(client, progress.prediction_id)


def _follow(client: Client, prediction: dict, out: queue.Queue) -> None:
    try:
        for update in client.updates(prediction):
            out.put(update)
    except ReplicateError as exc:
        out.put(exc)


def _apply(progress: Progress, update, *, elapsed: float) -> Progress:
    final = update.prediction or {}
    predict_time = (final.get("metrics") or {}).get("predict_time")
    text = progress.text + update.text
    if update.status == "succeeded" and isinstance(final.get("output"), str):
        text = final["output"]  # a backend that never streamed delivers the answer only here
    return replace(progress, status=update.status, text=text, elapsed=elapsed,
                   logs=progress.logs + update.logs, error=update.error or progress.error,
                   predict_time=predict_time if predict_time is not None else progress.predict_time)


def _cancel_quietly(client: Client, prediction_id: str | None) -> None:
    """Best effort: the user has gone, so there is nobody to show a cancel failure to."""
    if prediction_id is None:
        return
    try:
        client.cancel(prediction_id)
    except ReplicateError as exc:
        log.warning("could not cancel prediction %s: %s", prediction_id, exc)
