"""Turn the `image` input (a data: URI, an http(s) URL or a file of this server) into a Pillow image.

Reading the bytes (`read_image`) and decoding them (`decode`) are separate steps, so the runner
can fetch URLs on threads of their own. URLs are fetched with `minigpt4_ui.shared.urlfetch` (http/https
only, every hop checked, no loopback or private addresses unless the `UrlPolicy` allows them, size
limit, one wall-clock deadline, cancellable). Decoding obeys `minigpt4_ui.shared.imagelimits`.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from PIL import Image, ImageOps

from ..shared import imagelimits
from ..shared import urlfetch
from ..shared.urlfetch import MAX_REDIRECTS, FetchError, UrlPolicy

MAX_BYTES = 10_000_000  # the JS client's data-URI cap; also plenty for an https image
MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding them
FETCH_TIMEOUT_S = 10.0


class ImageInputError(ValueError):
    """The image input could not be turned into a picture; the message is shown to the user."""


@dataclass(frozen=True)
class FileRef:
    """An `image` input that named a file of this server's Files API (read directly, no HTTP)."""

    file_id: str


def is_url(ref: object) -> bool:
    """Whether an `image` input is fetched over the network."""
    return isinstance(ref, str) and ref.split(":", 1)[0].lower() in ("http", "https")


def read_image(ref: "str | FileRef", *, max_bytes: int = MAX_BYTES, timeout: float = FETCH_TIMEOUT_S,
               policy: UrlPolicy | None = None,
               read_file: Callable[[str], bytes | None] | None = None,
               cancel: threading.Event | None = None) -> bytes:
    """The bytes of `ref`: a data URI decoded, a URL fetched, or a file read; raises ImageInputError.

    `read_file(file_id)` returns the content of one of this server's files (None if it is gone);
    setting `cancel` ends a fetch in progress.
    """
    if isinstance(ref, FileRef):
        raw = read_file(ref.file_id) if read_file else None
        if raw is None:
            raise ImageInputError(f"could not read the image: the file {ref.file_id} does not exist "
                             "or has expired")
        return raw
    if ref.split(":", 1)[0].lower() == "data":
        return _decode_data_uri(ref, max_bytes=max_bytes)
    if is_url(ref):
        return fetch(ref, max_bytes=max_bytes, timeout=timeout, policy=policy or UrlPolicy(),
                      cancel=cancel)
    raise ImageInputError("could not read the image: expected a data: URI or an http(s) URL")


def decode(raw: bytes) -> Image.Image:
    """Decode image bytes into an upright RGB image; raises ImageInputError."""
    try:
        # Not closed on leaving: the picture itself is returned (the bytes are in memory anyway).
        image = imagelimits.open_image(io.BytesIO(raw), max_pixels=MAX_PIXELS)
        with imagelimits.decode_slot():
            image.load()
            if _rotated(image):
                image = ImageOps.exif_transpose(image)
            return image if image.mode == "RGB" else image.convert("RGB")
    except imagelimits.TooManyPixels as exc:
        raise ImageInputError(f"could not read the image: {exc.width}×{exc.height} is more than "
                         f"{MAX_PIXELS // 1_000_000} megapixels") from exc
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"could not read the image: more than {MAX_PIXELS // 1_000_000} "
                         f"megapixels") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow signals "unknown format" and truncated files with these.
        detail = ("not an image file" if isinstance(exc, Image.UnidentifiedImageError) else str(exc))
        raise ImageInputError(f"could not read the image: {detail}") from exc


def _rotated(image: Image.Image) -> bool:
    """Whether EXIF asks for a rotation or flip (exif_transpose copies the image even when not)."""
    return image.getexif().get(0x0112, 1) not in (0, 1)


def _decode_data_uri(ref: str, *, max_bytes: int) -> bytes:
    header, sep, payload = ref.partition(",")
    if not sep:
        raise ImageInputError("could not read the image: the data URI has no comma before its data")
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageInputError(f"could not read the image: larger than {max_bytes // 1_000_000} MB")
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageInputError("could not read the image: the data URI is not valid base64") from exc
    return urllib.parse.unquote_to_bytes(payload)


def fetch(url: str, *, max_bytes: int, timeout: float, policy: UrlPolicy | None = None,
          cancel: threading.Event | None = None) -> bytes:
    """Download an image URL within `timeout` seconds in all and `max_bytes`, checking every hop."""
    try:
        return urlfetch.fetch(url, policy=policy or UrlPolicy(), max_bytes=max_bytes, timeout=timeout,
                              user_agent="minigpt4-server", cancel=cancel).body
    except FetchError as exc:
        why = _why(exc, max_bytes=max_bytes, timeout=timeout)
        raise ImageInputError(f"could not fetch the image: {why}") from None


def _why(exc: FetchError, *, max_bytes: int, timeout: float) -> str:
    facts = exc.facts
    return {
        "scheme": "only http(s) URLs with a host can be fetched",
        "no_host": "only http(s) URLs with a host can be fetched",
        "bad_port": "the URL has an invalid port",
        "host_unknown": f"the host {facts.get('host')} could not be found",
        "private": f"{facts.get('host')} is a loopback, private or link-local address; "
                   "only public image URLs are fetched",
        "status": f"HTTP {facts.get('status')} from {facts.get('netloc')}",
        "too_large": f"larger than {max_bytes // 1_000_000} MB",
        "timeout": f"no answer within {timeout:g} s",
        "redirects": f"more than {MAX_REDIRECTS} redirects",
        "bad_url": "the URL is not valid",
        "canceled": "the prediction was canceled",
    }.get(exc.reason, str(facts.get("error", exc.reason)))
