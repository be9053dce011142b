"""What the routes work with, made once per app: the store, the runner, webhook delivery and the
settings they read; routes receive it as a FastAPI dependency (`Depends(services)`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from fastapi import Request

from ..shared.urlfetch import UrlPolicy
from .catalog import HOSTED, MINIGPT4, Deployment, HostedModel
from .prediction_object import now
from .predictors import Predictor
from .predictors.builtin import StandInPredictor
from .problems import not_found
from .runner import Runner
from .store import Store
from .webhook_delivery import WebhookSender


def stand_ins() -> dict[str, Predictor]:
    """The built-in stand-ins that answer for every hosted model but MiniGPT-4, by `owner/name`."""
    return {model.ref: StandInPredictor(model.spec)
            for model in HOSTED.values() if model is not MINIGPT4}


@dataclass
class Services:
    """The parts of one server and the settings its routes read.

    `policy` says where webhooks may go (the same addresses image URLs may be fetched from).
    `openapi_schema()` is the fronted model's own OpenAPI document, if it has one (a Cog
    container's); `stand_ins` answer for the other hosted models.
    """

    store: Store
    runner: Runner
    webhooks: WebhookSender
    policy: UrlPolicy
    page_size: int
    heartbeat_seconds: float
    file_ttl_s: float
    max_file_bytes: int
    openapi_schema: Callable[[], dict | None] = lambda: None
    stand_ins: dict[str, Predictor] = field(default_factory=stand_ins)
    deployments: dict[str, Deployment] = field(default_factory=dict)  # by `owner/name`
    _stopped: bool = False
    _closed: bool = False

    def prediction(self, prediction_id: str) -> dict:
        """A prediction's current state (live if running, else stored); 404 if unknown."""
        prediction = self.runner.live(prediction_id) or self.store.get(prediction_id)
        if prediction is None:
            raise not_found()
        return prediction

    def deployment(self, owner: str, name: str) -> Deployment:
        """The deployment `owner/name`; 404 if this server has none of that name."""
        deployment = self.deployments.get(f"{owner}/{name}")
        if deployment is None:
            raise not_found()
        return deployment

    def file(self, file_id: str) -> dict:
        """A file object that has not expired; 404 otherwise."""
        file = self.store.get_file(file_id, now=now())
        if file is None:
            raise not_found()
        return file

    def stop_work(self) -> None:
        """Cancel running predictions (so open streams end) and finish webhook deliveries; safe
        to repeat."""
        if self._stopped:
            return
        self._stopped = True
        self.runner.close()
        self.webhooks.close()

    def close(self) -> None:
        """The one shutdown sequence: stop the work, then close the database; safe to repeat."""
        if self._closed:
            return
        self._closed = True
        self.stop_work()
        self.store.close()


def hosted(owner: str, name: str) -> HostedModel:
    """The hosted model `owner/name`; 404 if this server does not host it."""
    model = HOSTED.get(f"{owner}/{name}")
    if model is None:
        raise not_found()
    return model


def services(request: Request) -> Services:
    """The route dependency that hands a handler its app's Services."""
    return request.app.state.services
