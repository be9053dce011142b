"""A share of Gradio's queue per visitor, so that one visitor cannot fill it for everyone.

Gradio caps the queue as a whole (`max_size`) but not who fills it: one script joined 200 events in
0.8 s and every other visitor got "Queue is full". Here a visitor (their address, as the hourly
allowance counts it; sessions cost nothing to make) may have at most a share of it waiting or
running at once; beyond that their event is refused in words and the others' are untouched.
"""

from __future__ import annotations

import collections
from typing import Callable

import fastapi

from . import mcp_calls


def per_visitor(max_queue: int) -> int:
    """A visitor's share: an eighth of the queue, and at least 4 (an answer, a Compare, a URL and a
    model being read at once). No cap on the queue means no cap on a visitor."""
    return max(4, max_queue // 8) if max_queue else 0


def share_queue(queue, *, limit: int, visitor_of: Callable[[fastapi.Request], str]) -> None:
    """Make `queue` (a Gradio Queue) refuse a visitor's event while `limit` of theirs are in it."""
    if not limit:
        return
    push = queue.push
    joining: collections.Counter[str] = collections.Counter()  # between the check and the queue

    def held_by(visitor: str) -> int:
        waiting = [event for line in queue.event_queue_per_concurrency_id.values() for event in line.queue]
        running = [event for job in queue.active_jobs if job for event in job]
        return joining[visitor] + sum(1 for event in waiting + running
                                      if event.request is not None and visitor_of(event.request) == visitor)

    async def fair_push(body, request: fastapi.Request, username):
        visitor = visitor_of(request)
        if held_by(visitor) >= limit:
            message = (f"You already have {limit} requests waiting or running, the most one visitor "
                       "may have at once: wait for one to finish, then try again.")
            mcp_calls.refused(request, message)  # an MCP call's loopback client drops the words
            return False, message, "queue_full"
        joining[visitor] += 1
        try:
            return await push(body=body, request=request, username=username)
        finally:
            joining[visitor] -= 1
            if not joining[visitor]:
                del joining[visitor]

    queue.push = fair_push
