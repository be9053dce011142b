"""The webhook path: `PUT` with `Prefer: respond-async` (202), then progress only by webhook to
this process's `CallbackReceiver`, so the answer streams."""

from __future__ import annotations

import json
import logging
import queue
import time
from typing import Generator

from .. import PredictionError
from ...callbacks import CallbackReceiver
from .container import POLL_S, Container
from .trip import Report, Trip

CALLBACK_GRACE_S = 5.0  # a started prediction's first webhook comes at once; none by now = none will
HEALTH_EVERY_S = 5.0
logger = logging.getLogger(__name__)


def run_with_webhooks(container: Container, trip: Trip, receiver: CallbackReceiver,
                      grace_s: float) -> Generator[str, None, bool]:
    """Run the trip's prediction with progress by webhook, yielding output as it arrives.

    Returns False when no webhook came within `grace_s` of the container taking it (the
    container cannot reach the callback URL; the prediction was cancelled there), else True.
    """
    webhook, inbox = receiver.open(trip.id, sent_bytes=len(json.dumps(trip.body)))
    try:
        body = {**trip.body, "webhook": webhook}
        if container.submit(trip, lambda: container.put(trip, body, {"Prefer": "respond-async"})) is None:
            return True  # canceled while waiting
        try:
            return (yield from _follow(container, trip, inbox, grace_s))
        finally:
            if not trip.ended:
                # Without webhooks nothing would confirm the cancel, so it is not waited for.
                container.cancel(trip, inbox, confirm=trip.heard)
    finally:
        receiver.discard(trip.id)


def _follow(container: Container, trip: Trip, inbox: queue.Queue, grace_s: float) -> Generator[str, None, bool]:
    """Yield output from webhooks until the end; returns False if none ever came."""
    accepted_at = last_check = time.monotonic()
    lost_since = None
    while not trip.ended:
        try:
            payload = inbox.get(timeout=POLL_S)
        except queue.Empty:
            now = time.monotonic()
            if trip.cancel.is_set():
                break
            if not trip.heard and now - accepted_at > grace_s:
                return False
            if now - last_check > HEALTH_EVERY_S:
                last_check = now
                lost_since = None if container.health() else lost_since or now
                if lost_since is not None and now - lost_since > container.unreachable_s:
                    trip.ended = True
                    logger.warning("lost the Cog container at %s: no answer for %g s", container.url,
                                   container.unreachable_s)
                    raise PredictionError(f"lost the Cog container: no answer for {container.unreachable_s:g} s")
            continue
        trip.heard = True
        yield from trip.apply(Report.from_json(payload))
    return True
