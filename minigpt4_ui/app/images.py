"""Turn the user's image into the `image` input: a URL as given, or a small JPEG data URI.

Also fetches an image URL the user typed, safely, so it can be checked and previewed.
"""

from __future__ import annotations

import atexit
import base64
import functools
import io
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
import urllib.parse
from urllib.parse import urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError

from ..shared import imagelimits, urlfetch
from ..shared.facts import MAX_DATA_URI_BYTES
from ..shared.urlfetch import UrlPolicy

# MiniGPT-4 resizes to 224×224; 448 keeps detail for other backends and still encodes small.
MAX_SIDE = 448
# Below Pillow's own bomb warning (89 MP), so the check below always speaks first.
MAX_PIXELS = 64_000_000
_QUALITIES = (90, 80, 70, 55, 40)
# Pillow cannot `reduce` 16-bit images, which thumbnail() does first for big ones.
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")

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
        with imagelimits.open_image(path, max_pixels=MAX_PIXELS) as img, imagelimits.decode_slot():
            # JPEG drafting decodes at a reduced scale, which is far faster for big photos.
            scale = min(1.0, MAX_SIDE / max(img.size))
            img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
            # Shrink before anything else: exif_transpose copies the image it is given.
            return _to_rgb(ImageOps.exif_transpose(_shrink(img)))
    except imagelimits.TooManyPixels as exc:
        raise ImageError(f"The image is {exc.width}×{exc.height} pixels; images up to "
                         f"{MAX_PIXELS // 1_000_000} megapixels are accepted.") from None
    except UnidentifiedImageError:
        raise ImageError("That file is not an image format this app can read "
                         "(use JPEG, PNG, WebP, GIF or BMP).") from None
    except Image.DecompressionBombError:
        raise ImageError("The image is too large to decode safely "
                         f"(over {MAX_PIXELS // 1_000_000} megapixels).") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"The image file is damaged or truncated ({exc}).") from None


def _shrink(img: Image.Image) -> Image.Image:
    """`img` fitted within MAX_SIDE without a second full-size copy.

    thumbnail() shrinks most modes in place, but resizes RGBA and LA through a full-size
    premultiplied copy, and cannot reduce 16-bit greyscale; RGBA and LA are first reduced here
    strip by strip (a box reduction by a whole factor keeps strips independent).
    """
    factor = max(img.size) // (MAX_SIDE * 2)
    if img.mode in ("RGBA", "LA") and factor >= 2:
        reduced = Image.new(img.mode, (-(-img.width // factor), -(-img.height // factor)))
        rows = factor * 64
        for top in range(0, img.height, rows):
            strip = img.crop((0, top, img.width, min(img.height, top + rows)))
            reduced.paste(strip.reduce(factor), (0, top // factor))
        reduced.info = img.info  # keeps the EXIF orientation
        img = reduced
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BICUBIC,
                  reducing_gap=None if img.mode in _SIXTEEN_BIT else 2.0)
    return img


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
    raise ImageError("The image could not be compressed under the API's "
                     f"{MAX_DATA_URI_BYTES // 1000} KB data-URI limit.")


MAX_DOWNLOAD_BYTES = 20_000_000
FETCH_TIMEOUT = (5.0, 10.0)  # connect, whole fetch (connect, headers and body, by the clock)
# URL loads running at once: each may hold one of Gradio's worker threads until its deadline, so
# a flood of slow URLs must leave most of them to pages, the queue and answers.
MAX_CONCURRENT_FETCHES = 16
# Gradio copies a download into its own cache as `load_url` returns; ours is kept this long.
KEEP_DOWNLOAD_S = 60.0
# (every, older than) in seconds: Gradio deletes its copies of uploads and downloads this old
# (and all of them at exit); a conversation left alone this long has most likely ended.
GRADIO_CACHE_CLEANUP = (900, 7200)


def check_url(url: str) -> str:
    """Return the URL stripped, or raise ImageError if it is not an http(s) URL with a host."""
    url = url.strip()
    if not urlfetch.is_text(url):
        raise ImageError("That URL contains a character that is not text (an unpaired surrogate).")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "http://[::1/x": an unclosed IPv6 bracket
        raise ImageError(f"That URL is not valid ({exc}).") from None
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
        "bad_url": "The image URL redirected to an address that is not valid.",
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


def save_data_uri(uri: str) -> str:
    """A `data:` URI's bytes in a file, unopened, so `load` checks them as it checks an upload
    (pixels counted before any decoding); a URI that is not base64 or percent-encoded data keeps
    its text, which `load` then calls no image."""
    header, _, data = uri.partition(",")
    try:
        body = base64.b64decode(data) if header.endswith(";base64") else urllib.parse.unquote_to_bytes(data)
    except ValueError:
        body = data.encode("utf-8", "replace")
    return str(_stored(body, prefix="data-uri-"))


def _stored(body: bytes, *, prefix: str) -> Path:
    """`body` in a new file of this process's downloads folder, sweeping out old ones."""
    folder = _downloads()
    for old in folder.iterdir():  # copied into Gradio's cache long ago
        try:
            if time.time() - old.stat().st_mtime > KEEP_DOWNLOAD_S:
                old.unlink()
        except FileNotFoundError:
            pass  # another load swept it first
    fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)
    with os.fdopen(fd, "wb") as out:
        out.write(body)
    return Path(name)


def _save(body: bytes) -> Path:
    """Write a downloaded image to a temporary file named for its format, after checking it."""
    path = _stored(body, prefix="url-image-")
    try:
        load(path)  # a file that only claims to be an image is caught here, with the usual messages
        with Image.open(path) as img:
            named = path.with_suffix("." + (img.format or "img").lower())
        return path.rename(named)
    except BaseException:
        path.unlink()
        raise


@functools.lru_cache(maxsize=1)
def _downloads() -> Path:
    """This process's folder of URL downloads, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="minigpt4-url-images-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder
