"""Optional request limits per minute, answered with 429 as Replicate does (`ratelimit-*`
headers, a digits-only `Retry-After`)."""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass

from .http_helpers import authorized


@dataclass(frozen=True)
class RateLimits:
    """Requests per minute per token (or client address) before 429s; None means no limit.

    Replicate's defaults are 600/min for creating predictions and 3000/min for the rest.
    """

    create_per_minute: int | None = None
    other_per_minute: int | None = None


class RateLimitMiddleware:
    """Token buckets for the server's token, or per client address for anyone else: a full
    minute's budget may burst, then it refills evenly. Adds `ratelimit-*` headers; answers 429
    with a digits-only `Retry-After`. Callers cannot mint buckets by varying their header; past
    MAX_BUCKETS the least recently seen is forgotten (a fresh bucket is a full one)."""

    MAX_BUCKETS = 10_000

    def __init__(self, app, limits: RateLimits, token: str | None = None):
        self.app = app
        self.limits = limits
        self.token = token
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # -> (tokens, updated)

    def _kind(self, method: str, path: str) -> str:
        if method == "POST" and (path == "/v1/predictions"
                                 or re.fullmatch(r"/v1/models/[^/]+/[^/]+/predictions", path)):
            return "create"
        return "other"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        kind = self._kind(scope["method"], scope["path"])
        limit = self.limits.create_per_minute if kind == "create" else self.limits.other_per_minute
        if not limit:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        who = ("token" if self.token and authorized(header, self.token)
               else (scope.get("client") or ("?",))[0])
        key = (who, kind)
        rate = limit / 60.0
        moment = time.monotonic()
        tokens, updated = self._buckets.pop(key, (float(limit), moment))
        tokens = min(float(limit), tokens + (moment - updated) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, moment)  # re-inserted: the dict is in order of last use
        if len(self._buckets) > self.MAX_BUCKETS:
            del self._buckets[next(iter(self._buckets))]
        wait = max(1, math.ceil((1.0 - tokens) / rate)) if tokens < 1.0 else 1
        extra = [(b"ratelimit-limit", str(limit).encode()),
                 (b"ratelimit-remaining", str(int(tokens)).encode()),
                 (b"ratelimit-reset", str(wait).encode())]
        if not allowed:
            body = json.dumps({"title": "Too Many Requests", "status": 429, "detail":
                               f"Request was throttled. Your rate limit resets in ~{wait}s."}).encode()
            await send({"type": "http.response.start", "status": 429, "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(wait).encode()), *extra]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
