"""What every request to the app meets before Gradio reads it: a cap on the size and shape of its
body, and a page policy under which nothing the page shows can make the browser fetch elsewhere.

Gradio sets no limit on a request body (`max_file_size` covers uploads only) and parses a JSON
body whole, on the server's one event loop: 56 MB of chat messages stalled every visitor for 40 s.
Here a body is counted as it arrives and refused at the cap, before anything parses it; a JSON
body is then refused when it nests deeper or holds more values than any page or client sends.
What reaches the log about a request is bounded too.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, TextIO

# The largest legitimate JSON body is a chat at its length limit (chat.MAX_QUESTIONS questions of
# conversation.MAX_PROMPT_CHARS, their answers and status blocks: about 3.5 MB) or an image sent
# as a data: URI by a script; 8 MB holds either. Images from the page travel as uploads.
MAX_BODY_BYTES = 8_000_000
MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 20_000  # a chat at its limit holds about 5,000
# What one write to the log may hold: Gradio prints a validation error in full, one line per
# faulty value, so a forged body of 20,000 values would write megabytes.
MAX_LOG_WRITE = 4_000
UPLOAD_PATH = "/gradio_api/upload"
UPLOAD_SLACK = 64_000  # the multipart envelope around one file

# Images and media only from the app itself (and data:/blob: ones it makes): an answer, an error
# text or a prompt that slipped an image past the markdown rules still cannot make a browser fetch.
CONTENT_SECURITY_POLICY = ("img-src 'self' data: blob:; media-src 'self' data: blob: mediastream:; "
                           "object-src 'none'")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class RequestLimits:
    """ASGI middleware: body caps for every route in, and the page policy on every response."""

    def __init__(self, app, *, max_upload_bytes: int):
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_policy(send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        upload = path.rstrip("/").endswith(UPLOAD_PATH)
        cap = self.max_upload_bytes + UPLOAD_SLACK if upload else MAX_BODY_BYTES
        what = (f"An upload is limited to {self.max_upload_bytes // 1_000_000} MB" if upload else
                f"A request to this app is limited to {MAX_BODY_BYTES // 1_000_000} MB")
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            await _refuse(send, 413, f"{what}; this one is larger.")
            return
        if upload:  # Gradio streams multipart to disk; only its size is ours to check
            await self.app(scope, _counted(receive, cap), send)
            return
        body = await _read(receive, cap)
        if body is None:
            await _refuse(send, 413, f"{what}; this one is larger.")
            return
        form = (_header(scope, b"content-type") or "").startswith(("multipart/", "application/x-www-form"))
        problem = None if form else _json_problem(body)  # FastAPI reads a body of no stated type as JSON
        if problem:
            await _refuse(send, 400, problem)
            return
        await self.app(scope, _replay(body, receive), send)


def _json_problem(body: bytes) -> str | None:
    """Why a JSON body is refused, or None; walked without recursion, so depth cannot crash it."""
    if not body:
        return None
    try:
        value = json.loads(body)
    except RecursionError:
        return f"The request body nests deeper than {MAX_JSON_DEPTH} levels."
    except ValueError:
        return "The request body is not valid JSON."
    stack, values = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        values += 1
        if depth > MAX_JSON_DEPTH:
            return f"The request body nests deeper than {MAX_JSON_DEPTH} levels."
        if values > MAX_JSON_VALUES:
            return f"The request body holds more than {MAX_JSON_VALUES:,} values."
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1").strip()
    return None


async def _read(receive: Receive, cap: int) -> bytes | None:
    """The whole body, or None as soon as it passes `cap` (the rest is never read)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()  # e.g. the client's disconnect, for streaming responses
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return replay


def _counted(receive: Receive, cap: int) -> Receive:
    """`receive` that ends the body as a disconnect once it passes `cap` (a chunked upload)."""
    size = 0

    async def counted() -> dict:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > cap:
                return {"type": "http.disconnect"}
        return message
    return counted


def _with_policy(send: Send) -> Send:
    async def send_with_policy(message: dict) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-security-policy"]
            headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
            message = {**message, "headers": headers}
        await send(message)
    return send_with_policy


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BoundedLog:
    """A text stream (the app's stderr) that keeps the first MAX_LOG_WRITE characters of each write."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        if len(text) > MAX_LOG_WRITE:
            text = f"{text[:MAX_LOG_WRITE]}… ({len(text) - MAX_LOG_WRITE:,} more characters not logged)\n"
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
