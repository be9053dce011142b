"""Webhook delivery: filtered events, output/logs throttling, signed requests, final retries.

Per docs/replicate-api-rules.md ("Webhooks"): the body is the prediction as GET returns it; `start` and
`completed` are always sent when asked for; `output` and `logs` at most once per throttle
interval (the latest state wins); only the final (`completed`) webhook is retried, with backoff,
on a connection failure or a non-2xx answer. Redirects are not followed. Webhooks go only where
the server's `UrlPolicy` lets image URLs be fetched from, each within one wall-clock deadline.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import Callable

from ..shared import urlfetch
from ..shared.urlfetch import UrlPolicy
from ..shared.webhook_signature import signature_headers

EVENTS = ("start", "output", "logs", "completed")
DEFAULT_EVENTS = frozenset(EVENTS)  # Cog's default; Replicate's docs disagree (see the rules)
THROTTLE_S = 0.5
# Roughly a minute in all, as Replicate's "final retry … about 1 minute after" completion.
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
TIMEOUT_S = 10.0  # connect, send and answer, by the clock
USER_AGENT = "minigpt4-studio-webhooks/1"
logger = logging.getLogger(__name__)


def _message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


class Delivery:
    """The webhooks of one prediction, sent in order from their own thread."""

    def __init__(self, sender: "WebhookSender", *, url: str | None, events: frozenset[str],
                 completed_url: str | None, present: Callable[[dict], dict]):
        self._sender = sender
        self._url = url
        self._events = events
        self._completed_url = completed_url
        self._present = present
        self._cond = threading.Condition()
        self._start: dict | None = None
        self._latest: dict | None = None
        self._final: dict | None = None
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
        self._thread.start()

    def notify(self, kind: str, prediction: dict) -> None:
        """Queue an event; `prediction` must be a snapshot the caller no longer changes."""
        with self._cond:
            if kind == "completed":
                self._final = prediction
            elif kind == "start":
                self._start = prediction
            elif kind in self._events:
                self._latest = prediction
            else:
                return
            self._cond.notify_all()

    @property
    def active(self) -> bool:
        """Whether this delivery still has webhooks to send."""
        return self._thread.is_alive()

    def wake(self) -> None:
        """Make the delivery thread look at the sender's `stopping` flag now."""
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the last webhook to be sent."""
        self._thread.join(timeout)

    def _loop(self) -> None:
        last_intermediate = float("-inf")
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._start or self._latest or self._final
                                    or self._sender.stopping)
                if self._sender.stopping and not self._final:
                    return
                start, self._start = self._start, None
                latest = final = None
                if start is None:
                    if self._final is None and self._latest is not None:
                        # Throttle: wait out the interval unless the final state arrives first.
                        self._cond.wait_for(
                            lambda: self._final is not None or self._sender.stopping,
                            timeout=max(0.0, last_intermediate + self._sender.throttle
                                        - time.monotonic()))
                    if self._final is not None:  # the final state supersedes pending updates
                        final, self._latest = self._final, None
                    else:
                        latest, self._latest = self._latest, None
            if start is not None:
                if "start" in self._events and self._url:
                    self._sender.post(self._url, self._present(start))
                continue
            if latest is not None:
                if self._url:
                    self._sender.post(self._url, self._present(latest))
                last_intermediate = time.monotonic()
                continue
            if final is not None:
                body = self._present(final)
                if self._url and "completed" in self._events:
                    self._sender.post(self._url, body, retry=True)
                if self._completed_url:
                    self._sender.post(self._completed_url, body, retry=True)
                return


class WebhookSender:
    """Signs and posts webhooks for every prediction that asked for them."""

    def __init__(self, *, secret: str, policy: UrlPolicy = UrlPolicy(), throttle: float = THROTTLE_S,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS_S, timeout: float = TIMEOUT_S):
        self.secret = secret
        self.policy = policy
        self.throttle = throttle
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self.stopping = False
        self._stop = threading.Event()
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()

    def watch(self, *, url: str | None, events: frozenset[str], completed_url: str | None,
              present: Callable[[dict], dict]) -> Delivery:
        delivery = Delivery(self, url=url, events=events, completed_url=completed_url,
                            present=present)
        with self._lock:
            self._deliveries = [d for d in self._deliveries if d.active]
            self._deliveries.append(delivery)
        return delivery

    def post(self, url: str, prediction: dict, *, retry: bool = False) -> bool:
        """Send one signed message; the final one is retried on failure. True if delivered."""
        body = json.dumps(prediction).encode()
        message_id = _message_id()  # the same across retries, so receivers can de-duplicate
        delays = self.retry_delays if retry else ()
        for attempt in range(len(delays) + 1):
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                       **signature_headers(self.secret, message_id, body)}
            try:
                # Closing the server cuts off a delivery in progress (the stop event).
                status = urlfetch.post(url, body, headers=headers, policy=self.policy,
                                       timeout=self.timeout, cancel=self._stop)
                if 200 <= status < 300:
                    return True
                reason = f"HTTP {status}"
            except urlfetch.FetchError as exc:
                reason = exc.reason
            if attempt < len(delays):
                logger.info("webhook %s for %s failed (%s); retrying in %g s", message_id,
                            prediction.get("id"), reason, delays[attempt])
                if self._stop.wait(delays[attempt]):
                    break
        logger.warning("webhook %s for %s was not delivered", message_id, prediction.get("id"))
        return False

    def close(self, grace: float = 3.0) -> None:
        """Give pending deliveries a moment, then stop retrying and waiting."""
        deadline = time.monotonic() + grace
        with self._lock:
            deliveries = list(self._deliveries)
        for delivery in deliveries:
            delivery.join(max(0.0, deadline - time.monotonic()))
        self.stopping = True
        self._stop.set()
        for delivery in deliveries:
            delivery.wake()
            delivery.join(1.0)
