"""A model in a Cog container (e.g. the real MiniGPT-4 on your GPU), reached over its HTTP API.

Every Replicate model is a Cog container; `docker run -p 5000:5000 --gpus=all r8.im/<model>@<id>`
serves the model at `http://127.0.0.1:5000`. This predictor forwards each prediction to it, so the
embedded server keeps speaking Replicate's API (history, SSE, cancel, clients) in front of it.

The container's API (coglet 0.23): `PUT /predictions/{id}` with `Prefer: respond-async` answers
202 and then reports progress only by webhook (cumulative `logs`, `output` growing as a list for
iterator models, the final state); without that header the same `PUT` answers when the
prediction ends. `POST /predictions/{id}/cancel` cancels either. 409 means every slot is busy,
503 that setup has not finished (or failed: `GET /health-check` tells which), 422 a rejected input.

With a callback URL (an address where the container can reach this process) answers stream;
without one, or when no webhook arrives, each prediction is one synchronous `PUT` whose answer
arrives whole. Behind a load balancer any instance may answer, so a 409 is retried (on a new
connection, for balancers that balance connections), and a cancel that lands on an instance
without the prediction (404) is sent again.

The modules: `container` reaches the container (requests, retries through boot and busy slots,
cancel); `trip` turns Cog's reports into the prediction's progress; `sync_path` and
`webhook_path` are the two ways a prediction runs. A prediction's messages never name the
container's address (visitors read them); the host's log does.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterator

from PIL import Image

from .. import LogFn, PredictionError
from ...callbacks import CallbackReceiver
from .container import UNREACHABLE_S, WAIT_S, Container
from .sync_path import run_sync
from .trip import Trip, image_input
from .webhook_path import CALLBACK_GRACE_S, run_with_webhooks

logger = logging.getLogger(__name__)


class CogPredictor:
    """Forwards predictions to the Cog container at `url`; see the module docstring.

    `callback_url` (`http://HOST:PORT`, port 0 for any) is where the container's webhooks go;
    without it answers arrive whole. `unreachable_s` and `wait_s` bound how long a question is
    retried against an unreachable container and a booting or busy one; `callback_grace_s` how
    long a started prediction waits for its first webhook before the callback URL counts as
    unreachable.
    """

    reports_start = True  # the prediction stays `starting` until the container runs it

    def __init__(self, url: str, *, callback_url: str | None = None, unreachable_s: float = UNREACHABLE_S,
                 wait_s: float = WAIT_S, callback_grace_s: float = CALLBACK_GRACE_S):
        self.url = url.rstrip("/")
        self._container = Container(self.url, unreachable_s=unreachable_s, wait_s=wait_s)
        self._callback_grace_s = callback_grace_s
        try:
            self._receiver = CallbackReceiver(callback_url) if callback_url else None
        except (ValueError, OSError) as exc:
            raise PredictionError(f"cannot listen for the container's webhooks at "
                                  f"{callback_url}: {exc}") from None
        self._callbacks_fail = False  # set when no webhook ever reached the receiver
        self._document: dict | None = None
        self._closed = threading.Event()
        threading.Thread(target=self._fetch_schema, daemon=True, name="cog-schema").start()

    @property
    def streams(self) -> bool:
        """Whether progress arrives as it happens (webhooks) rather than whole at the end."""
        return self._receiver is not None and not self._callbacks_fail

    def openapi_schema(self) -> dict | None:
        """The container's OpenAPI document once it has served one with `image` and `prompt`."""
        return self._document

    def close(self) -> None:
        """Stop the webhook receiver and the schema fetcher."""
        self._closed.set()
        if self._receiver is not None:
            self._receiver.close()
        self._container.close()

    def predict(self, inputs: dict, image: Image.Image, log: LogFn,
                cancel: threading.Event | None = None,
                started: Callable[[], None] | None = None) -> Iterator[str]:
        """Run one prediction in the container, yielding new output text as it arrives.

        `started()` is called once the container is running it; until then the prediction
        waits through the container's setup, busy slots and restarts.
        """
        body = {"input": {**inputs, "image": image_input(inputs["image"], image)}}
        trip = Trip(body, log, cancel or threading.Event(), started or (lambda: None))
        if not self.streams:
            trip.note("sync", "Progress is not streamed: the container has no callback URL "
                              "(--cog-callback-url) it can reach, so the answer arrives whole.")
            yield from run_sync(self._container, trip)
            return
        heard = yield from run_with_webhooks(self._container, trip, self._receiver, self._callback_grace_s)
        if not heard:
            self._callbacks_fail = True  # later questions go synchronously at once
            logger.warning("no webhook from the Cog container reached %s within %g s; answers "
                           "arrive whole from now on", self._receiver.base_url.rsplit("/", 1)[0],
                           self._callback_grace_s)
            trip.note("sync", f"No progress reached the callback URL (--cog-callback-url) from the "
                              f"container within {self._callback_grace_s:g} s, so it cannot call that "
                              "address; asking again synchronously (the answer arrives whole).")
            yield from run_sync(self._container, trip)

    def _fetch_schema(self) -> None:
        # The container serves its schema only once setup is done, so keep asking until then.
        while not self._closed.is_set():
            response = self._container.get("/openapi.json")
            if response is not None and response.status_code == 200:
                try:
                    document = response.json()
                    inputs = document["components"]["schemas"]["Input"]
                except (ValueError, KeyError, TypeError):
                    inputs = {}
                if {"image", "prompt"} <= set(inputs.get("properties") or ()):
                    self._document = document
                else:
                    logger.warning("the Cog container at %s has no image and prompt inputs in its "
                                   "schema; validating with MiniGPT-4's", self.url)
                return
            if response is not None and response.status_code not in (503, 502, 504):
                return  # no schema file in the container: MiniGPT-4's stands in
            self._closed.wait(2.0)
