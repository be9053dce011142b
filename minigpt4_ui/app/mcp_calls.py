"""MCP tool calls under the app's rules: who each call comes from, its own session, and its
cancellation.

Gradio serves the public endpoints as MCP tools at /gradio_api/mcp/ and runs a queued tool by
calling its own app back over loopback with gradio_client, copying the MCP request's headers. Left
so, every agent would be one visitor at 127.0.0.1 (one share of the queue and one hourly allowance
for all of them, unless a proxy's X-Forwarded-For came along) and one session (a second call, from
anyone, refused while the first runs); and an agent that gives up on a call would leave its
prediction running, and paid for, to the end.

So `McpCalls` (ASGI middleware) stamps each MCP request with a header only this process can write:
a call id and the visitor as the app counts visitors. The loopback carries it into the queue and
the handlers, where `of(request)` reads it back. `install(demo)` makes a tool call that ends early
(its client went away) cancel its Gradio job, whose generator then cancels the prediction, and
drops a hint from the tools' descriptions that does not apply here.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from typing import Any, AsyncIterator, Awaitable, Callable, NamedTuple

import anyio
from gradio_client.utils import QueueError
from starlette.requests import Request

HEADER = "x-minigpt4-mcp-call"
_HEADER_BYTES = HEADER.encode()
MCP_PATH = "/gradio_api/mcp"
# Never leaves the process: the loopback that carries it goes from the app to itself.
_SECRET = secrets.token_urlsafe(32)
MAX_REFUSALS_KEPT = 1000


class McpCall(NamedTuple):
    """One MCP tool call: its own id (its session, for the one-answer-per-session rule) and its
    visitor (for the queue share and the hourly allowance)."""

    call_id: str
    visitor: str


def of(request: Any) -> McpCall | None:
    """The MCP call a request belongs to (a Starlette or Gradio request), or None: a header
    anyone else wrote is ignored."""
    headers = getattr(request, "headers", None)
    value = headers.get(HEADER) if headers is not None else None
    if not value:
        return None
    secret, _, rest = value.partition(" ")
    call_id, _, visitor = rest.partition(" ")
    if not (hmac.compare_digest(secret, _SECRET) and call_id and visitor):
        return None
    return McpCall(call_id, visitor)


class Refusals:
    """Why the queue refused MCP calls' jobs, by call id, until each call reads its own; at most
    `limit`, the oldest dropped first (calls whose client left before reading theirs)."""

    def __init__(self, limit: int = MAX_REFUSALS_KEPT):
        self.limit = limit
        self._why: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._why)

    def keep(self, call_id: str, message: str) -> None:
        self._why[call_id] = message
        while len(self._why) > self.limit:
            self._why.pop(next(iter(self._why)))

    def take(self, call_id: str) -> str | None:
        """The call's refusal, forgotten once read; None when it has none."""
        return self._why.pop(call_id, None)


REFUSALS = Refusals()


def refused(request: Any, message: str) -> None:
    """Keep why the queue refused an MCP call's job: Gradio's loopback client turns any refusal
    into "Queue is full! Please try again.", and the call's answer says this instead."""
    call = of(request)
    if call is not None:
        REFUSALS.keep(call.call_id, message)


class McpCalls:
    """ASGI middleware: stamp each request to the MCP endpoint with a fresh call header naming its
    visitor (`visitor_of`, as the rest of the app counts visitors), in place of any it came with.
    Other requests pass untouched: the loopback's carry the stamp on, and a header anyone else
    wrote lacks the secret."""

    def __init__(self, app, *, visitor_of: Callable[[Request], str]):
        self.app = app
        self.visitor_of = visitor_of

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"].rstrip("/").startswith(MCP_PATH)):
            scope = {**scope, "headers": [(name, value) for name, value in scope["headers"]
                                          if name != _HEADER_BYTES]}
            visitor = self.visitor_of(Request(scope))  # (Starlette's Headers replaces the list)
            stamp = f"{_SECRET} {secrets.token_hex(8)} {visitor}".encode()
            scope["headers"] = [*scope["headers"], (_HEADER_BYTES, stamp)]
        await self.app(scope, receive, send)


def install(demo) -> Callable:
    """A lifespan (for launch's app_kwargs) that, once Gradio has made its MCP server, makes a tool
    call that ends early cancel its job and drops the upload hint. Does nothing when MCP is off."""
    @contextlib.asynccontextmanager
    async def lifespan(app) -> AsyncIterator[None]:
        server = getattr(demo, "mcp_server_obj", None)
        if server is not None:
            _cancel_when_abandoned(server)
            _without_upload_hint(server)
        yield

    return lifespan


def _without_upload_hint(server) -> None:
    """Drop the sentence Gradio adds to every tool with a file input, which sends agents to an
    `upload_file_to_gradio` tool that is not here: the image's own description says what it takes
    (an http(s) URL or a data: URI)."""
    describe = server.get_fn_description

    def get_fn_description(block_fn, tool_name):
        description, parameters = describe(block_fn, tool_name)
        return description.replace(server._file_data_tool_description, ""), parameters

    server.get_fn_description = get_fn_description


def _cancel_when_abandoned(server) -> None:
    """Replace the MCP server's two ways of waiting for a job by ones that, when the wait is
    cancelled (the client went away and the transport ended the call), cancel the job too, and
    that give a queue's refusal in the app's words."""
    with_progress = server._execute_tool_with_progress

    def call_id() -> str | None:
        call = of(server.mcp_server.request_context.request)
        return call.call_id if call else None

    async def wait_without_progress(job) -> list:
        # Gradio's own wait holds the call until the job ends; abandoned here, the thread
        # returns as soon as the cancelled job does.
        waiting = anyio.to_thread.run_sync(job.result, abandon_on_cancel=True)
        return [await _waited(job, waiting, call_id())]

    async def wait_with_progress(job, progress_token):
        return await _waited(job, with_progress(job, progress_token), call_id())

    server._execute_tool_without_progress = wait_without_progress
    server._execute_tool_with_progress = wait_with_progress


async def _waited(job, waiting: Awaitable, call_id: str | None):
    """Await `waiting`; if that is cancelled, cancel `job` in Gradio's queue (its generator is
    closed, which cancels its prediction) before letting the cancellation go on."""
    try:
        return await waiting
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(job.cancel)
        raise
    except QueueError:
        why = REFUSALS.take(call_id) if call_id else None
        if why is None:
            raise
        raise QueueError(why) from None
