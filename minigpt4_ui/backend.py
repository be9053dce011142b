"""Which predictions API the app talks to: Replicate, a server the user named, or the embedded one."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from dataclasses import dataclass, field, replace
from typing import Callable

from .replicate_api import Client
from .settings import DEFAULT_BASE_URL, Settings

log = logging.getLogger(__name__)


@dataclass
class Backend:
    """A ready client plus what the UI should tell the user about it."""

    client: Client
    embedded: bool
    notice: str
    close: Callable[[], None] = field(default=lambda: None)

    def client_for(self, visitor_token: str | None) -> Client:
        """The host's client, or one on Replicate with a visitor's own token (never stored)."""
        if not visitor_token or not visitor_token.strip():
            return self.client
        base_url = DEFAULT_BASE_URL if self.embedded else self.client.base_url
        return Client(token=visitor_token.strip(), base_url=base_url, model=self.client.model,
                      version=self.client.version, timeout=self.client.timeout)


MODEL_PAGE = "https://replicate.com/daanelson/minigpt-4"
# One line for visitors; what a host does to change it is in the README ("Use MiniGPT-4").
EMBEDDED_NOTICE = (
    "**Demo mode:** a built-in stand-in answers by measuring the image; it is not "
    f"[MiniGPT-4]({MODEL_PAGE}). To ask MiniGPT-4, add your Replicate token under *Settings and history*."
)


def local_model_notice(name: str) -> str:
    return (f"**Local model:** answers come from `{name}`, a small open model on this machine, not "
            f"[MiniGPT-4]({MODEL_PAGE}). To ask MiniGPT-4, add your Replicate token under *Settings and history*.")


def connect(settings: Settings) -> Backend:
    """Use Replicate (or REPLICATE_BASE_URL) when configured, else start the embedded server.

    The embedded server runs `settings.local_model` when one is given (loaded now, so a missing
    model fails at start-up with LocalModelError), else the built-in predictor.
    """
    if settings.token or settings.base_url != DEFAULT_BASE_URL:
        if settings.local_model:
            log.warning("a predictions API is configured, so the local model %s is not used",
                        settings.local_model)
        where = "Replicate" if settings.base_url == DEFAULT_BASE_URL else f"`{settings.base_url}`"
        notice = f"**Backend:** `{settings.model}` on {where}."
        return Backend(client=Client.from_settings(settings), embedded=False,
                       notice=notice)

    from .server import start_background  # only the embedded case needs the server code

    options: dict = {"tokens_per_second": settings.tokens_per_second}
    notice = EMBEDDED_NOTICE
    if settings.local_model:
        from .server.predictors.smolvlm import SmolVLMPredictor

        predictor = SmolVLMPredictor(settings.local_model, allow_download=settings.allow_download)
        predictor.load()
        # A real model sets its own pace.
        options = {"predictor": predictor, "tokens_per_second": None}
        notice = local_model_notice(predictor.name)
    # A per-process token keeps other local users from driving the embedded server.
    token = secrets.token_urlsafe(24)
    # Predictions go to a temporary file, not memory: each one keeps its ~60 KB image input, which
    # in RAM grew the app by that much per question for as long as it ran.
    folder = tempfile.TemporaryDirectory(prefix="minigpt4-predictions-")
    server = start_background(host="127.0.0.1", port=0, token=token,
                              db_path=os.path.join(folder.name, "predictions.sqlite3"), **options)

    def close() -> None:
        server.close()
        folder.cleanup()

    local = replace(settings, token=token, base_url=server.url)
    return Backend(client=Client.from_settings(local), embedded=True, notice=notice, close=close)
