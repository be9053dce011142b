"""The app (`python app.py`) against hostile visitors: image URLs that trickle, a rotated
X-Forwarded-For, pixel-bomb PNGs, and the files a visit leaves behind.
"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from gradio_client import Client, handle_file
from PIL import Image

from minigpt4_ui.app import images
from minigpt4_ui.server import start_background
from minigpt4_ui.replicate_api.sse import iter_events
from minigpt4_ui.app.ui import EXAMPLES

from .apprunner import RunningApp
from .attacks import TrickleServer, pixel_bomb_png
from .fault_proxy import wait_for
from .raw_gradio import Session

ENDING = "Ask MiniGPT-4 itself for that."  # the last words of a full report


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def photo(workdir) -> str:
    path = workdir / "photo.png"
    Image.new("RGB", (120, 90), (200, 40, 40)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def app(workdir):
    """The embedded backend; image URLs may be on loopback (the hostile hosts here are); its
    temporary files go to folders of this test's own. Behind one proxy, so that each URL load can
    come from a visitor of its own (one visitor may hold only a share of the queue)."""
    tmp = workdir / "tmp"
    tmp.mkdir()
    running = RunningApp({"MINIGPT4_ALLOW_PRIVATE_URLS": "1", "MINIGPT4_TOKENS_PER_SECOND": "400",
                          "MINIGPT4_TRUSTED_PROXY_HOPS": "1", "TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio")}, workdir / "app.log")
    running.tmp = tmp
    yield running
    running.close()


def _load_url_event(app) -> tuple[int, int]:
    """(fn_index, trigger id) of the private Load URL click."""
    config = requests.get(app.url + "config", timeout=30).json()
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "load-url")
    dep = next(d for d in config["dependencies"] if [button, "click"] in d["targets"])
    return dep["id"], button


def _join_load_url(app, event: tuple[int, int], url: str) -> str:
    """Joins one Load URL click, as a visitor of its own, and returns its session."""
    session = secrets.token_hex(6)
    visitor = ".".join(str(b) for b in secrets.token_bytes(4))
    requests.post(app.url + "gradio_api/queue/join", timeout=30, headers={"X-Forwarded-For": visitor}, json={
        "data": [url], "fn_index": event[0], "trigger_id": event[1], "session_hash": session,
        "event_data": None}).raise_for_status()
    return session


def _result(app, session: str, timeout: float = 30) -> dict:
    """The completion message of a session's one event, read from the queue's stream."""
    with requests.get(app.url + "gradio_api/queue/data", params={"session_hash": session}, stream=True,
                      timeout=timeout) as response:
        for event in iter_events(response.iter_content(None)):
            message = json.loads(event.data)
            if message.get("msg") == "process_completed":
                return message
    raise AssertionError("the stream ended without a result")


def test_pages_and_answers_are_served_while_64_trickling_url_loads_are_pending(app, photo):
    """Each of 64 visitors' image URLs trickles a header byte every 3 s (a per-read timeout never fires).
    Pages and an ordinary question are served as usual; at most 16 loads hold a thread at once;
    each is cut off at its deadline."""
    event = _load_url_event(app)
    with TrickleServer(phase="headers", interval=3.0) as slow:
        started = time.monotonic()
        for n in range(64):
            _join_load_url(app, event, f"{slow.url}/{n}.png")
        wait_for(lambda: slow.open_connections() >= images.MAX_CONCURRENT_FETCHES, 20, "the loads to start")
        for path in ("", "config", "gradio_api/info"):
            asked = time.monotonic()
            assert requests.get(app.url + path, timeout=10).ok
            assert time.monotonic() - asked < 2, f"/{path} took {time.monotonic() - asked:.1f} s"
        asked = time.monotonic()
        answer = Client(app.url, verbose=False).predict(image=handle_file(photo), prompt="Still there?",
                                                        api_name="/ask")
        assert answer.endswith(ENDING) and time.monotonic() - asked < 10
        assert slow.open_connections() <= images.MAX_CONCURRENT_FETCHES
        wait_for(lambda: slow.served == 64 and slow.open_connections() == 0, 90, "every load to end")
        # Four rounds of 16, each cut off at the 10 s deadline.
        assert time.monotonic() - started < 60


def test_a_trickling_url_load_says_it_timed_out(app):
    with TrickleServer(phase="body", interval=1.0) as slow:
        message = _result(app, _join_load_url(app, _load_url_event(app), slow.url + "/cat.png"))
    assert message["success"]  # said in the message line, the current image kept: no "Error" badge
    assert message["output"]["data"][1]["value"] == (f"That URL didn't work: The image URL did not answer within "
                                            f"{images.FETCH_TIMEOUT[1]:.0f} s. The current image is kept.")


def test_six_pixel_bombs_at_once_stay_within_800_mb(app, workdir):
    """8000×7999 RGBA PNGs of 250 KB each decode to 256 MB; six at once used to take 4.5 GB."""
    bomb = workdir / "bomb.png"
    bomb.write_bytes(pixel_bomb_png())
    status = Path(f"/proc/{app.process.pid}/status")

    def kib(field: str) -> int:
        line = next(line for line in status.read_text().splitlines() if line.startswith(field))
        return int(line.split()[1])

    before = kib("VmRSS:")
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: Client(app.url, verbose=False).predict(
            image=handle_file(str(bomb)), prompt="What is this?", api_name="/ask"), range(6)))
    assert all(answer.endswith(ENDING) for answer in answers)
    growth_mb = (kib("VmHWM:") - before) / 1024
    assert growth_mb <= 800, f"the app grew by {growth_mb:.0f} MB"


@pytest.fixture
def site():
    png = Path(__file__).parent.parent / "assets" / "coffee.jpg"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = png.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_downloads_and_uploads_are_removed_at_exit(workdir, site, photo):
    """Runs its own app: it loads a URL and takes an upload, then is stopped as a host stops it."""
    tmp = workdir / "exit-tmp"
    tmp.mkdir()
    app = RunningApp({"MINIGPT4_ALLOW_PRIVATE_URLS": "1", "TMPDIR": str(tmp),
                      "GRADIO_TEMP_DIR": str(tmp / "gradio")}, workdir / "exit.log")
    try:
        loaded = _result(app, _join_load_url(app, _load_url_event(app), site + "/coffee.jpg"))
        assert loaded["success"], loaded
        assert Client(app.url, verbose=False).predict(image=handle_file(photo), prompt="Hi?",
                                                      api_name="/ask").endswith(ENDING)
        files = lambda: sorted(p.name for p in tmp.rglob("*") if p.is_file())  # noqa: E731
        # Our download and Gradio's copy of it, Gradio's copy of the upload, the predictions.
        assert len([name for name in files() if name.startswith("url-image-")]) == 2
        assert "photo.png" in files() and "predictions.sqlite3" in files()
    finally:
        app.close()  # SIGTERM
    assert app.process.returncode == 0
    # At most Gradio's copies of the app's own example images stay (it keeps those on purpose).
    assert set(files()) <= {name for name, _ in EXAMPLES}, files()
    assert not any(tmp.glob("minigpt4-*")), list(tmp.iterdir())


@pytest.fixture(scope="module")
def paid_app(workdir):
    """The host's token on a predictions server, 3 host-paid questions per visitor an hour, one
    trusted proxy in front (as on a Space)."""
    token = "r8_hostile_host_token_0123456789"
    with start_background(token=token, tokens_per_second=400) as server:
        running = RunningApp({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": token,
                              "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "3", "MINIGPT4_TRUSTED_PROXY_HOPS": "1"},
                             workdir / "paid.log")
        yield running, server, token
        running.close()


def _paid_ask(app, photo: str, prompt: str, *forwarded: str) -> str:
    """`ask` with one X-Forwarded-For line per entry of `forwarded`: "answered" or "refused"."""
    session = Session(app.url, headers=[("X-Forwarded-For", line) for line in forwarded])
    data = session.defaults("ask")
    data[:4] = [session.upload(photo), prompt, data[2], 2]  # max_new_tokens: 2
    done = session.queued("ask", data)
    if done["success"]:
        return "answered"
    assert "This demo allows 3 questions per hour per visitor" in done["output"]["error"]
    return "refused"


def test_a_rotated_x_forwarded_for_does_not_beat_the_hourly_limit(paid_app, photo):
    """Each request carries what the proxy delivers: the client's own (forged, rotated) entries,
    then the address the proxy saw, which the client cannot choose. Issue 18: a forged line of its
    own (only the first line was read) and a port after the address each beat the limit."""
    app, server, token = paid_app
    seen = [f"203.0.113.7{port}" for port in ("", ":5001", ":5002", "", ":5003", ":5004")]
    outcomes = [_paid_ask(app, photo, f"Paid {n}", f"10.9.{n}.1", f"10.8.{n}.1, {proxy}")
                for n, proxy in enumerate(seen)]
    assert outcomes == ["answered"] * 3 + ["refused"] * 3
    # An IPv6 visitor with and without brackets and a port is one visitor too.
    v6 = ["2001:db8:5::9", "[2001:db8:5::9]:443", "[2001:db8:5::9]", "[2001:db8:5:0:1::9]:80"]
    assert [_paid_ask(app, photo, f"Six {n}", f"10.7.{n}.1, {proxy}") for n, proxy in enumerate(v6)] \
        == ["answered"] * 3 + ["refused"]
    # Another visitor, as the proxy saw them, still has their own allowance.
    other = Client(app.url, verbose=False, headers={"X-Forwarded-For": "203.0.113.8"})
    assert other.predict(image=handle_file(photo), prompt="Me", max_new_tokens=2, api_name="/ask")
    listed = requests.get(server.url + "/v1/predictions", headers={"Authorization": f"Bearer {token}"},
                          timeout=5).json()["results"]
    assert len(listed) == 7


def test_a_comparison_larger_than_the_allowance_is_refused_in_words_and_breaks_no_one(paid_app, photo):
    """Issue 18: four contenders against an allowance of 3 raised IndexError in the guard (a red
    "Error"), and the empty history it left broke every visitor's next question."""
    app, _, _ = paid_app
    session = Session(app.url, headers=[("X-Forwarded-For", "203.0.113.60")])
    image = session.upload(photo)
    contenders = ["daanelson/minigpt-4", '{"max_new_tokens": 2}'] * 4
    started = session.defaults("start")
    started[:3], started[3:11] = [image, "Which?", 4], contenders
    assert session.run("start", started)[0] == ""
    data = session.defaults("run")
    data[:5], data[5:13] = [image, "Which?", 4, "", []], contenders
    ran = session.queued("run", data)
    assert ran["success"], ran
    assert ran["output"]["data"][3].startswith("This asks 4 questions at once, and this demo allows 3 per hour")
    # The same visitor and a new one still ask as usual.
    assert _paid_ask(app, photo, "After", "203.0.113.60") == "answered"
    assert _paid_ask(app, photo, "Other", "203.0.113.61") == "answered"
