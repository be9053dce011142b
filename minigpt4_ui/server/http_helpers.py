"""Small steps every route shares: the address a request reached, authentication, reading JSON
within its limits (size, nesting, valid Unicode), one page of a collection, and form fields."""

from __future__ import annotations

import hmac
import json
from itertools import compress
from typing import Callable

from fastapi import Request
from starlette.datastructures import UploadFile

from .problems import ProblemResponse, too_large
from .store import CursorError, Page

MAX_BODY_BYTES = 16_000_000  # a 10 MB image as base64 plus the rest of the body
# Far deeper than any input, filter or metadata this API takes, and below the depth where
# encoding an answer fails (Pydantic's serializer refuses 255 levels): a value stored deeper
# broke every later listing of its collection.
MAX_JSON_DEPTH = 64
_TOO_DEEP = f"is nested more than {MAX_JSON_DEPTH} levels deep"
_CONTAINERS = frozenset({dict, list})


def base_url(request: Request) -> str:
    """This server's address as the request reached it, without a trailing slash."""
    return str(request.base_url).rstrip("/")


def authorized(header: str, token: str) -> bool:
    """Whether an Authorization header carries `token` (`Bearer` or `Token` scheme)."""
    scheme, _, given = header.strip().partition(" ")
    return scheme.lower() in ("bearer", "token") and hmac.compare_digest(
        given.strip().encode(), token.encode())


def token_checker(token: str | None) -> Callable[[Request], None]:
    """A route dependency that answers 401 unless the request carries `token` (None: open)."""

    def require_token(request: Request) -> None:
        if token and not authorized(request.headers.get("authorization", ""), token):
            raise ProblemResponse(401, "Unauthenticated",
                                  "You did not pass a valid authentication token")

    return require_token


def body_too_large() -> ProblemResponse:
    """413 for a JSON body over MAX_BODY_BYTES."""
    return too_large(f"The request body is larger than {MAX_BODY_BYTES // 1_000_000} MB")


def parse_json(raw: bytes | str) -> object:
    """JSON text as Python values; raises ValueError saying why in words that follow the name
    of what was parsed ("is not valid JSON: …", "is nested more than 64 levels deep", …)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None
    except ValueError as exc:
        raise ValueError(f"is not valid JSON: {exc}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise ValueError(_TOO_DEEP)
    try:
        # Refused here, not when the answer is written: an unpaired surrogate cannot be UTF-8.
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise ValueError("has a string with an unpaired UTF-16 surrogate (\\ud800-\\udfff); "
                         "send text as valid Unicode") from None
    return value


def _depth(value: object) -> int:
    """How many arrays and objects deep `value` nests, up to MAX_JSON_DEPTH + 1."""
    # Level by level, with the scalars filtered out in C: a 16 MB array of 8 million numbers is
    # checked in 0.4 s, half its parse (a Python test of each value took 1.8 s).
    level, depth = [value], 0
    while depth <= MAX_JSON_DEPTH:
        level = list(compress(level, map(_CONTAINERS.__contains__, map(type, level))))
        if not level:
            break
        depth += 1
        children: list = []
        for container in level:
            children.extend(container.values() if type(container) is dict else container)
        level = children
    return depth


async def json_body(request: Request) -> dict:
    """The request body as a JSON object; 413 over MAX_BODY_BYTES, 400 for anything but an object."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise body_too_large()
    raw = await request.body()  # BodyLimitMiddleware stops a longer one while it is read
    try:
        body = parse_json(raw)
    except ValueError as exc:
        raise ProblemResponse(400, "Invalid JSON", f"The request body {exc}") from None
    if not isinstance(body, dict):
        raise ProblemResponse(400, "Invalid JSON", "The request body must be a JSON object")
    return body


def listing(request: Request, *, collection: str, fetch: Callable[[], Page],
            present: Callable[[dict], dict]) -> dict:
    """One page of a collection in Replicate's shape, with absolute `next`/`previous` URLs."""
    try:
        page = fetch()
    except CursorError as exc:
        raise ProblemResponse(400, "Invalid cursor", str(exc)) from exc
    link = f"{base_url(request)}/v1/{collection}?cursor="
    return {"next": page.next and link + page.next,
            "previous": page.previous and link + page.previous,
            "results": [present(item) for item in page.results]}


async def form_text(value: object) -> str | None:
    """A form field's text; the JS client sends `metadata` as a JSON blob part, not a field."""
    if isinstance(value, UploadFile):
        return (await value.read()).decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


class BodyLimitMiddleware:
    """Stops reading a request body once it passes its path's limit (Content-Length may be absent
    or lie), raising the ProblemResponse made for that path; the error handlers answer it."""

    def __init__(self, app, limits: dict[str, tuple[int, Callable[[], ProblemResponse]]],
                 default: tuple[int, Callable[[], ProblemResponse]]):
        self.app = app
        self.limits = limits
        self.default = default

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, error = self.limits.get(scope["path"].rstrip("/"), self.default)
        received = 0

        async def capped_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise error()
            return message

        await self.app(scope, capped_receive, send)
