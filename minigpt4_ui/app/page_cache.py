"""The page, rendered once for each address it is reached at rather than once per visit.

Gradio renders its page for every visitor: it deep-copies the app's whole config (148 components,
160 KB of JSON here) and rewrites the URLs in it, about 25 ms of the process's time per visit,
while a room of new visitors waits for their first words behind it. The page depends only on
the config, fixed once the app runs, and on the address it is served at (Gradio takes that from
the request: scheme, Host, X-Forwarded-Host, X-Forwarded-Proto), so it is kept per address. The
app has no login; a page that depended on who asked could not be kept like this.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Awaitable, Callable

# Addresses kept (each page ~160 KB): a host has one or two; a client that makes up Host headers
# only pushes the oldest out.
MAX_PAGES = 16
_ADDRESS_HEADERS = (b"host", b"x-forwarded-host", b"x-forwarded-proto", b"x-gradio-server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class PageCache:
    """ASGI middleware: GET and HEAD of the page itself (no query) are answered from the page
    rendered last for the same address."""

    def __init__(self, app):
        self.app = app
        self._pages: OrderedDict[tuple, list[dict]] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or scope["path"] != "/"
                or scope.get("query_string")):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        key = (scope["method"], scope.get("scheme"), scope.get("root_path"),
               *(headers.get(name) for name in _ADDRESS_HEADERS))
        page = self._pages.get(key)
        if page is None:
            page = await self._render(scope, receive, send)
            if page is not None:
                self._pages[key] = page
                while len(self._pages) > MAX_PAGES:
                    self._pages.popitem(last=False)
            return
        self._pages.move_to_end(key)
        for message in page:
            await send(message)

    async def _render(self, scope: Scope, receive: Receive, send: Send) -> list[dict] | None:
        """Let Gradio answer; its messages when they make a page worth keeping (a 200 with no cookie)."""
        messages: list[dict] = []

        async def keep(message: dict) -> None:
            messages.append(message)
            await send(message)

        await self.app(scope, receive, keep)
        start = messages[0] if messages else {}
        if start.get("status") != 200 or any(name.lower() == b"set-cookie" for name, _ in start.get("headers", [])):
            return None
        return messages
