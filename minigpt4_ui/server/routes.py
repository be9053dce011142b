"""The HTTP surface: Replicate's /v1 API for the hosted models (predictions, models, versions,
files, webhooks secret), errors as problem+json, optional rate limits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import time
import urllib.parse
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import AsyncIterator, Callable

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import model_schema, urlfetch
from ..urlfetch import UrlPolicy
from . import events
from .catalog import HOSTED, MINIGPT4, HostedModel
from .image_input import FileRef
from .predictors import Predictor
from .predictors.builtin import StandInPredictor
from .runner import TERMINAL, Runner, new_prediction, now
from .store import CursorError, Page, Store
from .webhook_delivery import DEFAULT_EVENTS, EVENTS, WebhookSender

BODY_KEYS = frozenset({"version", "input", "stream", "webhook", "webhook_completed",
                       "webhook_events_filter"})
MAX_BODY_BYTES = 16_000_000  # a 10 MB image as base64 plus the rest of the body
MAX_WAIT_S = 60
# Longer deadlines are refused: a timer that far out cannot be set, nor its date written.
MAX_CANCEL_AFTER_S = 24 * 3600
CANCEL_WAIT_S = 5.0  # how long a cancel request waits for the worker to stop
PREFER_WAIT = re.compile(r"^wait(?:=(\d+))?$")
# `Cancel-After`: Go-style durations (`30s`, `1m`, `1h30m`, `1.5s`, `500ms`) or bare seconds.
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_FILE_BYTES = 100 * 1024 * 1024  # Replicate's Files API limit
FILE_TTL_S = 24 * 3600
FILE_PATH = re.compile(r"^/v1/files/([A-Za-z0-9_-]+)(?:/download)?/?$")
NOT_FOUND = "The requested resource could not be found."
INVALID_VERSION = ("The specified version does not exist (or perhaps you don't have permission "
                   "to use it?)")


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


def _present(prediction: dict, request: Request | str) -> dict:
    """A stored prediction with the `urls` of the address this request (or base URL) reached."""
    base = f"{request if isinstance(request, str) else _base_url(request)}/v1"
    pid = prediction["id"]
    return {**prediction, "urls": {"get": f"{base}/predictions/{pid}",
                                   "cancel": f"{base}/predictions/{pid}/cancel",
                                   "stream": f"{base}/streams/{pid}"}}


def _resolve_version(value: object) -> tuple[HostedModel, str]:
    """The hosted model and version id for `<id>` or `owner/name:<id>`; ApiError(422) otherwise."""
    ref, sep, version = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    for model in HOSTED.values():
        if version in model.versions and (not sep or ref == model.ref):
            return model, version
    raise ApiError(422, "Invalid version or not permitted", INVALID_VERSION)


def parse_duration(value: str) -> float | None:
    """Seconds in a `Cancel-After` value, or None if it is not a positive duration."""
    value = value.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    elif value and re.fullmatch(f"(?:{DURATION_PART.pattern})+", value):
        seconds = sum(float(number) * DURATION_UNITS[unit]
                      for number, unit in DURATION_PART.findall(value))
    else:
        return None
    return seconds if seconds > 0 else None


def _parse_prefer(header: str | None) -> tuple[int, str] | None:
    """Seconds to wait for `Prefer: wait` / `wait=N` (N clamped to 1..60) and the value to echo."""
    for preference in (header or "").split(","):
        match = PREFER_WAIT.match(preference.strip())
        if match and match.group(1) is None:
            return MAX_WAIT_S, "wait"
        if match:
            digits = match.group(1).lstrip("0")
            # Compared as text first: int() refuses numbers of thousands of digits.
            seconds = MAX_WAIT_S if len(digits) > 3 else min(max(int(digits or 0), 1), MAX_WAIT_S)
            return seconds, f"wait={seconds}"
    return None


async def _json_body(request: Request) -> dict:
    if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
        raise _body_too_large()
    raw = await request.body()  # BodyLimitMiddleware stops a longer one while it is read
    try:
        body = json.loads(raw)
        # Refused here, not when the answer is written: an unpaired surrogate cannot be UTF-8.
        json.dumps(body, ensure_ascii=False).encode()
    except RecursionError:
        raise ApiError(400, "Invalid JSON", "The request body is nested too deeply") from None
    except UnicodeEncodeError:
        raise ApiError(400, "Invalid JSON", "The request body has a string with an unpaired "
                       "UTF-16 surrogate (\\ud800-\\udfff); send text as valid Unicode") from None
    except ValueError as exc:
        raise ApiError(400, "Invalid JSON", f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid JSON", "The request body must be a JSON object")
    return body


def _body_too_large() -> ApiError:
    return ApiError(413, "Request Entity Too Large",
                    f"The request body is larger than {MAX_BODY_BYTES // 1_000_000} MB")


def _check_body(body: dict, *, with_version: bool = True) -> None:
    allowed = BODY_KEYS if with_version else BODY_KEYS - {"version"}
    fields = [{"type": "required", "field": "", "description": f"{key} is required"}
              for key in ("version", "input") if key not in body and key in allowed]
    fields += [{"type": "additional_property_not_allowed", "field": "",
                "description": f"Additional property {key} is not allowed"}
               for key in body if key not in allowed]
    if "input" in body and not isinstance(body["input"], dict):
        fields.append({"type": "invalid_type", "field": "input",
                       "description": "Invalid type. Expected: object"})
    for key in ("webhook", "webhook_completed"):
        if body.get(key) is not None and not _is_http_url(body[key]):
            fields.append({"type": "format", "field": key,
                           "description": "Does not match format 'uri'"})
    allowed_events = ", ".join(f'"{name}"' for name in EVENTS)
    events_filter = body.get("webhook_events_filter")
    if events_filter is not None and not isinstance(events_filter, list):
        fields.append({"type": "invalid_type", "field": "webhook_events_filter",
                       "description": "Invalid type. Expected: array"})
    for index, name in enumerate(events_filter if isinstance(events_filter, list) else []):
        if name not in EVENTS:
            fields.append({"type": "enum", "field": f"webhook_events_filter.{index}",
                           "description": f"webhook_events_filter.{index} must be one of the "
                                          f"following: {allowed_events}"})
    if fields:
        raise _invalid(fields)


async def _check_webhooks(body: dict, policy: UrlPolicy) -> None:
    """422 for a webhook that points at an address image URLs could not be fetched from."""
    fields = []
    for key in ("webhook", "webhook_completed"):
        if body.get(key) is None:
            continue
        try:
            await run_in_threadpool(urlfetch.check, body[key], policy=policy)  # resolves the name
        except urlfetch.FetchError as exc:
            why = ("is a loopback, private or link-local address"
                   if exc.reason == "private" else "could not be found")
            fields.append({"type": "format", "field": key, "description":
                           f"{exc.facts.get('host', 'the host')} {why}; webhooks go only to "
                           "public addresses"})
    if fields:
        raise _invalid(fields)


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _own_file(image: object, request: Request) -> FileRef | None:
    """A FileRef if `image` is the URL of a file on this server (as reached by this request)."""
    if not isinstance(image, str):
        return None
    parts = urllib.parse.urlsplit(image)
    match = FILE_PATH.match(parts.path)
    if parts.scheme in ("http", "https") and match and parts.netloc == request.url.netloc:
        return FileRef(match.group(1))
    return None


def _new_file_id() -> str:
    # Replicate's ids are base64 of a UUID string; url-safe, so they fit in a path.
    return base64.urlsafe_b64encode(str(uuid.uuid4()).encode()).decode()


@dataclass(frozen=True)
class RateLimits:
    """Requests per minute per token (or client address) before 429s; None means no limit.

    Replicate's defaults are 600/min for creating predictions and 3000/min for the rest.
    """

    create_per_minute: int | None = None
    other_per_minute: int | None = None


def _authorized(header: str, token: str) -> bool:
    """Whether an Authorization header carries `token` (`Bearer` or `Token` scheme)."""
    scheme, _, given = header.strip().partition(" ")
    return scheme.lower() in ("bearer", "token") and hmac.compare_digest(
        given.strip().encode(), token.encode())


def _token_checker(token: str | None) -> Callable[[Request], None]:
    def require_token(request: Request) -> None:
        if token and not _authorized(request.headers.get("authorization", ""), token):
            raise ApiError(401, "Unauthenticated", "You did not pass a valid authentication token")

    return require_token


def _fronted(model: HostedModel, document: dict | None) -> tuple[model_schema.ModelSpec, dict]:
    """MiniGPT-4's spec and version document, or those of the container it fronts, when it has a
    schema this app can use; Output stays one string, which is what this server answers."""
    if model is not MINIGPT4 or document is None:
        return model.spec, model.openapi_schema()
    try:
        spec = model_schema.read_schema(document, model=model.ref, version=model.latest)
    except model_schema.UnmappableSchema:
        return model.spec, model.openapi_schema()
    components = document.get("components") or {}
    schemas = {**components.get("schemas", {}), "Output": {"type": "string", "title": "Output"}}
    return spec, {**document, "components": {**components, "schemas": schemas}}


def _listing(request: Request, collection: str, fetch: Callable[[], Page],
             present: Callable[[dict], dict]) -> dict:
    """One page of a collection in Replicate's shape, with absolute `next`/`previous` URLs."""
    try:
        page = fetch()
    except CursorError as exc:
        raise ApiError(400, "Invalid cursor", str(exc)) from exc
    link = f"{_base_url(request)}/v1/{collection}?cursor="
    return {"next": page.next and link + page.next,
            "previous": page.previous and link + page.previous,
            "results": [present(item) for item in page.results]}


def build_app(*, store: Store, runner: Runner, token: str | None, page_size: int,
              heartbeat_seconds: float, webhooks: WebhookSender | None = None,
              rate_limits: RateLimits | None = None, file_ttl_s: float = FILE_TTL_S,
              max_file_bytes: int = MAX_FILE_BYTES, policy: UrlPolicy = UrlPolicy(),
              lifespan: Callable[[FastAPI], AbstractAsyncContextManager] | None = None,
              openapi_schema: Callable[[], dict | None] = lambda: None) -> FastAPI:
    """The FastAPI app over a store and a runner; `token=None` turns authentication off.

    `policy` says where webhooks may go (the same addresses image URLs may be fetched from).
    `openapi_schema()` is the fronted model's own OpenAPI document, if it has one: inputs are
    then validated against its Input, and versions publish it; else MiniGPT-4's schema serves.
    Every other hosted model is answered by its stand-in.
    """
    app = FastAPI(title="MiniGPT-4 Studio predictions server", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    api = APIRouter(prefix="/v1", dependencies=[Depends(_token_checker(token))])
    stand_ins: dict[str, Predictor] = {model.ref: StandInPredictor(model.spec)
                                       for model in HOSTED.values() if model is not MINIGPT4}

    def hosted(owner: str, name: str) -> HostedModel:
        model = HOSTED.get(f"{owner}/{name}")
        if model is None:
            raise ApiError(404, "Not found", NOT_FOUND)
        return model

    def stored(prediction_id: str) -> dict:
        prediction = runner.live(prediction_id) or store.get(prediction_id)
        if prediction is None:
            raise ApiError(404, "Not found", NOT_FOUND)
        return prediction

    def stored_file(file_id: str) -> dict:
        file = store.get_file(file_id, now=now())
        if file is None:
            raise ApiError(404, "Not found", NOT_FOUND)
        return file

    @api.post("/predictions", status_code=201)
    async def create_prediction(request: Request) -> JSONResponse:
        body = await _json_body(request)
        _check_body(body)
        return await _create(request, body, *_resolve_version(body["version"]))

    @api.post("/models/{owner}/{name}/predictions", status_code=201)
    async def create_model_prediction(owner: str, name: str, request: Request) -> JSONResponse:
        body = await _json_body(request)
        _check_body(body, with_version=False)
        model = HOSTED.get(f"{owner}/{name}")
        if model is None:
            raise ApiError(422, "Invalid version or not permitted", INVALID_VERSION)
        return await _create(request, body, model, model.latest)

    async def _create(request: Request, body: dict, model: HostedModel, version: str) -> JSONResponse:
        cancel_after = None
        if request.headers.get("cancel-after") is not None:
            cancel_after = parse_duration(request.headers["cancel-after"])
            if cancel_after is None or cancel_after > MAX_CANCEL_AFTER_S:
                raise ApiError(400, "Invalid Cancel-After header",
                               "Cancel-After must be a positive duration of at most 24h, such as "
                               "30s, 5m or 1h30m")
        spec, _ = _fronted(model, openapi_schema())
        try:
            inputs = model_schema.validate(spec.fields, body["input"])
        except model_schema.InputError as exc:
            raise _invalid([problem.as_json() for problem in exc.problems]) from exc
        await _check_webhooks(body, policy)
        if spec.image in inputs:
            inputs[spec.image] = _own_file(inputs[spec.image], request) or inputs[spec.image]
        prediction = new_prediction(model=model.ref, version=version, input=body["input"],
                                    deadline=None if cancel_after is None else now(cancel_after))
        base = _base_url(request)
        created = _present(prediction, base)  # the runner changes `prediction` from here on
        delivery = None
        if webhooks is not None and (body.get("webhook") or body.get("webhook_completed")):
            events_filter = body.get("webhook_events_filter")
            delivery = webhooks.watch(
                url=body.get("webhook"), completed_url=body.get("webhook_completed"),
                events=DEFAULT_EVENTS if events_filter is None else frozenset(events_filter),
                present=lambda snapshot: _present(snapshot, base))
        runner.submit(prediction, inputs, webhook=delivery, cancel_after=cancel_after,
                      predictor=stand_ins.get(model.ref), image_field=spec.image,
                      iterator=spec.streams)
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
        return _listing(request, "predictions", lambda: store.page(cursor=cursor, size=page_size),
                        lambda p: _present(runner.live(p["id"]) or p, request))

    @api.get("/predictions/{prediction_id}")
    async def get_prediction(prediction_id: str, request: Request) -> dict:
        return _present(stored(prediction_id), request)

    @api.post("/predictions/{prediction_id}/cancel")
    async def cancel_prediction(prediction_id: str, request: Request) -> dict:
        stored(prediction_id)
        runner.cancel(prediction_id)
        await runner.journal(prediction_id).until_finished(CANCEL_WAIT_S)
        return _present(stored(prediction_id), request)

    @api.get("/models/{owner}/{name}")
    async def get_model(owner: str, name: str) -> dict:
        return hosted(owner, name).model_object()

    @api.get("/models/{owner}/{name}/versions/{version_id}")
    async def get_version(owner: str, name: str, version_id: str) -> dict:
        model = hosted(owner, name)
        if version_id not in model.versions:
            raise ApiError(404, "Not found", NOT_FOUND)
        _, document = _fronted(model, openapi_schema())
        return {**model.version_object(version_id), "openapi_schema": document}

    @api.get("/webhooks/default/secret")
    async def webhook_secret() -> dict:
        if webhooks is None:
            raise ApiError(404, "Not found", NOT_FOUND)
        return {"key": webhooks.secret}

    @api.post("/files", status_code=201)
    async def create_file(request: Request) -> JSONResponse:
        if int(request.headers.get("content-length") or 0) > max_file_bytes + 1_000_000:
            raise _too_large(max_file_bytes)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise _invalid([{"type": "required", "field": "", "description":
                             "content is required (send multipart/form-data)"}])
        async with request.form(max_files=4, max_fields=16) as form:
            content = form.get("content")
            if not isinstance(content, UploadFile):
                raise _invalid([{"type": "required", "field": "",
                                 "description": "content is required"}])
            data = bytearray()
            while chunk := await content.read(1 << 20):
                data += chunk
                if len(data) > max_file_bytes:
                    raise _too_large(max_file_bytes)
            metadata = await _form_text(form.get("metadata"))
            name = (await _form_text(form.get("filename")) or content.filename or "file")
            kind = (await _form_text(form.get("type")) or content.content_type
                    or "application/octet-stream")
        try:
            metadata = json.loads(metadata) if metadata else {}
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            raise _invalid([{"type": "invalid_type", "field": "metadata",
                             "description": "metadata must be a JSON object"}])
        if len(name.encode()) > 255:
            raise _invalid([{"type": "string_lte", "field": "filename",
                             "description": "String length must be less than or equal to 255"}])
        md5 = hashlib.md5(data).hexdigest()
        file = {"id": _new_file_id(), "name": name, "content_type": kind.split(";")[0].strip(),
                "size": len(data), "etag": md5,
                "checksums": {"sha256": hashlib.sha256(data).hexdigest(), "md5": md5},
                "metadata": metadata, "created_at": now(), "expires_at": now(file_ttl_s)}
        store.insert_file(file, bytes(data))
        return JSONResponse(_present_file(file, request), status_code=201)

    @api.get("/files")
    async def list_files(request: Request, cursor: str | None = None) -> dict:
        store.purge_files(now=now())
        return _listing(request, "files", lambda: store.file_page(cursor=cursor, size=page_size),
                        lambda f: _present_file(f, request))

    @api.get("/files/{file_id}")
    async def get_file(file_id: str, request: Request) -> dict:
        return _present_file(stored_file(file_id), request)

    @api.get("/files/{file_id}/download")
    async def download_file(file_id: str) -> Response:
        file = stored_file(file_id)
        content = store.file_content(file_id, now=now())
        if content is None:
            raise ApiError(404, "Not found", NOT_FOUND)
        return Response(content, media_type=file["content_type"],
                        headers={"ETag": f'"{file["etag"]}"', "Cache-Control": "private"})

    @api.delete("/files/{file_id}", status_code=204)
    async def delete_file(file_id: str) -> Response:
        if not store.delete_file(file_id, now=now()):
            raise ApiError(404, "Not found", NOT_FOUND)
        return Response(status_code=204, media_type="text/plain")

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
        detail = NOT_FOUND if exc.status_code == 404 else str(exc.detail)
        return _problem({"title": HTTPStatus(exc.status_code).phrase, "detail": detail,
                         "status": exc.status_code})

    if rate_limits and (rate_limits.create_per_minute or rate_limits.other_per_minute):
        app.add_middleware(RateLimitMiddleware, limits=rate_limits, token=token)
    app.add_middleware(BodyLimitMiddleware, limits={
        "/v1/files": (max_file_bytes + 1_000_000, lambda: _too_large(max_file_bytes))},
        default=(MAX_BODY_BYTES, _body_too_large))
    return app


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "Request Entity Too Large",
                    f"The file is larger than {limit // (1024 * 1024)} MiB")


async def _form_text(value: object) -> str | None:
    """A form field's text; the JS client sends `metadata` as a JSON blob part, not a field."""
    if isinstance(value, UploadFile):
        return (await value.read()).decode("utf-8", "replace")
    return value if isinstance(value, str) and value else None


def _present_file(file: dict, request: Request) -> dict:
    return {**file, "urls": {"get": f"{_base_url(request)}/v1/files/{file['id']}"}}


class BodyLimitMiddleware:
    """Stops reading a request body once it passes its path's limit (Content-Length may be absent
    or lie), raising the ApiError made for that path; the error handlers answer it."""

    def __init__(self, app, limits: dict[str, tuple[int, Callable[[], ApiError]]],
                 default: tuple[int, Callable[[], ApiError]]):
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
        who = ("token" if self.token and _authorized(header, self.token)
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
