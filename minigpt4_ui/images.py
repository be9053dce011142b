"""Turn the user's image into the `image` input: a URL as given, or a small JPEG data URI.

Also fetches an image URL the user typed, safely, so it can be checked and previewed.
"""

from __future__ import annotations

import base64
import functools
import io
import math
import os
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError

from . import urlfetch
from .urlfetch import UrlPolicy

# MiniGPT-4 resizes to 224×224; 448 keeps detail for other backends and still encodes small.
MAX_SIDE = 448
# The strictest documented data-URI limit of the predictions API.
MAX_DATA_URI_BYTES = 256_000
# Below Pillow's own bomb warning (89 MP), so the check below always speaks first.
MAX_PIXELS = 64_000_000
_QUALITIES = (90, 80, 70, 55, 40)

# Oversized images are refused with a clear message below; Pillow's warning would only add log noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(ValueError):
    """The image cannot be used; the message says why in words a user understands."""


def is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def to_input(value: str | Path) -> str:
    """Return what to send as `image`: http(s) URLs unchanged, a local file as a data URI.

    The same file is sent again with every follow-up question, so its encoding is remembered.
    """
    if isinstance(value, str) and is_url(value):
        return value
    try:
        stat = os.stat(value)
    except OSError:
        return encode(load(value))  # load says what is wrong with the path
    return _encoded(os.fspath(value), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _encoded(path: str, size: int, mtime_ns: int) -> str:
    """The data URI of a file; size and mtime are part of the key so a changed file is redone."""
    return encode(load(path))


def load(path: str | Path) -> Image.Image:
    """Open, check and orient a local image file, returning an RGB image at most MAX_SIDE wide."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(f"The image file could not be read ({exc.strerror}).") from None
    if size == 0:
        raise ImageError("The image file is empty (0 bytes).")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"The image is {img.width}×{img.height} pixels; images up to "
                                 f"{MAX_PIXELS // 1_000_000} megapixels are accepted.")
            # JPEG drafting decodes at a reduced scale, which is far faster for big photos.
            scale = min(1.0, MAX_SIDE / max(img.size))
            img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
            img = ImageOps.exif_transpose(img)
            img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC)
            return _to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("That file is not an image format this app can read "
                         "(use JPEG, PNG, WebP, GIF or BMP).") from None
    except Image.DecompressionBombError:
        raise ImageError("The image is too large to decode safely "
                         f"(over {MAX_PIXELS // 1_000_000} megapixels).") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"The image file is damaged or truncated ({exc}).") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Flatten transparency onto white, as a viewer would show it, and return RGB."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clip.
        return img.point(lambda v: v / 256).convert("L").convert("RGB")
    return img.convert("RGB")


def encode(img: Image.Image) -> str:
    """JPEG-encode an RGB image as a data URI under MAX_DATA_URI_BYTES."""
    for quality in _QUALITIES:
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=quality, optimize=True)
        uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        if len(uri) <= MAX_DATA_URI_BYTES:
            return uri
    raise ImageError("The image could not be compressed under the API's 256 KB data-URI limit.")


MAX_DOWNLOAD_BYTES = 20_000_000
FETCH_TIMEOUT = (5.0, 10.0)  # connect, whole download


def check_url(url: str) -> str:
    """Return the URL stripped, or raise ImageError if it is not an http(s) URL with a host."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ImageError("Only http:// and https:// image URLs are supported"
                         + (f" (got {parts.scheme}://)." if parts.scheme else "."))
    if not parts.hostname:
        raise ImageError("That URL has no host name.")
    return url


def fetch(url: str, *, allow_private: bool = False) -> Path:
    """Download an image URL into a temporary file (`urlfetch` checks every redirect hop).

    Raises ImageError with what went wrong: scheme, host, status, content type, size or timeout.
    """
    url = check_url(url)
    policy = UrlPolicy(("*",)) if allow_private else UrlPolicy()
    try:
        fetched = urlfetch.fetch(url, policy=policy, max_bytes=MAX_DOWNLOAD_BYTES,
                                 timeout=FETCH_TIMEOUT[1], connect_timeout=FETCH_TIMEOUT[0])
    except urlfetch.FetchError as exc:
        raise ImageError(_why(exc)) from None
    kind = fetched.content_type
    if kind and not kind.startswith("image/") and kind != "application/octet-stream":
        raise ImageError(f"The URL points to {kind}, not an image.")
    return _save(fetched.body)


def _why(exc: urlfetch.FetchError) -> str:
    facts = exc.facts
    if exc.reason == "scheme":
        try:
            check_url(str(facts["url"]))  # words a redirect to file:// like a typed one
        except ImageError as wrong:
            return str(wrong)
    return {
        "no_host": "That URL has no host name.",
        "bad_port": "That URL has an invalid port.",
        "host_unknown": f"The host {facts.get('host')} could not be found.",
        "private": f"The host {facts.get('host')} is a private, loopback or link-local address; "
                   "only public image URLs can be fetched.",
        "status": f"The image URL answered {facts.get('status')} {facts.get('phrase')}.",
        "too_large": f"The image at that URL is larger than {MAX_DOWNLOAD_BYTES // 1_000_000} MB.",
        "timeout": f"The image URL did not answer within {FETCH_TIMEOUT[1]:.0f} s.",
        "redirects": f"The image URL redirected more than {urlfetch.MAX_REDIRECTS} times.",
        "broken": "The download of the image URL broke off.",
    }.get(exc.reason, "The image URL could not be reached.")


def _save(body: bytes) -> Path:
    """Write a downloaded image to a temporary file named for its format, after checking it."""
    fd, name = tempfile.mkstemp(prefix="url-image-")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
        load(path)  # a file that only claims to be an image is caught here, with the usual messages
        with Image.open(path) as img:
            named = path.with_suffix("." + (img.format or "img").lower())
        return path.rename(named)
    except BaseException:
        path.unlink()
        raise
