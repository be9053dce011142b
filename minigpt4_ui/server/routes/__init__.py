"""The HTTP surface: Replicate's /v1 API, one module per resource, assembled by `build_app`.

- predictions: create, list, get, cancel (`predictions.py`)
- models and versions (`models.py`)
- deployments and their predictions (`deployments.py`)
- files (`files.py`)
- the webhook signing secret (`webhook_secret.py`)
- server-sent event streams, which need no token (`streams.py`)

Errors are problem+json (`..problems`); request limits are `..http_helpers.BodyLimitMiddleware`
and, optionally, `..rate_limit.RateLimitMiddleware`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Callable

from fastapi import APIRouter, Depends, FastAPI

from .. import problems
from ..http_helpers import MAX_BODY_BYTES, BodyLimitMiddleware, body_too_large, token_checker
from ..rate_limit import RateLimitMiddleware, RateLimits
from ..services import Services
from . import deployments, files, models, predictions, streams, webhook_secret


def build_app(*, services: Services, token: str | None, rate_limits: RateLimits | None = None,
              lifespan: Callable[[FastAPI], AbstractAsyncContextManager] | None = None) -> FastAPI:
    """The FastAPI app over `services`; `token=None` turns authentication off."""
    app = FastAPI(title="MiniGPT-4 Studio predictions server", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    api = APIRouter(prefix="/v1", dependencies=[Depends(token_checker(token))])
    for module in (predictions, models, deployments, webhook_secret, files):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(streams.router, prefix="/v1")
    problems.install(app)
    if rate_limits and (rate_limits.create_per_minute or rate_limits.other_per_minute):
        app.add_middleware(RateLimitMiddleware, limits=rate_limits, token=token)
    upload_limit = services.max_file_bytes + files.FORM_OVERHEAD_BYTES
    app.add_middleware(BodyLimitMiddleware, limits={
        "/v1/files": (upload_limit, lambda: files.file_too_large(services.max_file_bytes))},
        default=(MAX_BODY_BYTES, body_too_large))
    return app
