"""The HTTP surface: Replicate's /v1 predictions API for daanelson/minigpt-4, errors as problem+json."""

from __future__ import annotations

import hmac
import json
import re
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from http import HTTPStatus
from typing import AsyncIterator, Callable

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import schema
from ..settings import DEFAULT_VERSION
from . import events
from .runner import MODEL, TERMINAL, Runner, new_prediction
from .store import CursorError, Store

# The current version and the 2023 one that much code (and MINIGPT4_VERSION) still names.
VERSIONS = (DEFAULT_VERSION, "b96a2f33cc8e4b0aa23eacfce731b9c41a7d9466d9ed4e167375587b54db9423")
# The version's real creation date is unknown; the model's creation date stands in.
VERSION_CREATED_AT = "2023-05-16T00:00:00.000000Z"
BODY_KEYS = frozenset({"version", "input", "stream", "webhook", "webhook_completed",
                       "webhook_events_filter"})
MAX_BODY_BYTES = 16_000_000  # a 10 MB image as base64 plus the rest of the body
MAX_WAIT_S = 60
CANCEL_WAIT_S = 5.0  # how long a cancel request waits for the worker to stop
PREFER_WAIT = re.compile(r"^wait(?:=(\d+))?$")


class ApiError(Exception):
    """An error response in Replicate's problem-details shape."""

    def __init__(self, status: int, title: str, detail: str, **extra):
        super().__init__(detail)
        self.body = {"title": title, "detail": detail, "status": status, **extra}


def _problem(body: dict) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type="application/problem+json")


def _invalid(fields: list[dict]) -> ApiError:
    detail = "".join(f"- {f['field']}: {f['description']}\n" if f["field"] else
                     f"- {f['description']}\n" for f in fields)
    return ApiError(422, "Input validation failed", detail, invalid_fields=fields)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _present(prediction: dict, request: Request) -> dict:
    """A stored prediction with the `urls` of the address this request reached."""
    base = f"{_base_url(request)}/v1"
    pid = prediction["id"]
    return {**prediction, "urls": {"get": f"{base}/predictions/{pid}",
                                   "cancel": f"{base}/predictions/{pid}/cancel",
                                   "stream": f"{base}/streams/{pid}"}}


def _resolve_version(value: object) -> str:
    """The version id for `<id>` or `daanelson/minigpt-4:<id>`; raises ApiError(422) otherwise."""
    model, sep, version = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if version in VERSIONS and (not sep or model == MODEL):
        return version
    raise ApiError(422, "Invalid version or not permitted",
                   "The specified version does not exist (or perhaps you don't have permission "
                   "to use it?)")


def _parse_prefer(header: str | None) -> tuple[int, str] | None:
    """Seconds to wait for `Prefer: wait` / `wait=N` (N clamped to 1..60) and the value to echo."""
    for preference in (header or "").split(","):
        match = PREFER_WAIT.match(preference.strip())
        if match and match.group(1) is None:
            return MAX_WAIT_S, "wait"
        if match:
            seconds = min(max(int(match.group(1)), 1), MAX_WAIT_S)
            return seconds, f"wait={seconds}"
    return None


async def _json_body(request: Request) -> dict:
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise ApiError(413, "Request Entity Too Large",
                       f"The request body is larger than {MAX_BODY_BYTES // 1_000_000} MB")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "Request Entity Too Large",
                       f"The request body is larger than {MAX_BODY_BYTES // 1_000_000} MB")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "Invalid JSON", f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON", "The request body must be a JSON object")
    return body


def _check_body(body: dict) -> None:
    fields = [{"type": "required", "field": "", "description": f"{key} is required"}
              for key in ("version", "input") if key not in body]
    fields += [{"type": "additional_property_not_allowed", "field": "",
                "description": f"Additional property {key} is not allowed"}
               for key in body if key not in BODY_KEYS]
    if "input" in body and not isinstance(body["input"], dict):
        fields.append({"type": "invalid_type", "field": "input",
                       "description": "Invalid type. Expected: object"})
    if fields:
        raise _invalid(fields)


def _token_checker(token: str | None) -> Callable[[Request], None]:
    expected = (token or "").encode()

    def require_token(request: Request) -> None:
        if not token:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or not hmac.compare_digest(
                given.strip().encode(), expected):
            raise ApiError(401, "Unauthenticated", "You did not pass a valid authentication token")

    return require_token


def _version_object(version_id: str) -> dict:
    return {"id": version_id, "created_at": VERSION_CREATED_AT, "cog_version": "0.8.6",
            "openapi_schema": {
                "openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": {},
                "components": {"schemas": {"Input": schema.openapi_input(),
                                           "Output": {"type": "string", "title": "Output"}}}}}


def build_app(*, store: Store, runner: Runner, token: str | None, page_size: int,
              heartbeat_seconds: float,
              lifespan: Callable[[FastAPI], AbstractAsyncContextManager] | None = None) -> FastAPI:
    """The FastAPI app over a store and a runner; `token=None` turns authentication off."""
    app = FastAPI(title="MiniGPT-4 Studio predictions server", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    api = APIRouter(prefix="/v1", dependencies=[Depends(_token_checker(token))])

    def stored(prediction_id: str) -> dict:
        prediction = store.get(prediction_id)
        if prediction is None:
            raise ApiError(404, "Not found", "The requested resource could not be found.")
        return prediction

    @api.post("/predictions", status_code=201)
    async def create_prediction(request: Request) -> JSONResponse:
        body = await _json_body(request)
        _check_body(body)
        version = _resolve_version(body["version"])
        try:
            inputs = schema.validate(body["input"])
        except schema.InputError as exc:
            raise _invalid([problem.as_json() for problem in exc.problems]) from exc
        prediction = new_prediction(version=version, input=body["input"])
        created = _present(prediction, request)  # the runner changes `prediction` from here on
        runner.submit(prediction, inputs)
        prefer = _parse_prefer(request.headers.get("prefer"))
        if prefer is None:
            return JSONResponse(created, status_code=201)
        wait, applied = prefer
        await runner.journal(prediction["id"]).until_finished(wait)
        current = stored(prediction["id"])
        if current["status"] not in TERMINAL:
            # Replicate answers an unfinished sync request as `starting`; replicate-python's
            # run() takes any other status as final and would return without the output.
            current["status"] = "starting"
        return JSONResponse(_present(current, request), status_code=201,
                            headers={"Preference-Applied": applied})

    @api.get("/predictions")
    async def list_predictions(request: Request, cursor: str | None = None) -> dict:
        try:
            page = store.page(cursor=cursor, size=page_size)
        except CursorError as exc:
            raise ApiError(400, "Invalid cursor", str(exc)) from exc
        link = f"{_base_url(request)}/v1/predictions?cursor="
        return {"next": page.next and link + page.next,
                "previous": page.previous and link + page.previous,
                "results": [_present(p, request) for p in page.results]}

    @api.get("/predictions/{prediction_id}")
    async def get_prediction(prediction_id: str, request: Request) -> dict:
        return _present(stored(prediction_id), request)

    @api.post("/predictions/{prediction_id}/cancel")
    async def cancel_prediction(prediction_id: str, request: Request) -> dict:
        stored(prediction_id)
        runner.cancel(prediction_id)
        await runner.journal(prediction_id).until_finished(CANCEL_WAIT_S)
        return _present(stored(prediction_id), request)

    @api.get("/models/{owner}/{name}/versions/{version_id}")
    async def get_version(owner: str, name: str, version_id: str) -> dict:
        if f"{owner}/{name}" != MODEL or version_id not in VERSIONS:
            raise ApiError(404, "Not found", "The requested resource could not be found.")
        return _version_object(version_id)

    # Like Replicate's stream URLs this needs no token: the JS client sends none, and the
    # prediction id in the URL is unguessable.
    @app.get("/v1/streams/{prediction_id}")
    async def stream_prediction(prediction_id: str, request: Request) -> StreamingResponse:
        prediction = stored(prediction_id)
        journal = runner.journal(prediction_id)
        epoch = int(datetime.fromisoformat(prediction["created_at"]).timestamp())
        last = events.parse_last_event_id(request.headers.get("last-event-id"))
        return StreamingResponse(
            _sse(journal, epoch=epoch, after=-1 if last is None else last,
                 heartbeat_seconds=heartbeat_seconds),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    app.include_router(api)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _problem(exc.body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = ("The requested resource could not be found." if exc.status_code == 404
                  else str(exc.detail))
        return _problem({"title": HTTPStatus(exc.status_code).phrase, "detail": detail,
                         "status": exc.status_code})

    return app


async def _sse(journal: events.Journal, *, epoch: int, after: int,
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
