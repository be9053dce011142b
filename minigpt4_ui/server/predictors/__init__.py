"""What the server runs for a prediction: anything with a `predict` method that yields text."""

from __future__ import annotations

import threading
from typing import Callable, Iterator, Protocol

from PIL import Image

LogFn = Callable[[str], None]


class PredictionError(Exception):
    """A failure whose message is meant for the user; it becomes the prediction's `error` as is."""


class Predictor(Protocol):
    """A model behind the server; the runner decodes the image and handles pacing and cancel."""

    def predict(self, inputs: dict, image: Image.Image, log: LogFn,
                cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the answer as text chunks whose concatenation is the whole output.

        `inputs` is validated and complete with defaults. `log` appends a line to the
        prediction's logs. To cancel, the runner sets `cancel` and closes the generator; a
        predictor busy between chunks can watch `cancel` to stop sooner. A predictor with
        `reports_start = True` also gets `started`, to call when the model begins (until then
        the prediction stays `starting`).
        """
        ...
