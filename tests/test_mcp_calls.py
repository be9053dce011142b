"""The MCP call stamp: only the app writes it, on the MCP endpoint only, and `of` reads it back."""

from __future__ import annotations

import functools

from starlette.requests import Request

from minigpt4_ui.app import mcp_calls
from minigpt4_ui.app.guard import request_visitor
from .own_loop import run


def _scope(path: str, headers: list[tuple[bytes, bytes]], method: str = "POST", peer: str = "203.0.113.7") -> dict:
    return {"type": "http", "method": method, "path": path, "headers": headers, "client": (peer, 50000),
            "query_string": b"", "root_path": ""}


def _through(scope: dict, hops: int = 0) -> Request:
    """The request the app behind the middleware sees."""
    seen = []

    async def app(inner_scope, receive, send):
        seen.append(Request(inner_scope))

    middleware = mcp_calls.McpCalls(app, visitor_of=functools.partial(request_visitor, hops=hops))
    run(middleware(scope, None, None))
    return seen[0]


def test_an_mcp_request_is_stamped_with_its_visitor_and_a_call_of_its_own():
    first = mcp_calls.of(_through(_scope("/gradio_api/mcp/", [(b"host", b"app")])))
    second = mcp_calls.of(_through(_scope("/gradio_api/mcp/", [(b"host", b"app")])))
    assert first.visitor == second.visitor == "203.0.113.7"
    assert first.call_id != second.call_id
    behind_proxy = _through(_scope("/gradio_api/mcp/", [(b"x-forwarded-for", b"198.51.100.9")], peer="10.0.0.2"), hops=1)
    assert mcp_calls.of(behind_proxy).visitor == "198.51.100.9"
    # What the loopback carries on into the queue is read back as that visitor.
    assert request_visitor(behind_proxy, hops=0) == "198.51.100.9"


def test_a_forged_stamp_is_replaced_on_the_mcp_endpoint_and_ignored_elsewhere():
    forged = [(mcp_calls.HEADER.encode(), b"guess 1234 198.51.100.1")]
    stamped = _through(_scope("/gradio_api/mcp/", list(forged)))
    assert mcp_calls.of(stamped).visitor == "203.0.113.7"
    assert len(stamped.headers.getlist(mcp_calls.HEADER)) == 1
    joined = _through(_scope("/gradio_api/queue/join", list(forged)))
    assert mcp_calls.of(joined) is None and request_visitor(joined, hops=0) == "203.0.113.7"
    assert mcp_calls.of(_through(_scope("/gradio_api/mcp/", [], method="GET"))) is None


def test_a_refusal_is_kept_for_its_call_only_and_bounded():
    stamped = _through(_scope("/gradio_api/mcp/", []))
    call = mcp_calls.of(stamped)
    request = Request(_scope("/gradio_api/queue/join", [(mcp_calls.HEADER.encode(),
                                                         stamped.headers[mcp_calls.HEADER].encode())]))
    mcp_calls.refused(request, "You already have 1 requests waiting or running")
    mcp_calls.refused(Request(_scope("/gradio_api/queue/join", [])), "not an MCP call")
    assert len(mcp_calls.REFUSALS) == 1
    assert mcp_calls.REFUSALS.take(call.call_id).startswith("You already have")
    assert mcp_calls.REFUSALS.take(call.call_id) is None  # read once
    kept = mcp_calls.Refusals(limit=3)
    for index in range(5):
        kept.keep(f"call-{index}", "left behind")
    assert len(kept) == 3 and kept.take("call-1") is None and kept.take("call-4") == "left behind"

