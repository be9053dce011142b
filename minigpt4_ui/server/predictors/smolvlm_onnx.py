"""The embedded server's default predictor: SmolVLM on ONNX Runtime, or the stand-in without it.

`OnnxSmolVLMPredictor(weights, fallback=BuiltinPredictor())` answers with the model once its
files are there (`model_weights.ModelWeights`), and with the honest built-in stand-in when they
cannot be had (no cache and no network, or downloads off). A question asked while the files
download, or while another answer is being written, stays `starting` (as on a cold boot) and its
logs say what it waits for: the download's progress, or its place in line. One generation runs
at a time, since two would only share the same cores.

Tokens stream as they are made when `num_beams` is 1; beam search yields its answer whole. Stop
(the runner's `cancel`, or closing the generator) ends generation within one decoding step.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Iterator

from PIL import Image

from . import LogFn, PredictionError, Predictor
from .model_weights import READY, UNAVAILABLE, ModelWeights
from .onnx_engine import Decoding, OnnxVLM, TextStream, Timing
from .smolvlm import available_cpus, wait_for

HEARTBEAT_S = 0.05  # how often `predict` yields "" while it waits, so a cancel is seen
PROGRESS_EVERY_S = 2.0  # how often a waiting question's logs get a progress line


class Line:
    """First come, first served: who may generate now, and everyone else's place."""

    def __init__(self) -> None:
        self._queue: deque[object] = deque()
        self._changed = threading.Condition()

    def join(self) -> object:
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
        return ticket

    def ahead(self, ticket: object) -> int:
        """How many are before `ticket` (0: its turn)."""
        with self._changed:
            return self._queue.index(ticket)

    def wait_turn(self, ticket: object, timeout: float) -> int:
        """Wait up to `timeout` for the turn; return how many are still ahead."""
        with self._changed:
            if self._queue.index(ticket):
                self._changed.wait(timeout)
            return self._queue.index(ticket)

    def leave(self, ticket: object) -> None:
        with self._changed:
            self._queue.remove(ticket)
            self._changed.notify_all()


class OnnxSmolVLMPredictor:
    """See the module docstring. `threads`: ONNX Runtime's threads (default: the CPUs we may use)."""

    reports_start = True  # it says itself when the model begins (after a download or a wait)

    def __init__(self, weights: ModelWeights, *, fallback: Predictor, threads: int | None = None):
        self.weights = weights
        self.fallback = fallback
        self.threads = threads or available_cpus()
        self.engine: OnnxVLM | None = None
        self.load_seconds: float | None = None
        self.line = Line()
        self._load_lock = threading.Lock()
        self._load_error: str | None = None

    def answerer(self) -> str:
        """Who answers now, in words: the model and how it runs, or the stand-in."""
        status = self.weights.status()
        if status.state == UNAVAILABLE or self._load_error:
            return "the built-in stand-in (not a model)"
        return f"{self.weights.name} ({self.weights.precision}, ONNX Runtime) on this machine"

    def warm(self) -> "OnnxSmolVLMPredictor":
        """Load the engine on a thread as soon as the files are there, so the first question
        does not wait for it; returns at once."""
        def run() -> None:
            while not self.weights.wait(None).settled:
                pass
            if self.weights.status().state == READY:
                try:
                    self.load()
                except PredictionError:
                    pass  # each question then says so and the stand-in answers

        threading.Thread(target=run, name="smolvlm-warm", daemon=True).start()
        return self

    def load(self, log: LogFn | None = None) -> OnnxVLM:
        """The engine, loaded once (the files must be there); raises PredictionError if it cannot."""
        with self._load_lock:
            if self.engine is not None:
                return self.engine
            if self._load_error:
                raise PredictionError(self._load_error)
            status = self.weights.status()
            started = time.perf_counter()
            try:
                engine = OnnxVLM(status.folder, precision=self.weights.precision, threads=self.threads)
            except Exception as exc:  # noqa: BLE001 - a broken file must not break every answer
                self._load_error = (f"{self.weights.name} could not be loaded from {status.folder}: "
                                    f"{type(exc).__name__}: {exc}")
                raise PredictionError(self._load_error) from exc
            self.load_seconds = time.perf_counter() - started
            self.engine = engine
            if log:
                log(f"smolvlm: {self.weights.name} ({self.weights.precision}) loaded in "
                    f"{self.load_seconds:.2f} s, {self.threads} threads\n")
            return engine

    def predict(self, inputs: dict, image: Image.Image, log: LogFn,
                cancel: threading.Event | None = None,
                started: Callable[[], bool] = lambda: True) -> Iterator[str]:
        cancel = cancel or threading.Event()
        self.weights.start()  # a model picked by name is fetched when first asked for
        yield from self._await_weights(log, cancel)
        if cancel.is_set():
            return
        status = self.weights.status()
        if status.state == READY and self.engine is None and not self._load_error:
            log(f"smolvlm: loading {self.weights.name} ({self.weights.precision}) from {status.folder}\n")
            try:
                yield from wait_for(lambda: self.load(log))
            except PredictionError:
                pass  # said below; the stand-in answers
        if self.engine is None:
            log(f"smolvlm: {self._load_error or status.detail}; the built-in stand-in answers\n")
            if started():
                yield from self.fallback.predict(inputs, image, log, cancel)
            return
        ticket = self.line.join()
        try:
            yield from self._await_turn(ticket, log, cancel)
            if cancel.is_set() or not started():
                return
            yield from self._generate(inputs, image, log, cancel)
        finally:
            self.line.leave(ticket)

    def _await_weights(self, log: LogFn, cancel: threading.Event) -> Iterator[str]:
        status = self.weights.status()
        said = 0.0
        while not status.settled and not cancel.is_set():
            now = time.monotonic()
            if now - said >= PROGRESS_EVERY_S:
                said = now
                log(f"smolvlm: waiting for the model's files: {status.detail}"
                    f"{', ' + status.progress() if status.progress() else ''}\n")
            yield ""
            status = self.weights.wait(HEARTBEAT_S)

    def _await_turn(self, ticket: object, log: LogFn, cancel: threading.Event) -> Iterator[str]:
        ahead = self.line.ahead(ticket)
        while ahead and not cancel.is_set():
            log(f"smolvlm: waiting for the model: {ahead} answer{'s' * (ahead > 1)} ahead of this one\n")
            shown = ahead
            while ahead == shown and not cancel.is_set():
                yield ""
                ahead = self.line.wait_turn(ticket, HEARTBEAT_S)

    def _generate(self, inputs: dict, image: Image.Image, log: LogFn,
                  cancel: threading.Event) -> Iterator[str]:
        engine = self.engine
        begun = time.perf_counter()
        prompt = engine.prepare(inputs, image)
        decoding = Decoding.from_inputs(inputs, prompt.max_new_tokens)
        mode = ("greedy" if decoding.greedy else
                f"sampling (temperature {decoding.temperature:g}, top_p {decoding.top_p:g})")
        log(f"smolvlm: prompt {prompt.tokens} tokens ({prompt.image_tokens} image, {prompt.turns} "
            f"turn{'s' * (prompt.turns > 1)}); up to {decoding.max_new_tokens} new tokens, {mode}, "
            f"num_beams {decoding.num_beams}, repetition_penalty {decoding.repetition_penalty:g}\n")
        for note in prompt.notes:
            log(f"smolvlm: {note}\n")
        timing = Timing()
        stream = TextStream(engine.decode)
        outcome = "failed"
        first: float | None = None
        ids: list[int] = []
        try:
            for token in engine.generate(prompt, decoding, should_stop=cancel.is_set, timing=timing):
                if first is None:
                    first = time.perf_counter()
                    log(f"smolvlm: first token after {first - begun:.2f} s (image {timing.vision:.2f} s, "
                        f"prefill {timing.prefill:.2f} s)\n")
                ids.append(token)
                if decoding.num_beams == 1:
                    yield stream.push(token)
            if decoding.num_beams > 1:
                yield engine.decode(ids)
            outcome = "stopped" if cancel.is_set() else "done"
        except GeneratorExit:
            outcome = "canceled"
            raise
        finally:
            elapsed = time.perf_counter() - (first or begun)
            rate = (len(ids) - 1) / elapsed if first and len(ids) > 1 and elapsed > 0 else 0.0
            log(f"smolvlm: {len(ids)} new tokens, {rate:.1f} tokens/s after the first, "
                f"{timing.steps} decoding steps, {outcome}\n")

