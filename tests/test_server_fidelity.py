"""Files API, Cancel-After deadlines, the models endpoint, rate limits and safe image fetching."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from minigpt4_ui.server import RateLimits, start_background
from minigpt4_ui.server.image_input import ImageInputError, UrlPolicy, fetch

from .conftest import SERVER_TOKEN, png_bytes
from .test_server import AUTH, EXPECTED, PROMPT, VERSION, create, problem, wait_for


def upload(server, content: bytes, *, name="cat.png", kind="image/png", metadata=None):
    data = {} if metadata is None else {"metadata": json.dumps(metadata)}
    return requests.post(f"{server.url}/v1/files", headers=AUTH, timeout=10, data=data,
                         files={"content": (name, content, kind)})


# ------------------------------------------------------------------------------ Files API

def test_upload_get_list_download_delete(server):
    content = png_bytes()
    response = upload(server, content, metadata={"purpose": "test"})
    assert response.status_code == 201
    file = response.json()
    assert set(file) == {"id", "name", "content_type", "size", "etag", "checksums", "metadata",
                         "created_at", "expires_at", "urls"}
    assert (file["name"], file["content_type"], file["size"]) == ("cat.png", "image/png", len(content))
    assert file["etag"] == file["checksums"]["md5"] == hashlib.md5(content).hexdigest()
    assert file["checksums"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert file["metadata"] == {"purpose": "test"}
    assert file["expires_at"] > file["created_at"]
    assert file["urls"] == {"get": f"{server.url}/v1/files/{file['id']}"}
    assert requests.get(file["urls"]["get"], headers=AUTH, timeout=5).json() == file
    listed = requests.get(f"{server.url}/v1/files", headers=AUTH, timeout=5).json()
    assert listed["results"][0] == file and set(listed) == {"next", "previous", "results"}
    download = requests.get(file["urls"]["get"] + "/download", headers=AUTH, timeout=5)
    assert download.content == content and download.headers["content-type"] == "image/png"
    deleted = requests.delete(file["urls"]["get"], headers=AUTH, timeout=5)
    assert deleted.status_code == 204 and deleted.content == b""
    assert problem(requests.get(file["urls"]["get"], headers=AUTH, timeout=5), 404)
    assert problem(requests.delete(file["urls"]["get"], headers=AUTH, timeout=5), 404)


def test_files_need_the_token_and_content(server):
    assert requests.get(f"{server.url}/v1/files", timeout=5).status_code == 401
    response = requests.post(f"{server.url}/v1/files", headers=AUTH, timeout=5,
                             files={"other": ("x", b"x")})
    assert problem(response, 422)["invalid_fields"][0]["description"] == "content is required"
    bad = requests.post(f"{server.url}/v1/files", headers=AUTH, timeout=5,
                        data={"metadata": "[1]"}, files={"content": ("x", b"x")})
    assert problem(bad, 422)["invalid_fields"][0]["field"] == "metadata"


def test_a_file_url_works_as_the_image_input_without_any_allow_option(server):
    file = upload(server, png_bytes()).json()
    body = create(server, file["urls"]["get"], prefer="wait").json()
    assert (body["status"], body["output"]) == ("succeeded", EXPECTED)
    assert body["input"]["image"] == file["urls"]["get"]
    requests.delete(file["urls"]["get"], headers=AUTH, timeout=5)
    gone = create(server, file["urls"]["get"], prefer="wait").json()
    assert gone["status"] == "failed" and "does not exist or has expired" in gone["error"]


def test_files_expire():
    with start_background(token=SERVER_TOKEN, file_ttl_seconds=0.3) as short:
        file = upload(short, b"hello", name="a.txt", kind="text/plain").json()
        assert requests.get(file["urls"]["get"], headers=AUTH, timeout=5).status_code == 200
        time.sleep(0.5)
        assert requests.get(file["urls"]["get"], headers=AUTH, timeout=5).status_code == 404
        assert requests.get(f"{short.url}/v1/files", headers=AUTH, timeout=5).json()["results"] == []


def test_oversized_upload_gets_413(server):
    from minigpt4_ui.server.routes.files import MAX_FILE_BYTES
    response = upload(server, b"x" * (MAX_FILE_BYTES + 2_000_000))
    assert problem(response, 413)["title"] == "Request Entity Too Large"


# ------------------------------------------------------------------------------ deadlines

def test_cancel_after_cancels_a_running_prediction(slow_server, png_uri):
    headers = {**AUTH, "Cancel-After": "1s"}
    response = requests.post(f"{slow_server.url}/v1/predictions", headers=headers, timeout=10,
                             json={"version": VERSION, "input": {"image": png_uri(), "prompt": PROMPT}})
    created = response.json()
    assert created["deadline"] and created["deadline"] > created["created_at"]
    final = wait_for(slow_server, created["id"], "canceled", deadline_s=5)
    assert final["status"] == "canceled" and final["started_at"]


def test_cancel_after_aborts_a_prediction_that_never_started(png_uri):
    with start_background(token=SERVER_TOKEN, tokens_per_second=4,
                          max_concurrent_predictions=1) as busy:
        first = create(busy, png_uri()).json()
        body = {"version": VERSION, "input": {"image": png_uri(), "prompt": PROMPT}}
        queued = requests.post(f"{busy.url}/v1/predictions", json=body, timeout=10,
                               headers={**AUTH, "Cancel-After": "300ms", "Prefer": "wait=5"}).json()
        assert queued["status"] == "aborted" and queued["started_at"] is None
        assert queued["completed_at"] and "predict_time" not in queued["metrics"]
        requests.post(first["urls"]["cancel"], headers=AUTH, timeout=10)


@pytest.mark.parametrize("value", ["soon", "0s", "-5s", "1d", ""])
def test_bad_cancel_after_gets_400(server, png_uri, value):
    response = requests.post(f"{server.url}/v1/predictions", timeout=5,
                             headers={**AUTH, "Cancel-After": value},
                             json={"version": VERSION, "input": {"image": png_uri(8, 8), "prompt": "x"}})
    assert problem(response, 400)["title"] == "Invalid Cancel-After header"


@pytest.mark.parametrize("value, seconds", [("30", 30), ("1.5s", 1.5), ("500ms", 0.5), ("5m", 300),
                                            ("1h30m", 5400)])
def test_cancel_after_grammar(value, seconds):
    from minigpt4_ui.server.routes.predictions import parse_duration
    assert parse_duration(value) == seconds


def test_prefer_wait_equals_n(server, png_uri):
    response = create(server, png_uri(), prefer="wait=5")
    assert response.headers["Preference-Applied"] == "wait=5"
    assert response.json()["status"] == "succeeded"


# ------------------------------------------------------------------------------ models endpoint

def test_models_endpoint_creates_a_prediction_of_the_latest_version(server, png_uri):
    response = requests.post(f"{server.url}/v1/models/daanelson/minigpt-4/predictions",
                             headers={**AUTH, "Prefer": "wait"}, timeout=30,
                             json={"input": {"image": png_uri(), "prompt": PROMPT}})
    assert response.status_code == 201
    body = response.json()
    assert (body["model"], body["version"], body["output"]) == ("daanelson/minigpt-4", VERSION, EXPECTED)


def test_models_endpoint_rejects_unknown_models_and_keys(server, png_uri):
    body = {"input": {"image": png_uri(8, 8), "prompt": PROMPT}}
    other = requests.post(f"{server.url}/v1/models/someone/else/predictions", headers=AUTH,
                          timeout=5, json=body)
    assert problem(other, 422)["title"] == "Invalid version or not permitted"
    extra = requests.post(f"{server.url}/v1/models/daanelson/minigpt-4/predictions", headers=AUTH,
                          timeout=5, json={**body, "version": VERSION, "model": "x"})
    assert [f["description"] for f in problem(extra, 422)["invalid_fields"]] == [
        "Additional property version is not allowed", "Additional property model is not allowed"]


# ------------------------------------------------------------------------------ rate limits

def test_rate_limits_are_off_by_default(server):
    response = requests.get(f"{server.url}/v1/predictions", headers=AUTH, timeout=5)
    assert "ratelimit-remaining" not in response.headers


def test_rate_limits_answer_429_with_retry_after(png_uri):
    limits = RateLimits(create_per_minute=2, other_per_minute=3)
    with start_background(token=SERVER_TOKEN, rate_limits=limits) as limited:
        gets = [requests.get(f"{limited.url}/v1/predictions", headers=AUTH, timeout=5)
                for _ in range(4)]
        assert [r.status_code for r in gets] == [200, 200, 200, 429]
        assert [r.headers["ratelimit-remaining"] for r in gets[:3]] == ["2", "1", "0"]
        assert gets[0].headers["ratelimit-limit"] == "3"
        throttled = problem(gets[3], 429)
        assert throttled["detail"].startswith("Request was throttled.")
        assert gets[3].headers["Retry-After"].isdigit() and int(gets[3].headers["Retry-After"]) >= 1
        creates = [create(limited, png_uri(8, 8)) for _ in range(3)]
        assert [r.status_code for r in creates] == [201, 201, 429]  # a separate budget
        other_token = requests.get(f"{limited.url}/v1/predictions", timeout=5,
                                   headers={"Authorization": "Bearer someone-else"})
        assert other_token.status_code == 401  # its own bucket, then the auth check


# ------------------------------------------------------------------------------ safe fetching

class _Images(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.path.partition("to=")[2])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(1.5)
        body = png_bytes() if self.path != "/big" else b"x" * 3_000_000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the fetcher gave up first, as it should
            pass

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def images():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_loopback_image_urls_are_refused_by_default(server, images):
    body = create(server, f"{images}/cat.png", prefer="wait").json()
    assert body["status"] == "failed"
    assert body["error"] == ("could not fetch the image: 127.0.0.1 is a loopback, private or "
                             "link-local address; only public image URLs are fetched")


@pytest.mark.parametrize("url", ["http://10.1.2.3/x.png", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/x.png", "http://[::ffff:127.0.0.1]/x.png",
                                 "http://localhost/x.png", "http://0.0.0.0/x.png"])
def test_private_and_link_local_addresses_are_refused(url):
    with pytest.raises(ImageInputError, match="loopback, private or link-local"):
        fetch(url, max_bytes=1000, timeout=1)


def test_allow_list_by_name_and_network(images):
    port = images.rpartition(":")[2]
    for entry in ("127.0.0.1", "127.0.0.0/8", "localhost", "*"):
        url = f"http://{'localhost' if entry == 'localhost' else '127.0.0.1'}:{port}/cat.png"
        assert fetch(url, max_bytes=10_000_000, timeout=5, policy=UrlPolicy((entry,)))
    with pytest.raises(ImageInputError):
        fetch(f"http://127.0.0.1:{port}/cat.png", max_bytes=10_000_000, timeout=5,
               policy=UrlPolicy(("10.0.0.0/8", "example.com")))


def test_every_redirect_hop_is_checked(images):
    allowed = UrlPolicy(("127.0.0.1",))
    assert fetch(f"{images}/redirect?to=/cat.png", max_bytes=10_000_000, timeout=5, policy=allowed)
    with pytest.raises(ImageInputError, match="loopback, private or link-local"):
        fetch(f"{images}/redirect?to=http://10.0.0.1/x.png", max_bytes=10_000_000, timeout=5,
               policy=allowed)
    with pytest.raises(ImageInputError, match="only http"):
        fetch(f"{images}/redirect?to=file:///etc/passwd", max_bytes=10_000_000, timeout=5,
               policy=allowed)


def test_size_and_time_limits(images):
    allowed = UrlPolicy(("127.0.0.1",))
    with pytest.raises(ImageInputError, match="larger than 1 MB"):
        fetch(f"{images}/big", max_bytes=1_000_000, timeout=5, policy=allowed)
    started = time.monotonic()
    with pytest.raises(ImageInputError, match="within 0.5 s"):
        fetch(f"{images}/slow", max_bytes=10_000_000, timeout=0.5, policy=allowed)
    assert time.monotonic() - started < 1.4
