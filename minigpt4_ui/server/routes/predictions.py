"""`/v1/predictions` and `/v1/models/{owner}/{name}/predictions`: create (with webhooks,
`Cancel-After` and `Prefer: wait`), list, get and cancel; `start_prediction` also serves
deployments (`deployments.py`)."""

from __future__ import annotations

import re
import urllib.parse

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...shared import model_schema, urlfetch
from ...shared.facts import TERMINAL
from ..catalog import HOSTED, HostedModel, served_schema
from ..http_helpers import base_url, json_body, listing
from ..image_input import FileRef
from ..prediction_object import new_prediction, now, present
from ..problems import ProblemResponse, invalid_input, invalid_version
from ..services import Services, services
from ..webhook_delivery import DEFAULT_EVENTS, EVENTS

BODY_KEYS = frozenset({"version", "input", "stream", "webhook", "webhook_completed",
                       "webhook_events_filter"})
MAX_WAIT_S = 60  # `Prefer: wait` holds a request at most this long
# Longer deadlines are refused: a timer that far out cannot be set, nor its date written.
MAX_CANCEL_AFTER_S = 24 * 3600
CANCEL_WAIT_S = 5.0  # how long a cancel request waits for the worker to stop
PREFER_WAIT = re.compile(r"^wait(?:=(\d+))?$")
# `Cancel-After`: Go-style durations (`30s`, `1m`, `1h30m`, `1.5s`, `500ms`) or bare seconds.
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
FILE_PATH = re.compile(r"^/v1/files/([A-Za-z0-9_-]+)(?:/download)?/?$")

router = APIRouter()


@router.post("/predictions", status_code=201)
async def create_prediction(request: Request, s: Services = Depends(services)) -> JSONResponse:
    body = await json_body(request)
    check_body(body, with_version=True)
    model, version = resolve_version(body["version"])
    return await start_prediction(request, body, model=model, version=version, s=s)


@router.post("/models/{owner}/{name}/predictions", status_code=201)
async def create_model_prediction(owner: str, name: str, request: Request,
                                  s: Services = Depends(services)) -> JSONResponse:
    body = await json_body(request)
    check_body(body, with_version=False)
    model = HOSTED.get(f"{owner}/{name}")
    if model is None:
        raise invalid_version()
    return await start_prediction(request, body, model=model, version=model.latest, s=s)


@router.get("/predictions")
async def list_predictions(request: Request, cursor: str | None = None,
                           s: Services = Depends(services)) -> dict:
    base = base_url(request)
    return listing(request, collection="predictions",
                   fetch=lambda: s.store.page(cursor=cursor, size=s.page_size),
                   present=lambda p: present(s.runner.live(p["id"]) or p, base))


@router.get("/predictions/{prediction_id}")
async def get_prediction(prediction_id: str, request: Request,
                         s: Services = Depends(services)) -> dict:
    return present(s.prediction(prediction_id), base_url(request))


@router.post("/predictions/{prediction_id}/cancel")
async def cancel_prediction(prediction_id: str, request: Request,
                            s: Services = Depends(services)) -> dict:
    s.prediction(prediction_id)
    s.runner.cancel(prediction_id)
    await s.runner.journal(prediction_id).until_finished(CANCEL_WAIT_S)
    return present(s.prediction(prediction_id), base_url(request))


async def start_prediction(request: Request, body: dict, *, model: HostedModel, version: str,
                           s: Services, deployment: str | None = None) -> JSONResponse:
    """Validate a checked body's input, start the prediction (on `deployment`, if named), and
    answer it (after waiting, if the request prefers to)."""
    cancel_after = cancel_after_seconds(request.headers.get("cancel-after"))
    spec, _ = served_schema(model, s.openapi_schema())
    try:
        inputs = model_schema.validate(spec.fields, body["input"])
    except model_schema.InputError as exc:
        raise invalid_input([problem.as_json() for problem in exc.problems]) from exc
    await check_webhook_addresses(body, policy=s.policy)
    if spec.image in inputs:
        inputs[spec.image] = own_file(inputs[spec.image], request) or inputs[spec.image]
    prediction = new_prediction(model=model.ref, version=version, input=body["input"],
                                deadline=None if cancel_after is None else now(cancel_after),
                                deployment=deployment)
    base = base_url(request)
    created = present(prediction, base)  # the runner changes `prediction` from here on
    delivery = None
    if body.get("webhook") or body.get("webhook_completed"):
        events_filter = body.get("webhook_events_filter")
        delivery = s.webhooks.watch(
            url=body.get("webhook"), completed_url=body.get("webhook_completed"),
            events=DEFAULT_EVENTS if events_filter is None else frozenset(events_filter),
            present=lambda snapshot: present(snapshot, base))
    s.runner.submit(prediction, inputs, webhook=delivery, cancel_after=cancel_after,
                    predictor=s.stand_ins.get(model.ref), image_field=spec.image,
                    iterator=spec.streams)
    prefer = parse_prefer(request.headers.get("prefer"))
    if prefer is None:
        return JSONResponse(created, status_code=201)
    wait, applied = prefer
    await s.runner.journal(prediction["id"]).until_finished(wait)
    current = s.prediction(prediction["id"])
    if current["status"] not in TERMINAL:
        # Replicate answers an unfinished sync request as `starting`; replicate-python's
        # run() takes any other status as final and would return without the output.
        current["status"] = "starting"
    return JSONResponse(present(current, base), status_code=201,
                        headers={"Preference-Applied": applied})


def resolve_version(value: object) -> tuple[HostedModel, str]:
    """The hosted model and version id for `<id>` or `owner/name:<id>`; 422 otherwise."""
    ref, sep, version = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    for model in HOSTED.values():
        if version in model.versions and (not sep or ref == model.ref):
            return model, version
    raise invalid_version()


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


def cancel_after_seconds(header: str | None) -> float | None:
    """The `Cancel-After` deadline in seconds (None without the header); 400 if it is invalid."""
    if header is None:
        return None
    seconds = parse_duration(header)
    if seconds is None or seconds > MAX_CANCEL_AFTER_S:
        raise ProblemResponse(400, "Invalid Cancel-After header",
                              "Cancel-After must be a positive duration of at most 24h, such as "
                              "30s, 5m or 1h30m")
    return seconds


def parse_prefer(header: str | None) -> tuple[int, str] | None:
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


def check_body(body: dict, *, with_version: bool) -> None:
    """422 for a missing, unknown or mistyped top-level key (the input is checked later)."""
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
        raise invalid_input(fields)


async def check_webhook_addresses(body: dict, *, policy: urlfetch.UrlPolicy) -> None:
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
        raise invalid_input(fields)


def own_file(image: object, request: Request) -> FileRef | None:
    """A FileRef if `image` is the URL of a file on this server (as reached by this request)."""
    if not isinstance(image, str):
        return None
    parts = urllib.parse.urlsplit(image)
    match = FILE_PATH.match(parts.path)
    if parts.scheme in ("http", "https") and match and parts.netloc == request.url.netloc:
        return FileRef(match.group(1))
    return None


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
