"""Turn the `image` input (a data: URI or an http(s) URL) into a decoded Pillow image."""

from __future__ import annotations

import base64
import binascii
import io
import urllib.parse

import requests
from PIL import Image, ImageOps

MAX_BYTES = 10_000_000  # the JS client's data-URI cap; also plenty for an https image
MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding them
FETCH_TIMEOUT_S = 10.0


class ImageError(ValueError):
    """The image input could not be turned into a picture; the message is shown to the user."""


def load_image(ref: str, *, max_bytes: int = MAX_BYTES, timeout: float = FETCH_TIMEOUT_S) -> Image.Image:
    """Fetch or decode `ref` and return it as an upright RGB image; raises ImageError."""
    scheme = ref.split(":", 1)[0].lower() if ":" in ref else ""
    if scheme == "data":
        raw = _decode_data_uri(ref, max_bytes=max_bytes)
    elif scheme in ("http", "https"):
        raw = _fetch(ref, max_bytes=max_bytes, timeout=timeout)
    else:
        raise ImageError("could not read the image: expected a data: URI or an http(s) URL")
    return decode(raw)


def decode(raw: bytes) -> Image.Image:
    """Decode image bytes into an upright RGB image; raises ImageError."""
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageError(f"could not read the image: {width}×{height} is more than "
                             f"{MAX_PIXELS // 1_000_000} megapixels")
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"could not read the image: more than {MAX_PIXELS // 1_000_000} "
                         f"megapixels") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow signals "unknown format" and truncated files with these.
        detail = "not an image file" if isinstance(exc, Image.UnidentifiedImageError) else str(exc)
        raise ImageError(f"could not read the image: {detail}") from exc


def _decode_data_uri(ref: str, *, max_bytes: int) -> bytes:
    header, sep, payload = ref.partition(",")
    if not sep:
        raise ImageError("could not read the image: the data URI has no comma before its data")
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageError(f"could not read the image: larger than {max_bytes // 1_000_000} MB")
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageError("could not read the image: the data URI is not valid base64") from exc
    return urllib.parse.unquote_to_bytes(payload)


def _fetch(url: str, *, max_bytes: int, timeout: float) -> bytes:
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            if response.status_code != 200:
                raise ImageError(f"could not fetch the image: HTTP {response.status_code} from "
                                 f"{urllib.parse.urlsplit(url).netloc}")
            body = bytearray()
            for chunk in response.iter_content(chunk_size=65536):
                body += chunk
                if len(body) > max_bytes:
                    raise ImageError(f"could not fetch the image: larger than {max_bytes // 1_000_000} MB")
            return bytes(body)
    except requests.Timeout as exc:
        raise ImageError(f"could not fetch the image: no answer within {timeout:g} s") from exc
    except requests.RequestException as exc:
        raise ImageError(f"could not fetch the image: {type(exc).__name__}") from exc
