"""The synchronous path: one `PUT` without `Prefer: respond-async`, answered when the prediction
ends, so the answer arrives whole. Used without a callback URL, or when no webhook arrives."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Iterator

import requests

from .. import PredictionError
from .container import POLL_S, RUNNING, Container, reason, refused
from .trip import Report, Trip

ACCEPT_S = 0.25  # a synchronous PUT still open after this was accepted (refusals come in ms)
logger = logging.getLogger(__name__)


def run_sync(container: Container, trip: Trip) -> Iterator[str]:
    """Run the trip's prediction with one synchronous PUT; yield its output once it ends."""
    answers: queue.Queue = queue.Queue()
    response = container.submit(trip, lambda: _put(container, trip, answers))
    if response is None:
        return
    try:
        while response is RUNNING:
            trip.start()
            try:
                response = answers.get(timeout=POLL_S)
            except queue.Empty:
                if trip.cancel.is_set():
                    return
        if isinstance(response, Exception):
            trip.ended = True  # the connection is gone, and the container's state with it
            logger.warning("lost the Cog container at %s during %s: %s", container.url, trip.id,
                           reason(response))
            raise PredictionError(f"lost the Cog container during the prediction: {reason(response)}")
        if not response.ok:
            trip.ended = True
            raise refused(response)
        yield from trip.apply(_report(response))
    finally:
        if not trip.ended:
            container.cancel(trip, answers, confirm=True)


def _put(container: Container, trip: Trip, answers: queue.Queue) -> requests.Response | object:
    """Start a synchronous PUT on a thread; its response if it came at once, else RUNNING."""
    def send() -> None:
        try:
            answers.put(container.put(trip, trip.body, {}, read_timeout=None))
        except requests.RequestException as exc:
            answers.put(exc)

    threading.Thread(target=send, daemon=True, name="cog-put").start()
    try:
        answer = answers.get(timeout=ACCEPT_S)
    except queue.Empty:
        return RUNNING
    if isinstance(answer, requests.RequestException):
        raise answer
    return answer


def _report(response: requests.Response) -> Report:
    try:
        return Report.from_json(response.json())
    except ValueError:
        raise PredictionError(f"the Cog container answered with something that is not JSON: "
                              f"{response.text[:300]}") from None
