"""`/v1/files`: upload (multipart), list, get, download and delete; files expire after a day."""

from __future__ import annotations

import base64
import hashlib
import urllib.parse
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from ..http_helpers import base_url, form_text, listing, parse_json
from ..prediction_object import now
from ..problems import ProblemResponse, invalid_input, not_found, too_large
from ..services import Services, services

MAX_FILE_BYTES = 100 * 1024 * 1024  # Replicate's Files API limit
FILE_TTL_S = 24 * 3600
# What a multipart upload may add around the file itself (boundaries, metadata, filename).
FORM_OVERHEAD_BYTES = 1_000_000
# Types a download keeps and a browser may show: raster images, which run no script (not SVG).
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif",
                          "image/bmp"})

router = APIRouter()


def file_too_large(limit: int) -> ProblemResponse:
    """413 for an upload over `limit` bytes."""
    return too_large(f"The file is larger than {limit // (1024 * 1024)} MiB")


@router.post("/files", status_code=201)
async def create_file(request: Request, s: Services = Depends(services)) -> JSONResponse:
    limit = s.max_file_bytes
    if int(request.headers.get("content-length") or 0) > limit + FORM_OVERHEAD_BYTES:
        raise file_too_large(limit)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise invalid_input([{"type": "required", "field": "", "description":
                              "content is required (send multipart/form-data)"}])
    async with request.form(max_files=4, max_fields=16) as form:
        content = form.get("content")
        if not isinstance(content, UploadFile):
            raise invalid_input([{"type": "required", "field": "",
                                  "description": "content is required"}])
        data = bytearray()
        while chunk := await content.read(1 << 20):
            data += chunk
            if len(data) > limit:
                raise file_too_large(limit)
        metadata = await form_text(form.get("metadata"))
        name = (await form_text(form.get("filename")) or content.filename or "file")
        kind = (await form_text(form.get("type")) or content.content_type
                or "application/octet-stream")
    try:
        metadata = parse_json(metadata) if metadata else {}
    except ValueError as exc:
        raise invalid_input([{"type": "invalid_json", "field": "metadata",
                              "description": f"metadata {exc}"}]) from None
    if not isinstance(metadata, dict):
        raise invalid_input([{"type": "invalid_type", "field": "metadata",
                              "description": "metadata must be a JSON object"}])
    if len(name.encode()) > 255:
        raise invalid_input([{"type": "string_lte", "field": "filename",
                              "description": "String length must be less than or equal to 255"}])
    md5 = hashlib.md5(data).hexdigest()
    file = {"id": _new_file_id(), "name": name, "content_type": kind.split(";")[0].strip(),
            "size": len(data), "etag": md5,
            "checksums": {"sha256": hashlib.sha256(data).hexdigest(), "md5": md5},
            "metadata": metadata, "created_at": now(), "expires_at": now(s.file_ttl_s)}
    s.store.insert_file(file, data)
    return JSONResponse(present_file(file, request), status_code=201)


@router.get("/files")
async def list_files(request: Request, cursor: str | None = None,
                     s: Services = Depends(services)) -> dict:
    s.store.purge_files(now=now())
    return listing(request, collection="files",
                   fetch=lambda: s.store.file_page(cursor=cursor, size=s.page_size),
                   present=lambda f: present_file(f, request))


@router.get("/files/{file_id}")
async def get_file(file_id: str, request: Request, s: Services = Depends(services)) -> dict:
    return present_file(s.file(file_id), request)


@router.get("/files/{file_id}/download")
async def download_file(file_id: str, s: Services = Depends(services)) -> Response:
    file = s.file(file_id)
    content = s.store.file_content(file_id, now=now())
    if content is None:
        raise not_found()
    media_type, disposition = _served_as(file)
    return Response(content, media_type=media_type,
                    headers={"ETag": f'"{file["etag"]}"', "Cache-Control": "private",
                             "X-Content-Type-Options": "nosniff",
                             "Content-Disposition": disposition})


@router.delete("/files/{file_id}", status_code=204)
async def delete_file(file_id: str, s: Services = Depends(services)) -> Response:
    if not s.store.delete_file(file_id, now=now()):
        raise not_found()
    return Response(status_code=204, media_type="text/plain")


def _served_as(file: dict) -> tuple[str, str]:
    """(Content-Type, Content-Disposition) of a download."""
    # Whoever uploads chooses the type: served as such, HTML or SVG would run script on this
    # server's origin. Raster images are safe to show; anything else is only bytes to save.
    name = urllib.parse.quote(file["name"], safe="")
    if file["content_type"].lower() in INLINE_TYPES:
        return file["content_type"], f"inline; filename*=UTF-8''{name}"
    return "application/octet-stream", f"attachment; filename*=UTF-8''{name}"


def present_file(file: dict, request: Request) -> dict:
    """A stored file object with its `urls` at the address this request reached."""
    return {**file, "urls": {"get": f"{base_url(request)}/v1/files/{file['id']}"}}


def _new_file_id() -> str:
    # Replicate's ids are base64 of a UUID string; url-safe, so they fit in a path.
    return base64.urlsafe_b64encode(str(uuid.uuid4()).encode()).decode()
