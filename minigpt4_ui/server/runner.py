"""Runs predictions on a thread pool: status transitions, logs, output, pacing, cancellation,
deadlines (`Cancel-After`) and webhook notifications.

Image URLs are fetched first on a smaller pool of their own, so slow image hosts can hold at most
that pool's threads, never the workers that run other predictions; cancel ends a fetch at once.

`Runner` (about 220 lines) stays one class, a little over the ~200 the project aims at: a job's
life (fetch, start, chunks, finish) and the table of live jobs that `cancel`, `live` and `close`
read share one lock; split, that lock's rules would be spread over classes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from PIL import Image

from ..shared.facts import TERMINAL
from .events import Journal
from .image_input import ImageInputError, decode, is_url, read_image
from .prediction_object import now, replay_journal, seconds_between, terminal_events
from .predictors import PredictionError, Predictor
from .store import Store
from .webhook_delivery import Delivery

KEEP_JOURNALS = 1000  # finished journals kept for exact SSE replay; older ones are rebuilt
logger = logging.getLogger(__name__)


@dataclass
class _Job:
    prediction: dict
    inputs: dict
    journal: Journal = field(default_factory=Journal)
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    webhook: Delivery | None = None
    timer: threading.Timer | None = None
    predictor: Predictor | None = None  # None: the runner's own
    image_field: str = "image"
    iterator: bool = False  # output is a list of chunks (Cog's iterator outputs), not one string
    raw: bytes | None = None  # the image, when it was fetched before a worker took the job


class Runner:
    """Owns every running prediction.

    The store holds each prediction's status changes and logs; output text reaches it only when
    the prediction ends (rewriting the whole object per word cost a quarter of a core at 32
    streams), so readers ask `live()` first.
    """

    def __init__(self, *, store: Store, predictor: Predictor, tokens_per_second: float | None = None,
                 max_workers: int = 64, fetch_workers: int = 16,
                 read: Callable[..., bytes] = read_image):
        """`read(image_input, cancel=event)` returns the bytes of the validated `image` input
        (ImageInputError if it cannot)."""
        self._store = store
        self._read = read
        self._predictor = predictor
        self._interval = 1 / tokens_per_second if tokens_per_second else 0.0
        # A paced predictor mostly waits, so many threads are cheap.
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="prediction")
        self._fetch_pool = ThreadPoolExecutor(max_workers=fetch_workers,
                                              thread_name_prefix="image-fetch")
        self._jobs: dict[str, _Job] = {}
        self._journals: OrderedDict[str, Journal] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False
        for prediction in store.unfinished():
            self._finish(_Job(prediction=prediction, inputs={}), "failed",
                         error="the server stopped before this prediction finished")

    def submit(self, prediction: dict, inputs: dict, *, webhook: Delivery | None = None,
               cancel_after: float | None = None, predictor: Predictor | None = None,
               image_field: str = "image", iterator: bool = False) -> None:
        """Store a new prediction and queue it; `inputs` is the validated input with defaults.

        `webhook` receives the prediction's events; after `cancel_after` seconds an unfinished
        prediction is aborted (not started yet) or canceled (running). `predictor` answers instead
        of the runner's own (another hosted model); `image_field` names its image input, which
        may be absent; `iterator` keeps the output as a list of chunks.
        """
        job = _Job(prediction=prediction, inputs=inputs, webhook=webhook, predictor=predictor,
                   image_field=image_field, iterator=iterator)
        self._store.insert(prediction)
        if cancel_after is not None:
            job.timer = threading.Timer(cancel_after, self._deadline, args=(job,))
            job.timer.daemon = True
        with self._lock:
            if self._closed:
                raise RuntimeError("the runner is closed")
            self._jobs[prediction["id"]] = job
            self._journals[prediction["id"]] = job.journal
            self._trim_journals()
        if job.timer is not None:
            job.timer.start()
        if is_url(inputs.get(image_field)):
            self._fetch_pool.submit(self._fetch, job)
        else:
            self._pool.submit(self._run, job)

    def journal(self, prediction_id: str) -> Journal | None:
        """The live journal of a prediction, or a rebuilt one, or None if the id is unknown."""
        with self._lock:
            journal = self._journals.get(prediction_id)
        if journal is not None:
            return journal
        prediction = self._store.get(prediction_id)
        return replay_journal(prediction) if prediction else None

    def live(self, prediction_id: str) -> dict | None:
        """A copy of a running prediction's current state, or None once it has ended."""
        with self._lock:
            job = self._jobs.get(prediction_id)
        if job is None:
            return None
        with job.lock:
            return dict(job.prediction)

    def cancel(self, prediction_id: str) -> None:
        """Ask a prediction to stop; one that has not started is canceled at once."""
        with self._lock:
            job = self._jobs.get(prediction_id)
        if job is None:
            return  # finished, or unknown: cancel leaves finished predictions unchanged
        job.cancel.set()
        if job.prediction["status"] == "starting":
            self._finish(job, "canceled")

    def close(self) -> None:
        """Cancel everything still running and wait for the worker threads."""
        with self._lock:
            self._closed = True
            ids = list(self._jobs)
        for prediction_id in ids:
            self.cancel(prediction_id)
        self._fetch_pool.shutdown(wait=True)
        self._pool.shutdown(wait=True)

    def _deadline(self, job: _Job) -> None:
        with job.lock:
            status = job.prediction["status"]
        if status == "starting":
            self._finish(job, "aborted")
        job.cancel.set()  # a running prediction stops at its next chunk and ends `canceled`

    def _notify(self, job: _Job, kind: str) -> None:
        """Hand the webhook a snapshot (call with job.lock held)."""
        if job.webhook is not None:
            job.webhook.notify(kind, dict(job.prediction))

    def _trim_journals(self) -> None:
        finished = [pid for pid, journal in self._journals.items() if journal.finished]
        for pid in finished[:max(0, len(finished) - KEEP_JOURNALS)]:
            del self._journals[pid]

    def _fetch(self, job: _Job) -> None:
        """Fetch the job's image URL, then hand the job to a prediction worker."""
        if job.cancel.is_set():
            return
        try:
            job.raw = self._read(job.inputs[job.image_field], cancel=job.cancel)
            self._pool.submit(self._run, job)
        except ImageInputError as exc:
            canceled = job.cancel.is_set()
            self._finish(job, "canceled" if canceled else "failed", error=None if canceled else str(exc))
        except RuntimeError:  # the runner closed while the image was being fetched
            self._finish(job, "canceled")

    def _run(self, job: _Job) -> None:
        # A predictor that `reports_start` (a remote model that may be booting or busy) says
        # itself when the prediction leaves `starting`.
        reports_start = getattr(job.predictor or self._predictor, "reports_start", False)
        if job.cancel.is_set() or not (reports_start or self._start(job)):
            return  # canceled while queued
        try:
            image = None
            source = job.inputs.get(job.image_field)
            if source is not None:
                raw = job.raw if job.raw is not None else self._read(source, cancel=job.cancel)
                job.raw = None  # the picture replaces it
                image = decode(raw)
                self._log(job, f"image {image.width}x{image.height} RGB\n")
            completed = self._generate(job, image)
        except (ImageInputError, PredictionError) as exc:
            self._finish(job, "failed", error=str(exc))
        except Exception as exc:  # a predictor bug must fail its prediction, not the worker
            logger.exception("prediction %s failed", job.prediction["id"])
            self._finish(job, "failed", error=f"the predictor failed: {type(exc).__name__}: {exc}")
        else:
            self._finish(job, "succeeded" if completed else "canceled")

    def _start(self, job: _Job) -> bool:
        """Move a `starting` prediction to `processing`; False if it has already ended."""
        with job.lock:
            if job.prediction["status"] != "starting":
                return False
            job.prediction.update(status="processing", started_at=now())
            self._store.update(job.prediction)
            self._notify(job, "start")
            return True

    def _generate(self, job: _Job, image: Image.Image | None) -> bool:
        """Stream the predictor's chunks into the prediction; False if it was canceled."""
        predictor = job.predictor or self._predictor
        extra = {"started": lambda: self._start(job)} if getattr(predictor, "reports_start", False) else {}
        chunks = predictor.predict(job.inputs, image, lambda line: self._log(job, line),
                                         cancel=job.cancel, **extra)
        next_at = time.monotonic()
        try:
            for chunk in chunks:
                # Pacing waits on the cancel event, so a cancel never waits out an interval.
                if job.cancel.wait(max(0.0, next_at - time.monotonic())):
                    return False
                if chunk:
                    self._emit(job, chunk)
                next_at = time.monotonic() + self._interval
        finally:
            chunks.close()
        return not job.cancel.is_set()

    def _emit(self, job: _Job, chunk: str) -> None:
        with job.lock:
            if job.prediction["status"] in TERMINAL:
                return
            if job.iterator:
                job.prediction["output"] = [*(job.prediction["output"] or []), chunk]
            else:
                job.prediction["output"] = (job.prediction["output"] or "") + chunk
            job.journal.append("output", chunk)
            self._notify(job, "output")

    def _log(self, job: _Job, line: str) -> None:
        with job.lock:
            if job.prediction["status"] in TERMINAL:
                return
            job.prediction["logs"] += line
            self._store.update(job.prediction)
            job.journal.append("logs", line)
            self._notify(job, "logs")

    def _finish(self, job: _Job, status: str, *, error: str | None = None) -> None:
        with job.lock:
            prediction = job.prediction
            if prediction["status"] in TERMINAL:
                return
            completed = now()
            started = prediction["started_at"] or completed
            prediction.update(status=status, error=error, started_at=started, completed_at=completed,
                              metrics={"predict_time": seconds_between(started, completed),
                                       "total_time": seconds_between(prediction["created_at"], completed)})
            if status == "aborted":  # it never ran
                prediction.update(started_at=None, metrics={"total_time": seconds_between(
                    prediction["created_at"], completed)})
            self._store.update(prediction)
            for name, data in terminal_events(prediction):
                job.journal.append(name, data, final=name == "done")
            self._notify(job, "completed")
            if job.timer is not None:
                job.timer.cancel()
        with self._lock:
            self._jobs.pop(prediction["id"], None)
