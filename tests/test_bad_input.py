"""A generated corpus of bad (and awkward but valid) input: every case gets a specific message.

Images and prompts go through the app's public `ask` API (`python app.py` in front of a local
predictions server, whose stored inputs show what reached the API), as uploaded files; parameters too. Image URLs go through the `load_url` handler against a loopback
server. After the whole corpus the app still answers a normal question. The UI handlers never
raise for bad input: they say what is wrong in the app's own words (the control by its label, the
bound in numbers) and leave every component (image, question box, chat) as it was.
"""

from __future__ import annotations

import copy
import io
import json
import random
import socket
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gradio as gr
import pytest
import requests
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageDraw

from minigpt4_ui.app import images
from minigpt4_ui.shared import schema
from minigpt4_ui.server import start_background
from minigpt4_ui.app.settings import Settings
from minigpt4_ui.app.chat_handlers import ChatHandlers
from minigpt4_ui.app.chat_updates import problem
from minigpt4_ui.app.handlers import Studio

from .apprunner import RunningApp
from .handler_inputs import controls

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

ENDING = "Ask MiniGPT-4 itself for that."
TOKEN = "r8_bad_input_test_token_0123456789"
EMPTY = "The image file is empty (0 bytes)"
NOT_IMAGE = "That file is not an image format this app can read (use JPEG, PNG, WebP, GIF or BMP)"
DAMAGED = "The image file is damaged or truncated"
TOO_MANY_PIXELS = "images up to 64 megapixels are accepted"
BOMB = "The image is too large to decode safely (over 64 megapixels)"


# ============================================================================ the image corpus

def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _scene(width: int = 300, height: int = 180) -> Image.Image:
    image = Image.new("RGB", (width, height), (30, 90, 200))
    ImageDraw.Draw(image).rectangle((0, 0, width // 3, height), fill=(240, 240, 240))
    return image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int, rows: int | None = 4) -> bytes:
    """A 1-bit PNG that declares width×height; its data holds `rows` rows (None: all, a real bomb)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    data = zlib.compress(row * (height if rows is None else rows), 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b""))


def _gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(_save(Image.new("P", (8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    return bytes(data)


def _exif_rotated() -> bytes:
    """A 300×180 JPEG whose EXIF says "rotate 90° clockwise" (orientation 6): shown 180×300."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_scene(), "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (200, 120), colour) for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _palette_transparent() -> bytes:
    image = Image.new("P", (160, 100), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    ImageDraw.Draw(image).rectangle((0, 0, 79, 99), fill=1)
    return _save(image, "PNG", transparency=0)


def _png16(width: int = 256, height: int = 128) -> bytes:
    image = Image.linear_gradient("L").resize((width, height)).convert("I")
    image = image.point(lambda v: v * 257).convert("I;16")
    return _save(image, "PNG")


def _rgba() -> bytes:
    image = Image.new("RGBA", (140, 140), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((10, 10, 130, 130), fill=(250, 200, 0, 255))
    return _save(image, "PNG")


def _noise(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


HEIC = (struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
        + struct.pack(">I", 16) + b"meta" + b"\x00" * 8 + _noise(9, 400))
SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100">'
       b'<rect width="200" height="100" fill="red"/></svg>')
GOOD_PNG = _save(_scene(), "PNG")
GOOD_JPEG = _save(_scene(), "JPEG", quality=90)

# (case id, file name, bytes, expected): expected is a message phrase, or ("ok", width, height).
IMAGE_CASES: list[tuple[str, str, bytes, object]] = [
    ("zero-byte png", "empty.png", b"", EMPTY),
    ("zero-byte jpg", "empty.jpg", b"", EMPTY),
    ("zero-byte no extension", "empty", b"", EMPTY),
    *[(f"png truncated at {n}", f"cut{n}.png", GOOD_PNG[:n], NOT_IMAGE) for n in (1, 4, 7, 33)],
    *[(f"png truncated at {n}", f"cut{n}.png", GOOD_PNG[:n], DAMAGED)
      for n in (60, len(GOOD_PNG) // 2, len(GOOD_PNG) - 30)],
    *[(f"jpeg truncated at {n}", f"cut{n}.jpg", GOOD_JPEG[:n], NOT_IMAGE) for n in (1, 2)],
    *[(f"jpeg truncated at {n}", f"cut{n}.jpg", GOOD_JPEG[:n], DAMAGED)
      for n in (300, len(GOOD_JPEG) // 2, len(GOOD_JPEG) - 200)],
    ("png with corrupt image data", "corrupt.png",
     GOOD_PNG[:60] + bytes(b ^ 0x5A for b in GOOD_PNG[60:-12]) + GOOD_PNG[-12:], DAMAGED),
    *[(f"random bytes as {ext}", f"noise.{ext}", _noise(i, 2048), NOT_IMAGE)
      for i, ext in enumerate(("png", "jpg", "gif", "webp", "bmp"))],
    ("text as jpg", "notes.jpg", b"Dear diary, today I uploaded a text file.\n" * 20, NOT_IMAGE),
    ("html as png", "page.png", b"<!doctype html><html><body><img src=x></body></html>", NOT_IMAGE),
    ("json as jpg", "data.jpg", json.dumps({"image": "no"}).encode(), NOT_IMAGE),
    ("pdf as png", "doc.png", b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", NOT_IMAGE),
    ("zip as jpg", "archive.jpg", b"PK\x03\x04" + _noise(3, 500), NOT_IMAGE),
    ("executable as png", "program.png", b"\x7fELF\x02\x01\x01" + _noise(4, 500), NOT_IMAGE),
    ("svg", "drawing.svg", SVG, NOT_IMAGE),
    ("heic", "photo.heic", HEIC, NOT_IMAGE),
    ("100-megapixel png", "huge.png", _png_declaring(10_000, 10_000), "10000×10000 pixels; " + TOO_MANY_PIXELS),
    ("72-megapixel png", "big.png", _png_declaring(9_000, 8_000), "9000×8000 pixels; " + TOO_MANY_PIXELS),
    ("decompression bomb png (400 MP of zeros)", "bomb.png", _png_declaring(20_000, 20_000, rows=None), BOMB),
    ("header-only 900-megapixel png", "bomb2.png", _png_declaring(30_000, 30_000), BOMB),
    ("gif declaring 65535x65535", "bomb.gif", _gif_declaring(65_535, 65_535), BOMB),
    # Valid but awkward: these must work.
    ("animated gif (first frame)", "anim.gif", _animated_gif(), ("ok", 200, 120)),
    ("cmyk jpeg", "cmyk.jpg", _save(_scene(240, 160).convert("CMYK"), "JPEG"), ("ok", 240, 160)),
    ("16-bit png", "deep.png", _png16(), ("ok", 256, 128)),
    ("palette png with transparency", "palette.png", _palette_transparent(), ("ok", 160, 100)),
    ("rgba png", "alpha.png", _rgba(), ("ok", 140, 140)),
    ("la png", "grey-alpha.png", _save(Image.new("LA", (90, 60), (128, 200)), "PNG"), ("ok", 90, 60)),
    ("exif-rotated jpeg", "rotated.jpg", _exif_rotated(), ("ok", 180, 300)),
    ("grayscale jpeg", "grey.jpg", _save(_scene().convert("L"), "JPEG"), ("ok", 300, 180)),
    ("progressive jpeg", "prog.jpg", _save(_scene(), "JPEG", progressive=True), ("ok", 300, 180)),
    ("webp", "scene.webp", _save(_scene(), "WEBP"), ("ok", 300, 180)),
    ("bmp", "scene.bmp", _save(_scene(), "BMP"), ("ok", 300, 180)),
    # Outside the allow-list: TIFF decoders can take far more memory than the file suggests,
    # and EPS would run Ghostscript.
    ("tiff", "scene.tiff", _save(_scene(), "TIFF"), NOT_IMAGE),
    ("eps", "drawing.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", NOT_IMAGE),
    ("16-bit greyscale png, 2400x1600", "deep-big.png", _png16(2400, 1600), ("ok", 448, 299)),
    ("1x1 png", "dot.png", _save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), ("ok", 1, 1)),
    ("4000x2 png (thumbnailed)", "strip.png", _save(Image.new("RGB", (4000, 2), "white"), "PNG"), ("ok", 448, 1)),
    ("png named .jpg", "really-a-png.jpg", GOOD_PNG, ("ok", 300, 180)),
    ("png without extension", "photo", GOOD_PNG, ("ok", 300, 180)),
    ("upper-case extension", "PHOTO.JPEG", GOOD_JPEG, ("ok", 300, 180)),
    ("unicode file name", "фото 写真 📷.png", GOOD_PNG, ("ok", 300, 180)),
]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("corpus")
    for _, name, data, _ in IMAGE_CASES:
        (directory / name).write_bytes(data)
    return directory


@pytest.fixture(scope="module")
def server():
    with start_background(token=TOKEN, tokens_per_second=400) as running:
        yield running


@pytest.fixture(scope="module")
def app(server, tmp_path_factory):
    running = RunningApp({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": TOKEN,
                          "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0"}, tmp_path_factory.mktemp("bad") / "app.log")
    yield running
    running.close()


def _stored(server) -> dict:
    """The newest prediction, as the API stored it: what the app actually sent."""
    return requests.get(f"{server.url}/v1/predictions", headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=10).json()["results"][0]


@pytest.fixture(scope="module")
def client(app):
    return Client(app.url, verbose=False)


@pytest.fixture(scope="module")
def photo(corpus_dir) -> str:
    path = corpus_dir / "good.png"
    path.write_bytes(GOOD_PNG)
    return str(path)


def _ask(client, image, prompt="What is in this picture?", **params) -> str:
    return client.predict(image=handle_file(str(image)) if image else None, prompt=prompt, api_name="/ask",
                          **params)


def _refused(client, image, prompt="What is in this picture?", **params) -> str:
    with pytest.raises(AppError) as caught:
        _ask(client, image, prompt, **params)
    return str(caught.value)


@pytest.mark.parametrize("name, filename, data, expected", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_image_file_through_the_api(client, corpus_dir, name, filename, data, expected):
    path = corpus_dir / filename
    if isinstance(expected, tuple):
        _, width, height = expected
        answer = _ask(client, path)
        orientation = "square" if width == height else "landscape" if width > height else "portrait"
        assert answer.startswith(f"This {width}×{height} {orientation} image")
        assert answer.endswith(ENDING)
    else:
        assert expected in _refused(client, path)


@pytest.mark.parametrize("name, filename, data, expected",
                         [c for c in IMAGE_CASES if not isinstance(c[3], tuple)],
                         ids=[c[0] for c in IMAGE_CASES if not isinstance(c[3], tuple)])
def test_bad_image_is_said_as_soon_as_it_is_uploaded(corpus_dir, name, filename, data, expected):
    """Not only at Send: the page showed a broken-image icon and nothing else until then."""
    said = ChatHandlers.new_image(str(corpus_dir / filename), [])
    assert expected in said["value"] and said["elem_classes"] == ["problem"]


@pytest.mark.parametrize("name, filename, data, expected",
                         [c for c in IMAGE_CASES if not isinstance(c[3], tuple)],
                         ids=[c[0] for c in IMAGE_CASES if not isinstance(c[3], tuple)])
def test_bad_image_leaves_the_chat_and_prompt_in_place(corpus_dir, name, filename, data, expected):
    """The Send handler says why in the message line and skips every other output: prompt, chat stay."""
    studio = Studio(backend=None, settings=Settings())
    history = [{"role": "user", "content": "earlier question"}, {"role": "assistant", "content": "an answer"}]
    kept = copy.deepcopy(history)
    sent = studio.chat.send(None, str(corpus_dir / filename), "Describe it", history, *controls())
    assert expected in sent.message["value"] and sent.message["elem_classes"] == ["problem"]
    assert (sent.chat, sent.prompt, sent.send, sent.stop, sent.new_chat) == (gr.skip(),) * 5
    assert sent.question is None  # the answer step is told there is nothing to answer
    assert studio.slots.current("anonymous") is None
    assert history == kept and (corpus_dir / filename).read_bytes() == data


def test_a_missing_image_is_asked_for(client):
    assert "Add an image first (upload, paste, webcam or an image URL)" in _refused(client, None)


# ============================================================================ prompts

MAX = 16_000
PROMPT_REFUSED = [
    ("1 MB prompt", "x" * 1_000_000, "Prompt: 1,000,000 characters is too long; up to 16,000 are accepted"),
    ("one over the limit", "y" * (MAX + 1), "Prompt: 16,001 characters is too long; up to 16,000 are accepted"),
    ("empty prompt", "", "Type a question first"),
    ("whitespace prompt", " \t\n \u3000 ", "Type a question first"),
    ("NUL byte", "What is\x00 this?", "Prompt: contains a NUL character (\\0)"),
    ("only a NUL byte", "\x00", "Prompt: contains a NUL character (\\0)"),
]


@pytest.mark.parametrize("name, prompt, expected", PROMPT_REFUSED, ids=[c[0] for c in PROMPT_REFUSED])
def test_bad_prompt_is_refused(client, photo, name, prompt, expected):
    assert expected in _refused(client, photo, prompt)


PROMPT_OK = [
    ("emoji", "What colour is this 🦄🎨? 👨‍👩‍👧", "What colour is this 🦄🎨? 👨‍👩‍👧"),
    ("arabic rtl", "ما لون هذه الصورة؟", "ما لون هذه الصورة؟"),
    ("hebrew rtl", "מה יש בתמונה?", "מה יש בתמונה?"),
    ("mixed bidi with override", "Describe \u202eolleh\u202c please", "Describe \u202eolleh\u202c please"),
    ("combining marks", "Ẓ̴̛a̵l̷g̶o̸ text?", "Ẓ̴̛a̵l̷g̶o̸ text?"),
    ("tabs and newlines", "line one\n\tline two\r\nline three", "line one line two line three"),
    ("html and quotes", "<b>bold</b> & \"quoted\" 'text'", "<b>bold</b> & \"quoted\" 'text'"),
    ("exactly the limit", "z" * MAX, None),
]


@pytest.mark.parametrize("name, prompt, quoted", PROMPT_OK, ids=[c[0] for c in PROMPT_OK])
def test_awkward_prompt_works_and_round_trips(client, server, photo, name, prompt, quoted):
    answer = _ask(client, photo, prompt)
    stored = _stored(server)
    assert stored["status"] == "succeeded" and answer == stored["output"]
    assert stored["input"]["prompt"] == prompt  # exactly as typed: nothing stripped, escaped or cut


def test_missing_prompt_is_asked_for(client, photo):
    # gradio_client itself insists on a prompt; a null one reaches the app.
    with pytest.raises(TypeError, match="No value provided for required argument: prompt"):
        client.predict(image=handle_file(photo), api_name="/ask")
    assert "prompt is required" in _refused(client, photo, None)


# ============================================================================ parameters

def _gte(field):
    return f"{field.label} must be at least {field.minimum:g}"


def _lte(field):
    return f"{field.label} must be at most {field.maximum:g}"


def _not_a_number(field):
    return f"{field.label} must be a number"


PARAM_REFUSED: list = []
for _field in schema.PARAMETERS:
    _name = _field.name
    PARAM_REFUSED += [
        (f"{_name} below minimum", _name, _field.minimum - (1 if _field.type is int else 0.5), _gte(_field)),
        (f"{_name} negative", _name, -1000, _gte(_field)),
        (f"{_name} string", _name, "lots", _not_a_number(_field)),
        (f"{_name} numeric string", _name, "3", _not_a_number(_field)),
        (f"{_name} bool", _name, True, _not_a_number(_field)),
        (f"{_name} list", _name, [1], _not_a_number(_field)),
        (f"{_name} object", _name, {"value": 1}, _not_a_number(_field)),
    ]
    if _field.maximum is not None:
        PARAM_REFUSED.append((f"{_name} above maximum", _name, _field.maximum + 1, _lte(_field)))
    if _field.type is int:
        PARAM_REFUSED.append((f"{_name} fractional", _name, 2.5, f"{_field.label} must be a whole number"))


# The model sets no upper bound on these two; the app caps them.
PARAM_REFUSED += [("max_length over the app's cap", "max_length", 10**30, "Max length must be at most 4,096"),
                  ("max_new_tokens over the app's cap", "max_new_tokens", 4097,
                   "Max new tokens must be at most 4,096")]


def _id(case) -> str:
    return case.id if hasattr(case, "id") else case[0]


@pytest.mark.parametrize("name, field, value, expected", PARAM_REFUSED, ids=[_id(c) for c in PARAM_REFUSED])
def test_bad_parameter_names_the_parameter_and_the_limit(client, photo, name, field, value, expected):
    message = _refused(client, photo, **{field: value})
    assert expected in message
    assert f"{field}:" not in message  # the control's label, never the API's field name


def test_every_bad_parameter_is_reported_at_once(client, photo):
    message = _refused(client, photo, "", max_length=0, num_beams=11, temperature="hot", top_p=2)
    for part in ("Type a question first", "Max length must be at least 1", "Beams must be at most 10",
                 "Temperature must be a number", "Top p must be at most 1"):
        assert part in message


def test_send_names_every_bad_control_in_the_chat_flow(photo):
    """The same sentences reach the message line under the chat, with a blank control named too."""
    studio = Studio(backend=None, settings=Settings())
    sent = studio.chat.send(None, photo, " ", [], *controls(max_length=0, max_new_tokens=None, num_beams=11, top_p=2))
    assert sent.message == problem("Max new tokens is empty: enter a number. Type a question first. "
                                   "Max length must be at least 1. Beams must be at most 10. Top p must be at most 1.")


PARAM_OK = [
    ("all missing (defaults)", {}),
    ("explicit None", {"max_length": None, "temperature": None}),
    ("integral float for an int", {"num_beams": 2.0}),
    ("int for a float", {"temperature": 1, "top_p": 1}),
    ("minimums", {"max_length": 1, "max_new_tokens": 1, "num_beams": 1, "repetition_penalty": 0.01,
                  "temperature": 0.01, "top_p": 0}),
    ("maximums", {"num_beams": 10, "repetition_penalty": 5, "temperature": 2, "top_p": 1}),
]


@pytest.mark.parametrize("name, params", PARAM_OK, ids=[_id(c) for c in PARAM_OK])
def test_parameters_at_the_edges_work(client, server, photo, name, params):
    answer = _ask(client, photo, "Edges?", **params)
    stored = _stored(server)
    assert stored["input"]["prompt"] == "Edges?" and answer == stored["output"]
    for field, value in params.items():
        assert stored["input"][field] == (schema.BY_NAME[field].default if value is None else value)
    if params.get("max_new_tokens") == 1:
        assert answer == "This"
    else:
        assert answer.startswith("This 300×180 landscape image") and answer.endswith(ENDING)


def test_unknown_parameter_is_refused_by_the_client(client, photo):
    with pytest.raises(TypeError, match="seed"):
        client.predict(image=handle_file(photo), prompt="hi", seed=3, api_name="/ask")


# ============================================================================ image URLs

def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Site(BaseHTTPRequestHandler):
    """A loopback web site with every way an image URL can go wrong."""

    protocol_version = "HTTP/1.0"
    routes: dict = {}

    def do_GET(self) -> None:  # noqa: N802
        route = self.routes.get(self.path.split("?")[0])
        if route is None:
            self._send(404, b"<h1>Not Found</h1>", "text/html")
        else:
            route(self)

    def _send(self, status, body=b"", kind="image/png", headers=()) -> None:
        self.send_response(status)
        if kind:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _stall(handler) -> None:
    time.sleep(3)


def _broken_download(handler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/png")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    handler.wfile.write(GOOD_PNG[:50])


_Site.routes = {
    "/ok.png": lambda h: h._send(200, GOOD_PNG),
    "/ok.jpg": lambda h: h._send(200, GOOD_JPEG, "image/jpeg; charset=binary"),
    "/octet": lambda h: h._send(200, GOOD_JPEG, "application/octet-stream"),
    "/untyped": lambda h: h._send(200, GOOD_PNG, None),
    "/moved": lambda h: h._send(302, b"", "text/plain", [("Location", "/ok.png")]),
    "/loop": lambda h: h._send(302, b"", "text/plain", [("Location", "/loop")]),
    "/to-file": lambda h: h._send(301, b"", "text/plain", [("Location", "file:///etc/passwd")]),
    "/to-ftp": lambda h: h._send(307, b"", "text/plain", [("Location", "ftp://example.com/a.png")]),
    "/gone": lambda h: h._send(410, b"gone", "text/plain"),
    "/error": lambda h: h._send(500, b"<h1>oops</h1>", "text/html"),
    "/forbidden": lambda h: h._send(403, b"no", "text/plain"),
    "/page": lambda h: h._send(200, b"<!doctype html><title>A page</title>", "text/html; charset=utf-8"),
    "/json": lambda h: h._send(200, b'{"url": "x"}', "application/json"),
    "/svg": lambda h: h._send(200, SVG, "image/svg+xml"),
    "/lying.png": lambda h: h._send(200, b"this is text, whatever the header says", "image/png"),
    "/empty.png": lambda h: h._send(200, b"", "image/png"),
    "/truncated.jpg": lambda h: h._send(200, GOOD_JPEG[: len(GOOD_JPEG) // 2], "image/jpeg"),
    "/bomb.png": lambda h: h._send(200, _png_declaring(20_000, 20_000, rows=None)),
    "/huge.png": lambda h: h._send(200, _png_declaring(10_000, 10_000)),
    "/big.bin": lambda h: h._send(200, b"\x00" * 1_500_000, "image/png"),
    "/stall": _stall,
    "/broken": _broken_download,
}


@pytest.fixture(scope="module")
def site():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fast_fetch(monkeypatch):
    monkeypatch.setattr(images, "FETCH_TIMEOUT", (1.0, 1.0))
    monkeypatch.setattr(images, "MAX_DOWNLOAD_BYTES", 1_000_000)


LOCAL_URL_CASES = [
    ("404", "/missing.png", "The image URL answered 404 Not Found."),
    ("410", "/gone", "The image URL answered 410 Gone."),
    ("403", "/forbidden", "The image URL answered 403 Forbidden."),
    ("500", "/error", "The image URL answered 500 Internal Server Error."),
    ("timeout", "/stall", "The image URL did not answer within 1 s."),
    ("redirect loop", "/loop", "The image URL redirected more than 5 times."),
    ("redirect to file://", "/to-file", "Only http:// and https:// image URLs are supported (got file://)."),
    ("redirect to ftp://", "/to-ftp", "Only http:// and https:// image URLs are supported (got ftp://)."),
    ("html page", "/page", "The URL points to text/html, not an image."),
    ("json", "/json", "The URL points to application/json, not an image."),
    ("svg", "/svg", NOT_IMAGE),
    ("text served as image/png", "/lying.png", NOT_IMAGE),
    ("empty body", "/empty.png", EMPTY),
    ("truncated jpeg", "/truncated.jpg", DAMAGED),
    ("decompression bomb", "/bomb.png", BOMB),
    ("100 megapixels", "/huge.png", TOO_MANY_PIXELS),
    ("larger than the download limit", "/big.bin", "The image at that URL is larger than 1 MB."),
    ("download cut short", "/broken", "The download of the image URL broke off."),
]


def _refused_url(studio: Studio, url: str) -> str:
    """load_url never raises: the image keeps its current value and the message says why."""
    image, message = studio.chat.load_url(url)
    assert image == gr.skip() and message["elem_classes"] == ["problem"]
    return message["value"]


@pytest.mark.parametrize("name, path, expected", LOCAL_URL_CASES, ids=[c[0] for c in LOCAL_URL_CASES])
def test_bad_image_url_is_explained(site, fast_fetch, name, path, expected):
    studio = Studio(backend=None, settings=Settings(allow_private_urls=True))
    message = _refused_url(studio, site + path)
    assert message.startswith("That URL didn't work: ") and message.endswith(" The current image is kept.")
    assert expected in message


@pytest.mark.parametrize("path, size", [("/ok.png", (300, 180)), ("/ok.jpg", (300, 180)), ("/octet", (300, 180)),
                                        ("/untyped", (300, 180)), ("/moved", (300, 180))])
def test_good_image_url_is_loaded(site, fast_fetch, path, size):
    studio = Studio(backend=None, settings=Settings(allow_private_urls=True))
    loaded, message = studio.chat.load_url(f"  {site}{path}  ")
    assert message == ""
    local = Path(loaded)
    try:
        assert images.load(local).size == size
    finally:
        local.unlink()


def test_unreachable_image_url(fast_fetch):
    studio = Studio(backend=None, settings=Settings(allow_private_urls=True))
    assert "The image URL could not be reached." in _refused_url(studio, f"http://127.0.0.1:{_closed_port()}/a.png")


PRIVATE = "is a private, loopback or link-local address; only public image URLs can be fetched."
ADDRESS_CASES = [
    ("loopback", "http://127.0.0.1/a.png", "The host 127.0.0.1 " + PRIVATE),
    ("loopback with port", "http://127.0.0.1:7860/gradio_api/info", "The host 127.0.0.1 " + PRIVATE),
    ("localhost", "http://localhost/a.png", "The host localhost " + PRIVATE),
    ("short loopback", "http://127.1/a.png", "The host 127.1 " + PRIVATE),
    ("decimal loopback", "http://2130706433/a.png", "The host 2130706433 " + PRIVATE),
    ("ipv6 loopback", "http://[::1]/a.png", "The host ::1 " + PRIVATE),
    ("ipv4-mapped ipv6 loopback", "http://[::ffff:127.0.0.1]/a.png", "The host ::ffff:127.0.0.1 " + PRIVATE),
    *[(f"ipv6 {kind} embedding loopback", f"http://[{address}]/a.png", f"The host {address} " + PRIVATE)
      for kind, address in (("nat64", "64:ff9b::7f00:1"), ("6to4", "2002:7f00:1::"),
                            ("ipv4-compatible", "::127.0.0.1"), ("ipv4-translated", "::ffff:0:7f00:1"))],
    ("unspecified", "http://0.0.0.0/a.png", "The host 0.0.0.0 " + PRIVATE),
    ("private 10/8", "http://10.0.0.5/a.png", "The host 10.0.0.5 " + PRIVATE),
    ("private 172.16/12", "http://172.16.5.4/a.png", "The host 172.16.5.4 " + PRIVATE),
    ("private 192.168/16", "https://192.168.1.1/a.png", "The host 192.168.1.1 " + PRIVATE),
    ("carrier-grade nat", "http://100.64.0.1/a.png", "The host 100.64.0.1 " + PRIVATE),
    ("link-local metadata", "http://169.254.169.254/latest/meta-data/", "The host 169.254.169.254 " + PRIVATE),
    ("ipv6 link-local", "http://[fe80::1]/a.png", "The host fe80::1 " + PRIVATE),
    ("ipv6 unique local", "http://[fd00::1]/a.png", "The host fd00::1 " + PRIVATE),
    ("multicast", "http://224.0.0.1/a.png", "The host 224.0.0.1 " + PRIVATE),
    ("unknown host", "http://no-such-host.invalid/a.png", "The host no-such-host.invalid could not be found."),
]


@pytest.mark.parametrize("name, url, expected", ADDRESS_CASES, ids=[c[0] for c in ADDRESS_CASES])
def test_private_addresses_are_refused(name, url, expected):
    studio = Studio(backend=None, settings=Settings(allow_private_urls=False))
    assert expected in _refused_url(studio, url)


SCHEME_CASES = [
    ("file", "file:///etc/passwd", "Only http:// and https:// image URLs are supported (got file://)."),
    ("ftp", "ftp://example.com/a.png", "Only http:// and https:// image URLs are supported (got ftp://)."),
    ("gopher", "gopher://example.com/", "Only http:// and https:// image URLs are supported (got gopher://)."),
    ("data", "data:image/png;base64,iVBORw0KGgo=", "Only http:// and https:// image URLs are supported (got data://)."),
    ("javascript", "javascript:alert(1)", "Only http:// and https:// image URLs are supported (got javascript://)."),
    ("no scheme", "example.com/a.png", "Only http:// and https:// image URLs are supported."),
    ("no host", "http:///a.png", "That URL has no host name."),
    ("unclosed ipv6 bracket", "http://[::1/x", "That URL is not valid (Invalid IPv6 URL)."),
    ("empty", "", "Paste an image URL first."),
    ("blank", "   \t", "Paste an image URL first."),
]


@pytest.mark.parametrize("name, url, expected", SCHEME_CASES, ids=[c[0] for c in SCHEME_CASES])
def test_unsupported_urls_are_refused(name, url, expected):
    studio = Studio(backend=None, settings=Settings(allow_private_urls=True))
    assert expected in _refused_url(studio, url)


# ============================================================================ afterwards

def test_the_corpus_is_big_enough():
    cases = (len(IMAGE_CASES) + len(PROMPT_REFUSED) + len(PROMPT_OK) + len(PARAM_REFUSED) + len(PARAM_OK)
             + len(LOCAL_URL_CASES) + len(ADDRESS_CASES) + len(SCHEME_CASES))
    assert cases >= 100


def test_the_app_still_serves_after_the_corpus(app, photo):
    """Runs after everything above, on a fresh session: a normal question gets a full answer."""
    answer = _ask(Client(app.url, verbose=False), photo, "Are you still there?")
    assert answer.startswith("This 300×180 landscape image") and answer.endswith(ENDING)
    # Expected user errors are messages, not crashes: nothing was logged as a traceback.
    assert "Traceback" not in app.output(), app.output()[-3000:]
