"""The embedded Replicate-compatible predictions server (`python -m minigpt4_ui.server`).

The app talks HTTP to it exactly as to api.replicate.com; the rules it follows are in
docs/replicate-api-rules.md. It imports nothing from the app half (see docs/architecture.md).
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from functools import partial
from typing import AsyncIterator, Callable, Iterable

import uvicorn
from fastapi import FastAPI

from ..shared.urlfetch import UrlPolicy
from ..shared.webhook_signature import new_secret
from . import catalog
from .image_input import read_image
from .prediction_object import now
from .predictors import Predictor
from .predictors.builtin import BuiltinPredictor
from .rate_limit import RateLimits
from .routes import build_app
from .routes.files import FILE_TTL_S, MAX_FILE_BYTES
from .runner import Runner
from .services import Services, stand_ins
from .store import Store
from .webhook_delivery import RETRY_DELAYS_S, THROTTLE_S, WebhookSender

__all__ = ["RateLimits", "RunningServer", "create_app", "start_background"]


def create_app(*, token: str | None = None, db_path: str = ":memory:",
               tokens_per_second: float | None = None, page_size: int = 100,
               heartbeat_seconds: float = 15.0, predictor: Predictor | None = None,
               allow_hosts: Iterable[str] = (), webhook_secret: str | None = None,
               webhook_retry_delays: Iterable[float] = RETRY_DELAYS_S,
               webhook_throttle_seconds: float = THROTTLE_S,
               rate_limits: RateLimits | None = None, file_ttl_seconds: float = FILE_TTL_S,
               max_concurrent_predictions: int = 64,
               openapi_schema: Callable[[], dict | None] = lambda: None,
               model_predictors: dict[str, Predictor] | None = None,
               deployments: Iterable[str] = ()) -> FastAPI:
    """A ready app with its own store and runner; both close when the app's lifespan ends.

    `allow_hosts`: image URLs and webhooks on these hosts/IPs/CIDR networks may be reached even
    though they are loopback, private or link-local (default: only public addresses; `("*",)`
    allows all).
    `webhook_secret`: the `whsec_…` signing key (default: one generated and kept in the database).
    `rate_limits`: per-minute limits answered with 429 (default: none, as fits an embedded server).
    `openapi_schema()`: the predictor's model's own OpenAPI document, if any (a Cog container's).
    `model_predictors`: who answers other hosted models (`owner/name`) instead of their stand-ins.
    `deployments`: names (`owner/name`) of deployments of MiniGPT-4 to serve, as a host's on
    Replicate; ValueError for a name that is not `owner/name`.
    """
    started = now()
    named = {deployment.ref: deployment
             for deployment in (catalog.deployment(ref, created_at=started) for ref in deployments)}
    store = Store(db_path)
    policy = UrlPolicy(tuple(allow_hosts))
    read = partial(read_image, policy=policy,
                   read_file=lambda file_id: store.file_content(file_id, now=now()))
    runner = Runner(store=store, predictor=predictor or BuiltinPredictor(),
                    tokens_per_second=tokens_per_second, max_workers=max_concurrent_predictions,
                    read=read)
    webhooks = WebhookSender(secret=webhook_secret or store.meta("webhook_secret", new_secret()),
                             policy=policy, throttle=webhook_throttle_seconds,
                             retry_delays=tuple(webhook_retry_delays))

    services = Services(store=store, runner=runner, webhooks=webhooks, policy=policy,
                        page_size=page_size, heartbeat_seconds=heartbeat_seconds,
                        file_ttl_s=file_ttl_seconds, max_file_bytes=MAX_FILE_BYTES,
                        openapi_schema=openapi_schema,
                        stand_ins={**stand_ins(), **(model_predictors or {})}, deployments=named)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        services.close()

    return build_app(services=services, token=token, rate_limits=rate_limits, lifespan=lifespan)


def _uvicorn_config(app: FastAPI, *, host: str, port: int) -> uvicorn.Config:
    """Quiet uvicorn settings shared by the background server and the command line."""
    # No access log: request lines are noise here, and nothing sensitive should reach logs.
    # Idle keep-alive connections live longer than clients' pauses between calls (uvicorn's
    # default of 5 s made a client's next request race the server closing its connection).
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          timeout_graceful_shutdown=3, timeout_keep_alive=75)


class RunningServer:
    """A server running on a daemon thread; `url` is where it listens; `close()` stops it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, services: Services):
        self._server = server
        self._thread = thread
        self._services = services
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"

    def close(self) -> None:
        """Stop the work first (so open streams end and uvicorn need not wait them out), then
        uvicorn, whose lifespan ends with `Services.close`; join its thread."""
        self._services.stop_work()
        self._server.should_exit = True
        self._thread.join()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_background(host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                     db_path: str = ":memory:", tokens_per_second: float | None = None,
                     page_size: int = 100, heartbeat_seconds: float = 15.0,
                     predictor: Predictor | None = None, start_timeout: float = 10.0,
                     **options) -> RunningServer:
    """Start the server on a daemon thread and return once it accepts connections.

    `options` are create_app's further keywords (allow_hosts, webhook_secret, rate_limits, …).
    """
    app = create_app(token=token, db_path=db_path, tokens_per_second=tokens_per_second,
                     page_size=page_size, heartbeat_seconds=heartbeat_seconds, predictor=predictor,
                     **options)
    server = uvicorn.Server(_uvicorn_config(app, host=host, port=port))
    thread = threading.Thread(target=server.run, name="minigpt4-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the predictions server could not start on {host}:{port}")
        thread.join(0.02)
        start_timeout -= 0.02
        if start_timeout <= 0:
            server.should_exit = True
            raise RuntimeError("the predictions server did not start within the timeout")
    return RunningServer(server, thread, app.state.services)
