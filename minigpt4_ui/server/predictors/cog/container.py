"""Reaching a Cog container over its HTTP API: requests, waiting through its boot and busy slots,
its health, and cancelling a prediction in it.

What a prediction's log and error say reaches visitors, so it names "the Cog container", never its
address; the host's log (`logger`) has the address.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Callable

import requests

from .. import PredictionError
from .trip import COG_TERMINAL, Trip

CONNECT_S = 5.0
POLL_S = 0.1  # how often a waiting question retries a busy or booting container
UNREACHABLE_S = 30.0  # how long an unreachable container is retried (e.g. while it starts)
WAIT_S = 20 * 60.0  # how long a question waits for setup or a free slot (weights take minutes)
CANCEL_CONFIRM_S = 5.0
CANCEL_ATTEMPTS = 6
RUNNING = object()  # a synchronous PUT the container accepted and is working on
logger = logging.getLogger(__name__)


class Container:
    """The container at `url`, as this process reaches it (one HTTP session for all predictions).

    `unreachable_s` and `wait_s` bound how long a prediction is retried against an unreachable
    container and a booting or busy one.
    """

    def __init__(self, url: str, *, unreachable_s: float, wait_s: float):
        self.url = url
        self.unreachable_s = unreachable_s
        self.wait_s = wait_s
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def get(self, path: str) -> requests.Response | None:
        """GET `path`; None when the container cannot be reached."""
        try:
            return self._session.get(f"{self.url}{path}", timeout=CONNECT_S)
        except requests.RequestException:
            return None

    def health(self) -> dict:
        """The container's `/health-check` document; {} when it does not answer with one."""
        response = self.get("/health-check")
        try:
            return response.json() if response is not None and response.ok else {}
        except ValueError:
            return {}

    def put(self, trip: Trip, body: dict, headers: dict, read_timeout: float | None = CONNECT_S
            ) -> requests.Response:
        """PUT the trip's prediction with `body`."""
        return self._session.put(f"{self.url}/predictions/{trip.id}", json={"id": trip.id, **body},
                                 headers={**headers, **_connection_header(trip)},
                                 timeout=(CONNECT_S, read_timeout))

    def submit(self, trip: Trip, attempt: Callable[[], object]) -> object:
        """Retry `attempt` through unreachability, setup and busy slots; None if canceled.

        Returns what `attempt` returned once the container took the prediction (a response, or
        RUNNING). Raises PredictionError when the container refuses it or waiting runs out.
        """
        unreachable_since = waiting_since = None
        waited_for_setup = False  # its setup logs are shown once it takes the prediction
        while not trip.cancel.is_set():
            try:
                response = attempt()
            except requests.RequestException as exc:
                unreachable_since = unreachable_since or time.monotonic()
                self._still_unreachable(trip, exc, since=unreachable_since)
                # A container that is not listening yet may be booting: its setup can end before
                # the first answer, so no 503 would ever say it was setting up.
                waited_for_setup = True
                trip.cancel.wait(POLL_S)
                continue
            unreachable_since = None
            if response is RUNNING:
                return response
            trip.new_connection = response.status_code == 409
            if response.status_code in (409, 503):
                waiting_since = waiting_since or time.monotonic()
                waited_for_setup = self._still_waiting(trip, response.status_code, since=waiting_since) \
                    or waited_for_setup
                trip.cancel.wait(POLL_S)
                continue
            _check_taken(response)
            if waited_for_setup:
                self._log_setup(trip)
            return response
        return None

    def _still_unreachable(self, trip: Trip, exc: Exception, *, since: float) -> None:
        why = reason(exc)
        if time.monotonic() - since > self.unreachable_s:
            logger.warning("could not reach the Cog container at %s for %g s (%s)", self.url,
                           self.unreachable_s, why)
            raise PredictionError(f"could not reach the Cog container for {self.unreachable_s:g} s "
                                  f"({why}); the host's log says where it was looked for") from None
        trip.note("unreachable", f"Cannot reach the Cog container ({why}); retrying for up to "
                                 f"{self.unreachable_s:g} s.")

    def _still_waiting(self, trip: Trip, status: int, *, since: float) -> bool:
        """After a 409 or 503: True while the container sets up; raises once waiting runs out."""
        setting_up = False
        if status == 409:
            trip.note("busy", "The model is busy: every prediction slot of the Cog container is in "
                              "use. Your question is sent as soon as one frees.")
        else:
            setting_up = self._setting_up(trip)
        if time.monotonic() - since > self.wait_s:
            what = "busy" if status == 409 else "not ready"
            raise PredictionError(f"the Cog container was still {what} after {self.wait_s:g} s")
        return setting_up

    def _setting_up(self, trip: Trip) -> bool:
        """After a 503: True while the container sets up; raises if setup failed for good."""
        health = self.health()
        status = health.get("status")
        setup = health.get("setup") or {}
        if status == "SETUP_FAILED":
            raise PredictionError("the Cog container failed to set up the model:\n"
                                  f"{(setup.get('logs') or '').strip()}")
        if status == "DEFUNCT":
            raise PredictionError("the Cog container is defunct (its worker stopped); restart it")
        if status in ("STARTING", "UNHEALTHY"):
            started_at = (setup.get("started_at") or "")[:19].replace("T", " ")
            trip.note("setup", f"The Cog container is setting up the model (status {status}, since "
                               f"{started_at} UTC); a cold start can take minutes. Your question is "
                               "sent when it is ready.")
            return True
        return False

    def _log_setup(self, trip: Trip) -> None:
        logs = (self.health().get("setup") or {}).get("logs")
        if logs:
            trip.log("Container setup logs:\n" + logs.rstrip("\n") + "\n")

    def cancel(self, trip: Trip, answers: queue.Queue, *, confirm: bool) -> None:
        """Cancel the trip's prediction and (if `confirm`) wait until `answers` says it ended:
        a terminal webhook, or the synchronous PUT's answer."""
        for _ in range(CANCEL_ATTEMPTS):
            try:
                response = self._session.post(f"{self.url}/predictions/{trip.id}/cancel",
                                              headers=_connection_header(trip), timeout=CONNECT_S)
            except requests.RequestException as exc:
                logger.warning("could not cancel %s in %s: %s", trip.id, self.url, reason(exc))
                return
            if response.status_code != 404:
                break
            # 404: it has ended, or a load balancer sent the cancel to another instance.
            trip.new_connection = True
            if ended(answers, timeout=POLL_S):
                return
        if confirm:
            ended(answers, timeout=CANCEL_CONFIRM_S)


def ended(answers: queue.Queue, *, timeout: float) -> bool:
    """Wait for a terminal webhook or the synchronous PUT's answer."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            answer = answers.get(timeout=remaining)
        except queue.Empty:
            return False
        if not isinstance(answer, dict) or answer.get("status") in COG_TERMINAL:
            return True
    return False


def refused(response: requests.Response) -> PredictionError:
    """The error for a container's answer that is not a success."""
    logger.warning("the Cog container answered %s: %s", response.status_code, response.text[:300])
    return PredictionError(f"the Cog container answered {response.status_code}: {response.text[:300]}")


def _check_taken(response: requests.Response) -> None:
    if response.status_code == 422:
        raise PredictionError(f"the Cog container rejected the input: {_validation_detail(response)}")
    if response.status_code >= 400:
        raise refused(response)


def _connection_header(trip: Trip) -> dict:
    return {"Connection": "close"} if trip.new_connection else {}


def _validation_detail(response: requests.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])[2:])) or 'input'}: {d.get('msg')}"
                         for d in detail if isinstance(d, dict))
    return str(detail)


def reason(exc: Exception) -> str:
    """A connection failure in a few words, with no address in them."""
    if isinstance(exc, requests.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        return "connection refused" if "refused" in text.lower() else "connection failed"
    return type(exc).__name__
