"""Which predictions API the app talks to: Replicate, a server the user named, or the embedded one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Callable

from .replicate_api import Client
from .settings import DEFAULT_BASE_URL, Settings


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
                      version=self.client.version)


EMBEDDED_NOTICE = (
    "**Demo backend:** no `REPLICATE_API_TOKEN` is set, so answers come from the built-in "
    "predictor running inside this app. It reports what it can measure in the image (size, "
    "colours, brightness); it is not MiniGPT-4. To use MiniGPT-4 on Replicate, enter your own "
    "token under *Your Replicate token*, or have the host set `REPLICATE_API_TOKEN` (on a Hugging "
    "Face Space: Settings → Variables and secrets → New secret) and restart the app."
)


def connect(settings: Settings) -> Backend:
    """Use Replicate (or REPLICATE_BASE_URL) when configured, else start the embedded server."""
    if settings.token or settings.base_url != DEFAULT_BASE_URL:
        where = "Replicate" if settings.base_url == DEFAULT_BASE_URL else f"`{settings.base_url}`"
        notice = f"**Backend:** `{settings.model}` on {where}."
        return Backend(client=Client.from_settings(settings), embedded=False, notice=notice)

    from .server import start_background  # only the embedded case needs the server code

    # A per-process token keeps other local users from driving the embedded server.
    token = secrets.token_urlsafe(24)
    server = start_background(host="127.0.0.1", port=0, token=token,
                              tokens_per_second=settings.tokens_per_second)
    local = replace(settings, token=token, base_url=server.url)
    return Backend(client=Client.from_settings(local), embedded=True, notice=EMBEDDED_NOTICE,
                   close=server.close)
