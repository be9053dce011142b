"""`/v1/streams/{id}`: a prediction's events as server-sent events, replayed from
`Last-Event-ID` and then followed live until `done`."""

from __future__ import annotations

from datetime import datetime
from typing import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from .. import events
from ..services import Services, services

# Like Replicate's stream URLs this needs no token: the JS client sends none, and the
# prediction id in the URL is unguessable.
router = APIRouter()


@router.get("/streams/{prediction_id}")
async def stream_prediction(prediction_id: str, request: Request,
                            s: Services = Depends(services)) -> StreamingResponse:
    prediction = s.prediction(prediction_id)
    journal = s.runner.journal(prediction_id)
    epoch = int(datetime.fromisoformat(prediction["created_at"]).timestamp())
    last = events.parse_last_event_id(request.headers.get("last-event-id"))
    return StreamingResponse(
        sse(journal, epoch=epoch, after=-1 if last is None else last,
            heartbeat_seconds=s.heartbeat_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def sse(journal: events.Journal, *, epoch: int, after: int,
              heartbeat_seconds: float) -> AsyncIterator[bytes]:
    """Replay the journal after `after`, then follow it live until `done`, with keep-alives."""
    yield events.HELLO
    while True:
        new, finished = journal.since(after)
        for event in new:
            yield events.encode(event, epoch=epoch)
            after = event.seq
        if finished:
            return
        if not await journal.changed(after, heartbeat_seconds):
            yield events.KEEPALIVE
