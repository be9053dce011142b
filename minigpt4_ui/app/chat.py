"""One question about an image, end to end: validate, encode, predict, follow, cancel on close."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator

from . import images
from ..shared import model_schema, schema
from ..shared.facts import TERMINAL
from ..shared.model_schema import ModelSpec
from ..replicate_api import Client, ReplicateError, Update, replicate_page

log = logging.getLogger(__name__)

# A public demo's own cap: about 4,000 tokens of English, the model's default max_length.
MAX_PROMPT_CHARS = 16_000

# How often the elapsed time is refreshed while the backend is silent (a cold boot can take minutes).
TICK_SECONDS = 1.0
# How soon a running answer notices Stop.
STOP_POLL_SECONDS = 0.1
# After Stop, how long to wait for the server to say whether the prediction ended canceled or had
# already finished (it usually says so within one update).
SETTLE_SECONDS = 5.0


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


def check_params(params: dict[str, Any], spec: ModelSpec = schema.SPEC) -> dict[str, Any]:
    """A model's parameters (MiniGPT-4's six by default) checked (blank, the app's caps, the model's
    bounds), with defaults for missing ones; raises schema.InputError."""
    checked = _validated(spec, {**params, spec.question: "pending", spec.image: "pending"}, [])
    return {field.name: checked[field.name] for field in spec.parameters if field.name in checked}


def build_input(image: str | None, prompt: str, params: dict[str, Any]) -> dict[str, Any]:
    """MiniGPT-4's inputs, checked and with the image encoded (see `build_model_input`)."""
    return build_model_input(schema.SPEC, image, {"prompt": prompt, **params})


def build_model_input(spec: ModelSpec, image: str | None, inputs: dict[str, Any]) -> dict[str, Any]:
    """Check a model's inputs, then encode the image; raises InputError or images.ImageError.

    Every problem with the question and parameters is reported at once, before the (slower) image
    decoding. A parameter given as None is a blank control, reported as such (not defaulted).
    """
    problems = [] if image else [schema.Problem(spec.image, "required", "add an image first")]
    question = inputs.get(spec.question)
    if isinstance(question, str) and len(question) > MAX_PROMPT_CHARS:
        problems.append(schema.Problem(spec.question, "max_length", f"{len(question):,} characters is "
                                       f"too long; up to {MAX_PROMPT_CHARS:,} are accepted"))
    elif isinstance(question, str) and "\x00" in question:
        problems.append(schema.Problem(spec.question, "invalid_character",
                                       "contains a NUL character (\\0)"))
    checked = _validated(spec, {**inputs, spec.image: "pending"}, problems)
    return {**checked, spec.image: images.to_input(image)}


def _validated(spec: ModelSpec, inputs: dict[str, Any], problems: list[schema.Problem]) -> dict[str, Any]:
    """The model's validation plus the app's own rules (blank controls, `model_schema.app_rules`),
    every problem at once."""
    blank = [name for name, value in inputs.items() if value is None]
    problems += [schema.Problem(name, "blank", "is empty") for name in blank]
    try:
        checked = model_schema.validate(spec.fields, {k: v for k, v in inputs.items() if k not in blank},
                                        also=model_schema.app_rules)
    except schema.InputError as exc:
        problems += exc.problems
    if problems:
        raise schema.InputError(problems)
    return checked


def ask(client: Client, inputs: dict[str, Any], *, stop: threading.Event | None = None,
        model: str | None = None, version: str | None = None) -> Iterator[Progress]:
    """Run one prediction and yield its progress; closing the generator cancels it on the server.

    It runs `version` (or `model`'s latest) when given, else the client's own version. Setting
    `stop` cancels the prediction too (even before it exists: as soon as it is created) and ends
    the progress with the status the server then reports: "canceled", or "succeeded" when the
    answer was already complete. Updates are read on a
    helper thread so that elapsed time keeps moving while the backend is silent; the thread ends
    by itself once the prediction is terminal (cancel makes it so).
    """
    stop = stop or threading.Event()
    started = time.monotonic()
    progress = Progress(status="starting")
    prediction = client.create(inputs, stream=True, model=model, version=version)
    progress = replace(progress, status=prediction.get("status", "starting"), prediction_id=prediction["id"],
                       web_url=replicate_page(prediction))
    updates: queue.Queue = queue.Queue()
    threading.Thread(target=_follow, args=(client, prediction, updates), daemon=True).start()
    next_tick = started + TICK_SECONDS
    settle_by = None  # after Stop: when to stop waiting for the server to say how it ended
    try:
        if not stop.is_set():
            yield progress
        while not progress.finished:
            now = time.monotonic()
            if stop.is_set() and settle_by is None:
                settle_by = now + SETTLE_SECONDS
                final = _cancel_quietly(client, progress.prediction_id)
                if (final or {}).get("status") in TERMINAL:
                    progress = _ended(progress, final, elapsed=now - started)
                    break
            if settle_by is not None and now >= settle_by:
                progress = replace(progress, status="canceled", elapsed=now - started)
                break
            try:
                items = _read(updates, timeout=STOP_POLL_SECONDS)
            except queue.Empty:
                if settle_by is None and now >= next_tick:
                    next_tick += TICK_SECONDS
                    progress = replace(progress, elapsed=now - started)
                    yield progress
                continue
            error = items.pop() if isinstance(items[-1], Exception) else None
            for item in items:
                progress = _apply(progress, item, elapsed=time.monotonic() - started)
            if items and settle_by is None:
                yield progress
            if error is not None:
                raise error
        if settle_by is not None:
            yield progress  # once: how the stopped prediction ended
    finally:
        if not progress.finished:
            _cancel_quietly(client, progress.prediction_id)


def _read(updates: queue.Queue, *, timeout: float) -> list:
    """Every update read so far, waiting up to `timeout` for the first (else queue.Empty); an
    error that ended the reading comes last.

    On a busy host the reader gets ahead of whoever shows the answer: taking all it has read as one
    update keeps the answer in step with the model, with fewer updates to draw instead of a backlog.
    """
    items = [updates.get(timeout=timeout)]
    while not isinstance(items[-1], Exception):
        try:
            items.append(updates.get_nowait())
        except queue.Empty:
            break
    return items


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


def _ended(progress: Progress, prediction: dict, *, elapsed: float) -> Progress:
    """The progress at a prediction's end as the server reports it (after Stop it may have
    finished first: then its whole answer stands)."""
    return _apply(progress, Update(status=prediction["status"], prediction=prediction,
                                   error=prediction.get("error")), elapsed=elapsed)


def _cancel_quietly(client: Client, prediction_id: str | None) -> dict | None:
    """Cancel and return the prediction as it then is; best effort (a failure is only logged)."""
    if prediction_id is None:
        return None
    try:
        return client.cancel(prediction_id)
    except ReplicateError as exc:
        log.warning("could not cancel prediction %s: %s", prediction_id, exc)
        return None
