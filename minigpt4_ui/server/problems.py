"""Error answers in Replicate's problem-details shape (`application/problem+json`).

A route raises `ProblemResponse`; the handlers `install` registers turn it, and Starlette's own
HTTP errors (unknown path, wrong method), into the same shape.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

NOT_FOUND = "The requested resource could not be found."
INVALID_VERSION = ("The specified version does not exist (or perhaps you don't have permission "
                   "to use it?)")


class ProblemResponse(Exception):
    """An error answer: `body` holds title, detail, status and any extra members."""

    def __init__(self, status: int, title: str, detail: str, **extra):
        super().__init__(detail)
        self.body = {"title": title, "detail": detail, "status": status, **extra}


def not_found() -> ProblemResponse:
    """404 for an unknown prediction, file, model or version."""
    return ProblemResponse(404, "Not found", NOT_FOUND)


def invalid_version() -> ProblemResponse:
    """422 for a version (or model) this server does not host."""
    return ProblemResponse(422, "Invalid version or not permitted", INVALID_VERSION)


def invalid_input(fields: list[dict]) -> ProblemResponse:
    """422 listing every invalid field as `invalid_fields`, and in `detail` one per line."""
    detail = "".join(f"- {f['field']}: {f['description']}\n" if f["field"] else
                     f"- {f['description']}\n" for f in fields)
    return ProblemResponse(422, "Input validation failed", detail, invalid_fields=fields)


def too_large(what: str) -> ProblemResponse:
    """413 saying which limit was passed, e.g. `too_large("The file is larger than 100 MiB")`."""
    return ProblemResponse(413, "Request Entity Too Large", what)


def as_response(body: dict) -> JSONResponse:
    """The problem body as an HTTP answer with its own status."""
    return JSONResponse(body, status_code=body["status"], media_type="application/problem+json")


def install(app: FastAPI) -> None:
    """Answer ProblemResponse and Starlette's HTTP errors as problem+json."""

    @app.exception_handler(ProblemResponse)
    async def problem(request: Request, exc: ProblemResponse) -> JSONResponse:
        return as_response(exc.body)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = NOT_FOUND if exc.status_code == 404 else str(exc.detail)
        return as_response({"title": HTTPStatus(exc.status_code).phrase, "detail": detail,
                            "status": exc.status_code})
