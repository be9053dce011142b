import base64
import io
import os

import pytest
from PIL import Image

from minigpt4_ui.app import images


def _decode(uri: str) -> Image.Image:
    header, _, payload = uri.partition(",")
    assert header == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def _save(tmp_path, name, img, **params):
    path = tmp_path / name
    img.save(path, **params)
    return path


def test_urls_pass_through_unchanged():
    assert images.to_input("https://example.com/cat.jpg?x=1") == "https://example.com/cat.jpg?x=1"


def test_big_photo_becomes_a_small_rgb_jpeg_data_uri(tmp_path):
    path = _save(tmp_path, "big.png", Image.new("RGBA", (4000, 3000), (200, 30, 30, 255)))
    uri = images.to_input(str(path))
    assert len(uri) <= images.MAX_DATA_URI_BYTES
    img = _decode(uri)
    assert img.mode == "RGB" and max(img.size) == images.MAX_SIDE and img.size == (448, 336)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise: the stored landscape is shown as portrait
    path = _save(tmp_path, "rotated.jpg", Image.new("RGB", (400, 200), "white"), exif=exif)
    assert _decode(images.to_input(str(path))).size == (200, 400)


def test_transparency_is_flattened_on_white(tmp_path):
    path = _save(tmp_path, "clear.png", Image.new("RGBA", (50, 50), (0, 0, 0, 0)))
    assert _decode(images.to_input(str(path))).getpixel((25, 25)) == pytest.approx((255, 255, 255), abs=2)


@pytest.mark.parametrize("make", [
    lambda: Image.new("CMYK", (60, 40), (0, 255, 255, 0)),
    lambda: Image.new("I;16", (60, 40), 40000),
    lambda: Image.new("P", (60, 40), 3),
    lambda: Image.new("L", (60, 40), 128),
])
def test_unusual_modes_become_rgb(tmp_path, make):
    img = make()
    fmt = "JPEG" if img.mode == "CMYK" else "PNG"
    path = _save(tmp_path, f"odd.{fmt.lower()}", img, format=fmt)
    assert _decode(images.to_input(str(path))).mode == "RGB"


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    path = _save(tmp_path, "deep.png", Image.new("I;16", (10, 10), 32768))
    assert _decode(images.to_input(str(path))).getpixel((5, 5))[0] == pytest.approx(128, abs=3)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(images.ImageError, match="empty"):
        images.to_input(str(path))


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels")
    with pytest.raises(images.ImageError, match="not an image format"):
        images.to_input(str(path))


def test_truncated_image(tmp_path):
    whole = _save(tmp_path, "whole.png", Image.effect_noise((300, 300), 60))
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:2000])
    with pytest.raises(images.ImageError, match="damaged or truncated"):
        images.to_input(str(cut))


def test_too_many_pixels(tmp_path):
    path = _save(tmp_path, "huge.png", Image.new("1", (9000, 8000)))
    with pytest.raises(images.ImageError, match="megapixels"):
        images.to_input(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(images.ImageError, match="could not be read"):
        images.to_input(str(tmp_path / "gone.png"))


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A loopback web server with an image, a page, a 404, a redirect loop and a slow path."""
    import http.server
    import threading

    png = io.BytesIO()
    Image.new("RGB", (64, 48), "blue").save(png, format="PNG")
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            routes = {
                "/cat.png": (200, "image/png", png.getvalue()),
                "/page": (200, "text/html", b"<html>hello</html>"),
                "/fake.png": (200, "image/png", b"<html>not really</html>"),
            }
            if self.path == "/loop":
                self.send_response(302)
                self.send_header("Location", "/loop")
                self.end_headers()
            elif self.path == "/moved":
                self.send_response(301)
                self.send_header("Location", "/cat.png")
                self.end_headers()
            elif self.path == "/slow":
                release.wait(15)
            elif self.path in routes:
                status, kind, body = routes[self.path]
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    release.set()
    server.shutdown()


def test_fetch_downloads_an_image_url(web):
    path = images.fetch(web + "/moved", allow_private=True)
    assert path.suffix == ".png" and Image.open(path).size == (64, 48)


@pytest.mark.parametrize("path, message", [
    ("/missing", "answered 404"),
    ("/page", "text/html, not an image"),
    ("/fake.png", "not an image format"),
    ("/loop", "redirected more than 5 times"),
])
def test_fetch_names_what_is_wrong(web, path, message):
    with pytest.raises(images.ImageError, match=message):
        images.fetch(web + path, allow_private=True)


def test_fetch_times_out(web, monkeypatch):
    monkeypatch.setattr(images, "FETCH_TIMEOUT", (1.0, 0.3))
    with pytest.raises(images.ImageError, match="did not answer"):
        images.fetch(web + "/slow", allow_private=True)


@pytest.mark.parametrize("url, message", [
    ("file:///etc/passwd", "Only http:// and https://"),
    ("ftp://example.com/a.png", "Only http:// and https://"),
    ("not a url", "Only http:// and https://"),
    ("http://127.0.0.1:9/a.png", "private, loopback or link-local"),
    ("http://169.254.169.254/latest/meta-data", "private, loopback or link-local"),
    ("http://10.1.2.3/a.png", "private, loopback or link-local"),
    ("http://[::1]/a.png", "private, loopback or link-local"),
])
def test_fetch_refuses_other_schemes_and_private_hosts(url, message):
    with pytest.raises(images.ImageError, match=message):
        images.fetch(url)


def test_a_file_is_encoded_once_and_again_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    Image.new("RGB", (80, 60), "red").save(path)
    calls = []
    monkeypatch.setattr(images, "encode", lambda img: calls.append(img.size) or f"data:{len(calls)}")
    assert images.to_input(str(path)) == images.to_input(str(path)) == "data:1"
    Image.new("RGB", (40, 30), "blue").save(path)
    os.utime(path, ns=(1, 1))  # a new mtime, whatever the clock's resolution
    assert images.to_input(str(path)) == "data:2" and calls == [(80, 60), (40, 30)]
