"""The local server against hostile callers: slow image hosts, webhooks aimed inside, bodies that
never end, forged Authorization headers and malformed requests. Each gets a 4xx with a message (or
its prediction fails cleanly), nothing refused is created, and other callers are served as usual.
"""

from __future__ import annotations

import base64
import json
import re
import select
import socket
import time

import pytest
import requests

from minigpt4_ui.server import RateLimits, start_background

from .attacks import TrickleServer
from .conftest import SERVER_TOKEN
from .fault_proxy import wait_for
from .test_server import AUTH, VERSION, create, sse_raw

PROMPT = "What is this?"


def _count(server) -> int:
    return len(requests.get(f"{server.url}/v1/predictions", headers=AUTH, timeout=10).json()["results"])


# ------------------------------------------------------------------------------ slow image URLs

def test_trickling_image_urls_starve_nothing_and_cancel_ends_their_fetches(png_uri):
    """72 predictions whose image URL trickles a byte every 3 s: more than the server's 64
    prediction workers. An ordinary prediction is still answered at once, and cancel ends the
    fetches in progress (the image host sees its connections closed)."""
    with TrickleServer(phase="body", interval=3.0) as slow, \
            start_background(token=SERVER_TOKEN, tokens_per_second=400,
                             allow_hosts=("127.0.0.1",)) as server:
        stuck = [create(server, f"{slow.url}/{n}.png").json()["id"] for n in range(72)]
        wait_for(lambda: slow.open_connections() >= 16, 10, "the fetches to start")
        started = time.monotonic()
        ordinary = create(server, png_uri(), prefer="wait=10").json()
        assert ordinary["status"] == "succeeded" and time.monotonic() - started < 3
        for prediction_id in stuck:
            requests.post(f"{server.url}/v1/predictions/{prediction_id}/cancel", headers=AUTH, timeout=10)
        wait_for(lambda: slow.open_connections() == 0, 5, "the image host to see every fetch end")
        statuses = {requests.get(f"{server.url}/v1/predictions/{p}", headers=AUTH, timeout=10).json()["status"]
                    for p in stuck}
        assert statuses == {"canceled"}


# ------------------------------------------------------------------------------ webhooks

@pytest.mark.parametrize("hook", ["http://127.0.0.1:9/hook", "http://2130706433:9/hook", "http://localhost:9/",
                                  "http://[::1]:9/", "http://10.0.0.1/hook", "http://169.254.169.254/latest"])
def test_webhooks_aimed_inside_are_refused_and_nothing_is_created(server, png_uri, hook):
    before = _count(server)
    for field in ("webhook", "webhook_completed"):
        response = requests.post(f"{server.url}/v1/predictions", headers=AUTH, timeout=10, json={
            "version": VERSION, "input": {"image": png_uri(), "prompt": PROMPT}, field: hook})
        assert response.status_code == 422
        [invalid] = response.json()["invalid_fields"]
        assert invalid["field"] == field
        assert "is a loopback, private or link-local address; webhooks go only to public addresses" \
            in invalid["description"]
    assert _count(server) == before


# ------------------------------------------------------------------------------ bodies

def _send_chunked_until_answered(url: str, path: str, megabytes: int) -> tuple[float, bytes]:
    """POST a chunked body of `megabytes` MB in 64 KiB chunks, stopping once the server answers
    or drops the connection; returns how many MB were sent and the answer (b"" if the server's
    close reset the connection before it could be read)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SERVER_TOKEN}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
        sent = 0
        while sent < megabytes * 16 and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(chunk)
            except OSError:
                break  # the server stopped reading and closed
            sent += 1
        answer = b""
        try:
            while part := sock.recv(4096):
                answer += part
                head, _, body = answer.partition(b"\r\n\r\n")
                length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                if length and len(body) >= int(length.group(1)):
                    break
        except ConnectionResetError:
            pass
        return sent / 16, answer


def test_a_chunked_body_is_cut_off_at_the_limit_while_it_is_read(server):
    sent, answer = _send_chunked_until_answered(server.url, "/v1/predictions", 200)
    # The server stops reading at 16 MB; what else was sent sat in socket buffers.
    assert sent < 40, f"{sent:.0f} MB were accepted before the server stopped reading"
    if answer:  # closing with the rest unread can reset the connection before this reads it
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert b"The request body is larger than 16 MB" in answer


# ------------------------------------------------------------------------------ tokens

def test_rate_limits_key_on_the_token_not_the_header_spelling():
    with start_background(token=SERVER_TOKEN, rate_limits=RateLimits(other_per_minute=3)) as limited:
        spellings = [f"Bearer {SERVER_TOKEN}", f"Bearer  {SERVER_TOKEN}", f"bearer {SERVER_TOKEN} ",
                     f"Token {SERVER_TOKEN}"]
        answers = [requests.get(f"{limited.url}/v1/predictions", headers={"Authorization": a}, timeout=10)
                   for a in spellings]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        # Forged headers get the caller's address's bucket, never a fresh one each.
        forged = [requests.get(f"{limited.url}/v1/predictions", timeout=10,
                               headers={"Authorization": f"Bearer forged-{n}"}) for n in range(5)]
        assert [r.status_code for r in forged] == [401, 401, 401, 429, 429]


# ------------------------------------------------------------------------------ malformed requests

def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [_cursor("older:" + "9" * 30), _cursor("newer:" + "9" * 5000),
                                    _cursor("older:-1"), "x" * 100_000])
def test_absurd_cursors_get_400(server, cursor):
    response = requests.get(f"{server.url}/v1/predictions", params={"cursor": cursor}, headers=AUTH,
                            timeout=10)
    assert response.status_code == 400 and response.json()["title"] == "Invalid cursor"


def _post_raw(server, body: bytes, **headers) -> requests.Response:
    return requests.post(f"{server.url}/v1/predictions", data=body, timeout=30,
                         headers={**AUTH, "Content-Type": "application/json", **headers})


def _nested(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/models/daanelson/minigpt-4/predictions"])
@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, _nested(100_000).encode(),
                                  json.dumps({"version": VERSION, "input": json.loads(_nested(64))}).encode()],
                         ids=["arrays-100000", "objects-100000", "input-64"])
def test_deeply_nested_json_gets_400(server, path, body):
    before = _count(server)
    response = requests.post(f"{server.url}{path}", data=body, timeout=30,
                             headers={**AUTH, "Content-Type": "application/json"})
    assert (response.status_code, response.json()["detail"]) == (
        400, "The request body is nested more than 64 levels deep")
    assert _count(server) == before


def _upload(server, content: bytes = b"x", **parts) -> requests.Response:
    return requests.post(f"{server.url}/v1/files", headers=AUTH, timeout=30,
                         files={"content": ("a.bin", content), **{k: (None, v) for k, v in parts.items()}})


def _files(server) -> list[dict]:
    response = requests.get(f"{server.url}/v1/files", headers=AUTH, timeout=10)
    assert response.status_code == 200
    return response.json()["results"]


@pytest.mark.parametrize("metadata, description", [
    ("[" * 100_000 + "]" * 100_000, "metadata is nested more than 64 levels deep"),
    # Deep enough to be stored and then break the answer of every later listing of files.
    (_nested(300), "metadata is nested more than 64 levels deep"),
    ('{"a": "\\ud800"}', "metadata has a string with an unpaired UTF-16 surrogate "
                          "(\\ud800-\\udfff); send text as valid Unicode")],
    ids=["arrays-100000", "objects-300", "surrogate"])
def test_file_metadata_that_cannot_be_kept_gets_422_and_nothing_is_stored(server, metadata, description):
    before = _files(server)
    response = _upload(server, metadata=metadata)
    assert response.status_code == 422
    assert response.json()["invalid_fields"] == [
        {"type": "invalid_json", "field": "metadata", "description": description}]
    assert _files(server) == before


def test_file_metadata_as_deep_as_allowed_is_kept_and_listed(server):
    response = _upload(server, metadata=_nested(64))
    assert response.status_code == 201
    file = response.json()
    assert file["metadata"] == json.loads(_nested(64))
    assert requests.get(file["urls"]["get"], headers=AUTH, timeout=10).json() == file
    assert file in _files(server)


@pytest.mark.parametrize("where", ["prompt", "key", "version"])
def test_an_unpaired_surrogate_gets_400_and_nothing_is_created(server, png_uri, where):
    before = _count(server)
    body = {"version": VERSION, "input": {"image": png_uri(), "prompt": PROMPT}}
    if where == "prompt":
        body["input"]["prompt"] = "What is \ud800 this?"
    elif where == "key":
        body["input"]["\udfff"] = 1
    else:
        body["version"] = "\ud800"
    response = _post_raw(server, json.dumps(body).encode())
    assert response.status_code == 400
    assert "unpaired UTF-16 surrogate" in response.json()["detail"]
    assert _count(server) == before


@pytest.mark.parametrize("value", ["100000000000000000000s", "1e20s", "25h", "9" * 400 + "h", "0s"])
def test_out_of_range_cancel_after_gets_400_and_nothing_is_created(server, png_uri, value):
    before = _count(server)
    response = requests.post(f"{server.url}/v1/predictions", timeout=10, headers={**AUTH, "Cancel-After": value},
                             json={"version": VERSION, "input": {"image": png_uri(), "prompt": PROMPT}})
    assert response.status_code == 400
    assert "Cancel-After must be a positive duration of at most 24h" in response.json()["detail"]
    assert _count(server) == before


def test_a_prefer_wait_of_thousands_of_digits_waits_the_longest_allowed(server, png_uri):
    response = create(server, png_uri(), prefer="wait=" + "7" * 5000)
    assert response.status_code == 201 and response.headers["Preference-Applied"] == "wait=60"
    assert response.json()["status"] == "succeeded"


@pytest.mark.parametrize("last_event_id", ["1:" + "9" * 10_000, "9" * 10_000, "1:" + "9" * 19, "1:²",
                                           "1:-1", "1:", "::", "1:0x1"],
                         ids=["10000-digits", "bare-10000-digits", "19-digits", "superscript-two",
                              "negative", "empty", "colons", "hex"])
def test_a_last_event_id_we_did_not_issue_replays_the_whole_stream(server, png_uri, last_event_id):
    prediction = create(server, png_uri(), prefer="wait").json()
    full = sse_raw(prediction["urls"]["stream"])
    assert sse_raw(prediction["urls"]["stream"], **{"Last-Event-ID": last_event_id}) == full


# ------------------------------------------------------------------------------ downloads

@pytest.mark.parametrize("kind", ["text/html", "image/svg+xml", "application/xhtml+xml", "text/javascript",
                                  "application/pdf", "text/plain", "application/octet-stream"])
def test_a_download_of_anything_but_a_raster_image_is_an_opaque_attachment(server, kind):
    content = b"<html><script>alert(document.domain)</script></html>"
    file = requests.post(f"{server.url}/v1/files", headers=AUTH, timeout=10,
                         files={"content": ("page one.html", content, kind)}).json()
    assert file["content_type"] == kind  # the file object still says what was uploaded
    download = requests.get(file["urls"]["get"] + "/download", headers=AUTH, timeout=10)
    assert download.content == content
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"] == "attachment; filename*=UTF-8''page%20one.html"
    assert download.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("kind", ["image/png", "image/jpeg", "image/gif", "image/webp"])
def test_a_download_of_a_raster_image_keeps_its_type_and_is_never_sniffed(server, kind):
    file = requests.post(f"{server.url}/v1/files", headers=AUTH, timeout=10,
                         files={"content": ("cat.png", b"not really an image", kind)}).json()
    download = requests.get(file["urls"]["get"] + "/download", headers=AUTH, timeout=10)
    assert download.headers["content-type"] == kind
    assert download.headers["content-disposition"] == "inline; filename*=UTF-8''cat.png"
    assert download.headers["x-content-type-options"] == "nosniff"


# ------------------------------------------------------------------------------ memory

def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_deleted_files_give_their_memory_back():
    """With the default database (`:memory:`), 50 MB uploaded and deleted must not stay in this
    process's memory (it did: +61 MB, each time the files outnumbered any before)."""
    content = bytes(range(256)) * 20_000  # 5 MB
    with start_background() as server:

        def upload_and_delete(count: int) -> None:
            ids = [requests.post(f"{server.url}/v1/files", files={"content": ("a.bin", content)},
                                 timeout=30).json()["id"] for _ in range(count)]
            for file_id in ids:
                assert requests.delete(f"{server.url}/v1/files/{file_id}", timeout=30).status_code == 204

        upload_and_delete(1)  # the buffers one upload needs are allocated once and kept
        before = _rss_mb()
        upload_and_delete(10)
        grown = _rss_mb() - before
    assert grown < 30, f"{grown:.0f} MB stayed in memory after 50 MB of files were deleted"
