"""The embedded predictions server over real loopback HTTP, checked against Replicate's contract."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image

from minigpt4_ui.shared import schema
from minigpt4_ui.server import start_background
from minigpt4_ui.server.predictors.builtin import answer, measure, words
from minigpt4_ui.server.prediction_object import new_prediction
from minigpt4_ui.server.store import Store

from .conftest import SERVER_TOKEN, png_bytes

VERSION = "e447a8583cffd86ce3b93f9c2cd24f2eae603d99ace6afa94b33a08e94a3cd06"
AUTH = {"Authorization": f"Bearer {SERVER_TOKEN}"}
PROMPT = "What is in this picture?"
EXPECTED = answer(PROMPT, measure(Image.open(io.BytesIO(png_bytes())).convert("RGB")))


def create(server, image: str, *, prefer: str | None = None, **extra_input) -> requests.Response:
    headers = {**AUTH, **({"Prefer": prefer} if prefer else {})}
    body = {"version": VERSION, "input": {"image": image, "prompt": PROMPT, **extra_input}}
    return requests.post(f"{server.url}/v1/predictions", json=body, headers=headers, timeout=30)


def wait_for(server, prediction_id: str, status: str, deadline_s: float = 10.0) -> dict:
    deadline = time.monotonic() + deadline_s
    while True:
        prediction = requests.get(f"{server.url}/v1/predictions/{prediction_id}", headers=AUTH,
                                  timeout=5).json()
        if prediction["status"] == status or time.monotonic() > deadline:
            return prediction
        time.sleep(0.02)


def sse_raw(url: str, **headers) -> bytes:
    with requests.get(url, headers=headers, stream=True, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].split(";")[0] == "text/event-stream"
        assert response.headers["cache-control"] == "no-store"
        return response.raw.read()


def sse_events(raw: bytes) -> list[dict]:
    """Parse events strictly as the clients do: comments skipped, data lines joined by \\n."""
    parsed = []
    for block in raw.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = {"data": []}
        for line in lines:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                fields["data"].append(value)
            else:
                fields[name] = value
        parsed.append({"event": fields["event"], "id": fields["id"], "data": "\n".join(fields["data"])})
    return parsed


def png_claiming(width: int, height: int) -> str:
    """A tiny PNG data URI whose header claims the given size (its pixel data is empty)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
           + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(png).decode()


def problem(response: requests.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def test_create_returns_a_starting_prediction_with_every_field(server, png_uri):
    image = png_uri()
    response = create(server, image, temperature=0.5)
    assert response.status_code == 201
    body = response.json()
    assert re.fullmatch(r"[0-9a-z]{26}", body["id"])
    assert body["model"] == "daanelson/minigpt-4"
    assert body["version"] == VERSION
    assert body["input"] == {"image": image, "prompt": PROMPT, "temperature": 0.5}
    assert (body["logs"], body["output"], body["error"], body["data_removed"]) == ("", None, None, False)
    assert body["status"] == "starting"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["created_at"])
    assert body["started_at"] is None and body["completed_at"] is None
    assert body["source"] == "api" and body["metrics"] == {}
    base = f"{server.url}/v1"
    assert body["urls"] == {"get": f"{base}/predictions/{body['id']}",
                            "cancel": f"{base}/predictions/{body['id']}/cancel",
                            "stream": f"{base}/streams/{body['id']}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": SERVER_TOKEN},
                                     {"Authorization": f"Basic {SERVER_TOKEN}"}])
def test_requests_without_the_token_get_401(server, headers):
    for method, path in [("GET", "/v1/predictions"), ("GET", "/v1/predictions/x"),
                         ("POST", "/v1/predictions"), ("POST", "/v1/predictions/x/cancel"),
                         ("GET", f"/v1/models/daanelson/minigpt-4/versions/{VERSION}")]:
        response = requests.request(method, server.url + path, headers=headers, timeout=5)
        assert problem(response, 401) == {"title": "Unauthenticated", "status": 401,
                                          "detail": "You did not pass a valid authentication token"}
        assert SERVER_TOKEN not in response.text


@pytest.mark.parametrize("scheme", ["Bearer", "Token", "bearer"])
def test_bearer_and_token_schemes_are_accepted(server, scheme):
    response = requests.get(f"{server.url}/v1/predictions",
                            headers={"Authorization": f"{scheme} {SERVER_TOKEN}"}, timeout=5)
    assert response.status_code == 200


@pytest.mark.parametrize("name, value, kind, description", [
    ("num_beams", 0, "number_gte", "Must be greater than or equal to 1"),
    ("num_beams", 11, "number_lte", "Must be less than or equal to 10"),
    ("temperature", 0, "number_gte", "Must be greater than or equal to 0.01"),
    ("temperature", 2.5, "number_lte", "Must be less than or equal to 2"),
    ("top_p", -0.1, "number_gte", "Must be greater than or equal to 0"),
    ("top_p", 1.5, "number_lte", "Must be less than or equal to 1"),
    ("repetition_penalty", 0, "number_gte", "Must be greater than or equal to 0.01"),
    ("repetition_penalty", 5.5, "number_lte", "Must be less than or equal to 5"),
    ("max_new_tokens", 0, "number_gte", "Must be greater than or equal to 1"),
    ("max_length", 0, "number_gte", "Must be greater than or equal to 1"),
])
def test_out_of_range_inputs_get_422_with_invalid_fields(server, png_uri, name, value, kind, description):
    body = problem(create(server, png_uri(8, 8), **{name: value}), 422)
    assert body == {"title": "Input validation failed", "status": 422,
                    "detail": f"- input.{name}: {description}\n",
                    "invalid_fields": [{"type": kind, "field": f"input.{name}",
                                        "description": description}]}


def test_missing_prompt_and_unknown_body_key_are_reported(server, png_uri):
    response = requests.post(f"{server.url}/v1/predictions", headers=AUTH, timeout=5,
                             json={"version": VERSION, "input": {"image": png_uri(8, 8)}})
    assert problem(response, 422)["invalid_fields"] == [
        {"type": "required", "field": "input", "description": "prompt is required"}]
    response = requests.post(f"{server.url}/v1/predictions", headers=AUTH, timeout=5,
                             json={"input": {}, "model": "daanelson/minigpt-4"})
    assert problem(response, 422) == {
        "title": "Input validation failed", "status": 422,
        "detail": "- version is required\n- Additional property model is not allowed\n",
        "invalid_fields": [
            {"type": "required", "field": "", "description": "version is required"},
            {"type": "additional_property_not_allowed", "field": "",
             "description": "Additional property model is not allowed"}]}


@pytest.mark.parametrize("version", ["0" * 64, "someone/else:" + VERSION, "daanelson/minigpt-4"])
def test_unknown_versions_get_422(server, png_uri, version):
    response = requests.post(f"{server.url}/v1/predictions", headers=AUTH, timeout=5,
                             json={"version": version, "input": {"image": png_uri(8, 8), "prompt": "x"}})
    assert problem(response, 422) == {
        "title": "Invalid version or not permitted", "status": 422,
        "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)"}


def test_malformed_json_gets_400(server):
    response = requests.post(f"{server.url}/v1/predictions", data=b"{not json", timeout=5,
                             headers={**AUTH, "Content-Type": "application/json"})
    assert problem(response, 400)["detail"].startswith("The request body is not valid JSON")


def test_prefer_wait_returns_the_finished_prediction(server, png_uri):
    response = create(server, png_uri(), prefer="wait", top_p=0.5, num_beams=1)
    assert response.status_code == 201
    assert response.headers["Preference-Applied"] == "wait"
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["output"] == EXPECTED
    assert "640×480 landscape image is mostly dark blue and white" in EXPECTED
    assert body["logs"].startswith("image 640x480 RGB\n")
    assert set(body["metrics"]) == {"predict_time", "total_time"}
    assert 0 <= body["metrics"]["predict_time"] <= body["metrics"]["total_time"]
    assert body["started_at"] and body["completed_at"]


def test_owner_name_version_form_is_accepted(server, png_uri):
    response = requests.post(f"{server.url}/v1/predictions", headers={**AUTH, "Prefer": "wait=30"},
                             timeout=30, json={"version": f"daanelson/minigpt-4:{VERSION}",
                                               "input": {"image": png_uri(), "prompt": PROMPT}})
    assert response.headers["Preference-Applied"] == "wait=30"
    assert response.json()["output"] == EXPECTED


def test_prefer_wait_that_runs_out_returns_starting(slow_server, png_uri):
    started = time.monotonic()
    response = create(slow_server, png_uri(), prefer="wait=1")
    assert 0.9 <= time.monotonic() - started < 5
    assert response.headers["Preference-Applied"] == "wait=1"
    body = response.json()
    assert body["status"] == "starting"
    requests.post(body["urls"]["cancel"], headers=AUTH, timeout=10)


def test_get_and_list_walk_every_page_both_ways(png_uri):
    with start_background(token=SERVER_TOKEN, page_size=3) as small:
        ids = [create(small, png_uri(8, 8)).json()["id"] for _ in range(7)]
        assert requests.get(f"{small.url}/v1/predictions/{ids[0]}", headers=AUTH,
                            timeout=5).json()["id"] == ids[0]
        pages, url = [], f"{small.url}/v1/predictions"
        while url:
            pages.append(requests.get(url, headers=AUTH, timeout=5).json())
            url = pages[-1]["next"]
        assert [len(page["results"]) for page in pages] == [3, 3, 1]
        assert [p["id"] for page in pages for p in page["results"]] == ids[::-1]
        assert pages[0]["previous"] is None and pages[1]["previous"].startswith(small.url)
        back = requests.get(pages[2]["previous"], headers=AUTH, timeout=5).json()
        assert [p["id"] for p in back["results"]] == [p["id"] for p in pages[1]["results"]]
        first = requests.get(back["previous"], headers=AUTH, timeout=5).json()
        assert [p["id"] for p in first["results"]] == ids[:3:-1] and first["previous"] is None
        bad = requests.get(f"{small.url}/v1/predictions?cursor=nonsense", headers=AUTH, timeout=5)
        assert problem(bad, 400)["title"] == "Invalid cursor"


def test_cancel_stops_a_running_prediction_and_its_stream(slow_server, png_uri):
    prediction = create(slow_server, png_uri()).json()
    assert wait_for(slow_server, prediction["id"], "processing")["status"] == "processing"
    response = requests.post(prediction["urls"]["cancel"], headers=AUTH, timeout=10)
    assert response.status_code == 200
    canceled = response.json()
    assert canceled["status"] == "canceled"
    assert canceled["completed_at"] and set(canceled["metrics"]) == {"predict_time", "total_time"}
    assert len(words(canceled["output"] or "")) < len(words(EXPECTED))
    done = sse_events(sse_raw(prediction["urls"]["stream"]))[-1]
    assert (done["event"], json.loads(done["data"])) == ("done", {"reason": "canceled"})
    again = requests.post(prediction["urls"]["cancel"], headers=AUTH, timeout=10).json()
    assert again == canceled


def test_cancel_of_a_finished_prediction_changes_nothing(server, png_uri):
    finished = create(server, png_uri(), prefer="wait").json()
    response = requests.post(finished["urls"]["cancel"], headers=AUTH, timeout=10)
    assert response.status_code == 200 and response.json() == finished


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/predictions/nosuchprediction"), ("POST", "/v1/predictions/nosuchprediction/cancel"),
    ("GET", "/v1/streams/nosuchprediction"), ("GET", f"/v1/models/someone/else/versions/{VERSION}"),
    ("GET", "/v1/models/daanelson/minigpt-4/versions/" + "0" * 64), ("GET", "/v1/nothing")])
def test_unknown_resources_get_404(server, method, path):
    body = problem(requests.request(method, server.url + path, headers=AUTH, timeout=5), 404)
    assert body["status"] == 404 and body["detail"] == "The requested resource could not be found."


def test_sse_wire_format_on_raw_bytes(server, png_uri):
    prediction = create(server, png_uri()).json()
    raw = sse_raw(prediction["urls"]["stream"])  # no Authorization: stream URLs are open
    assert raw.startswith(b": hi\n\n") and raw.endswith(b"\n\n")
    assert b"event: output\nid: " in raw and b"\ndata:  landscape\n\n" in raw  # the chunk keeps its space
    parsed = sse_events(raw)
    assert {e["event"] for e in parsed} == {"logs", "output", "done"}
    epoch = parsed[0]["id"].split(":")[0]
    assert [e["id"] for e in parsed] == [f"{epoch}:{n}" for n in range(len(parsed))]
    assert "".join(e["data"] for e in parsed if e["event"] == "output") == EXPECTED
    assert [e["data"] for e in parsed if e["event"] == "output"] == words(EXPECTED)
    assert "".join(e["data"] for e in parsed if e["event"] == "logs").startswith("image 640x480 RGB\n")
    assert (parsed[-1]["event"], parsed[-1]["data"]) == ("done", "{}")


def test_last_event_id_resumes_after_that_event(server, png_uri):
    prediction = create(server, png_uri(), prefer="wait").json()
    full = sse_events(sse_raw(prediction["urls"]["stream"]))
    resumed = sse_events(sse_raw(prediction["urls"]["stream"], **{"Last-Event-ID": full[4]["id"]}))
    assert resumed == full[5:]


def test_max_new_tokens_limits_the_words(server, png_uri):
    body = create(server, png_uri(), prefer="wait", max_new_tokens=5).json()
    assert body["status"] == "succeeded"
    assert body["output"] == "".join(words(EXPECTED)[:5]) and len(body["output"].split()) == 5


@pytest.mark.parametrize("image, error", [
    ("data:image/png;base64,@@not-base64@@", "could not read the image: the data URI is not valid base64"),
    ("data:image/png;base64,aGVsbG8gd29ybGQ=", "could not read the image: not an image file"),
    ("ftp://example.com/cat.png", "could not read the image: expected a data: URI or an http(s) URL"),
    (png_claiming(8000, 8000), "could not read the image: 8000×8000 is more than 50 megapixels"),
    (png_claiming(20000, 20000), "could not read the image: more than 50 megapixels"),
])
def test_a_broken_image_fails_the_prediction_with_a_clear_error(server, image, error):
    body = create(server, image, prefer="wait").json()
    assert (body["status"], body["error"], body["output"]) == ("failed", error, None)
    parsed = sse_events(sse_raw(body["urls"]["stream"]))
    assert [(e["event"], json.loads(e["data"])) for e in parsed[-2:]] == [
        ("error", {"detail": error}), ("done", {"reason": "error"})]


def test_many_concurrent_streams_all_get_the_whole_answer(png_uri):
    with start_background(token=SERVER_TOKEN, tokens_per_second=100) as paced:
        prediction = create(paced, png_uri()).json()
        with ThreadPoolExecutor(max_workers=60) as pool:
            streams = list(pool.map(lambda _: sse_raw(prediction["urls"]["stream"]), range(60)))
    for raw in streams:
        parsed = sse_events(raw)
        assert "".join(e["data"] for e in parsed if e["event"] == "output") == EXPECTED


def test_predictions_survive_a_restart_with_a_database_file(tmp_path, png_uri):
    db = str(tmp_path / "predictions.sqlite3")
    with start_background(token=SERVER_TOKEN, db_path=db) as first:
        before = create(first, png_uri(), prefer="wait").json()
    with start_background(token=SERVER_TOKEN, db_path=db) as second:
        after = requests.get(f"{second.url}/v1/predictions/{before['id']}", headers=AUTH, timeout=5).json()
        listed = requests.get(f"{second.url}/v1/predictions", headers=AUTH, timeout=5).json()
        replay = sse_events(sse_raw(after["urls"]["stream"]))
    assert {**after, "urls": None} == {**before, "urls": None}
    assert [p["id"] for p in listed["results"]] == [before["id"]]
    assert "".join(e["data"] for e in replay if e["event"] == "output") == EXPECTED
    assert (replay[-1]["event"], replay[-1]["data"]) == ("done", "{}")


def test_version_endpoint_publishes_the_schema(server):
    response = requests.get(f"{server.url}/v1/models/daanelson/minigpt-4/versions/{VERSION}",
                            headers=AUTH, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["cog_version"]) == (VERSION, "0.8.6")
    schemas = body["openapi_schema"]["components"]["schemas"]
    assert schemas["Input"] == schema.openapi_input()
    assert schemas["Output"] == {"type": "string", "title": "Output"}


def test_quiet_streams_get_keepalive_comments(png_uri):
    with start_background(token=SERVER_TOKEN, tokens_per_second=1, heartbeat_seconds=0.05) as paced:
        prediction = create(paced, png_uri()).json()
        with requests.get(prediction["urls"]["stream"], stream=True, timeout=10) as response:
            seen = b""
            for piece in response.iter_content(chunk_size=None):
                seen += piece
                if b": keepalive\n\n" in seen:
                    break
        assert b"event: output" in seen  # a keep-alive came while the answer was still arriving


def test_a_restart_fails_predictions_that_were_left_running(tmp_path, png_uri):
    db = str(tmp_path / "predictions.sqlite3")
    store = Store(db)
    store.insert({**new_prediction(model=schema.MODEL, version=VERSION, input={"image": png_uri(8, 8), "prompt": "x"}),
                  "status": "processing"})
    (left,) = store.unfinished()
    store.close()
    with start_background(token=SERVER_TOKEN, db_path=db) as restarted:
        body = requests.get(f"{restarted.url}/v1/predictions/{left['id']}", headers=AUTH, timeout=5).json()
        replay = sse_events(sse_raw(body["urls"]["stream"]))
    assert (body["status"], body["error"]) == ("failed", "the server stopped before this prediction finished")
    assert [e["event"] for e in replay] == ["error", "done"]


class _ImageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path == "/cat.png"
        body = png_bytes() if found else b"no such image"
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # keep test output quiet
        pass


def test_http_image_urls_are_fetched():
    # Loopback image hosts are refused unless allowed (tests/test_server_fetch.py checks that).
    images = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    thread = threading.Thread(target=images.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{images.server_address[1]}"
        with start_background(token=SERVER_TOKEN, tokens_per_second=400,
                              allow_hosts=("127.0.0.1",)) as server:
            found = create(server, f"{base}/cat.png", prefer="wait").json()
            missing = create(server, f"{base}/dog.png", prefer="wait").json()
    finally:
        images.shutdown()
        images.server_close()
        thread.join()
    assert (found["status"], found["output"]) == ("succeeded", EXPECTED)
    assert (missing["status"], missing["error"]) == (
        "failed", f"could not fetch the image: HTTP 404 from 127.0.0.1:{images.server_address[1]}")
