"""Hostile visitors against `python app.py`: pixel bombs, trickling image URLs, a rotated
X-Forwarded-For.

One app, on the host's token against a predictions server in its own process, with one trusted
proxy in front (as on a Space: each request's X-Forwarded-For ends with the address the proxy
saw) and image URLs allowed on loopback (where the hostile image host runs).

1. Six 8000×7999 RGBA PNGs (250 KB each, 256 MB decoded) asked about at once: the app's growth,
   VmHWM after minus VmRSS before (`/proc/<pid>/status`).
2. 64 *Load URL* requests (64 visitors) to a server that sends its status line and then one header byte every
   3 s: page latency (`/`, `/config`) and an ordinary question while they are pending, against
   the same before the flood; then how long until the image host sees every connection end.
3. Six questions whose X-Forwarded-For starts with a different forged address each time, with the
   hourly limit at 3: how many are answered on the host's token.
4. A 56 MB JSON body (800k chat messages) to `/gradio_api/run/predict` and `/gradio_api/queue/join`,
   declared and chunked: its answer, pages meanwhile, the app's peak growth and where it settles.
5. Pixel bombs as `data:` URIs: one 13000×13000 PNG, then three 9000×9000 at once.
6. A forged chat history: 60k messages (refused by the body's shape) and 404 (by the chat's limit).
   While each of 4–6 runs, another visitor asks a question and fetches pages.
7. One visitor joining 200 *Load URL* events against the trickling host: how many the queue takes,
   and 10 other visitors' questions meanwhile.

8. Beacon fetches: every construct that can make a browser load a URL, in every markdown context,
   shown in Chromium as answers, model error texts and prompts (`tests/e2e/test_beacons.py`, run
   from here; full mode only): requests the beacon server had.

    python bench/hostile.py [--quick]
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import App, Server, header, rss_kib, table, targets  # noqa: E402

import requests  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from minigpt4_ui.app.chat_messages import TOO_LONG  # noqa: E402
from minigpt4_ui.shared.schema import PARAMETERS  # noqa: E402
from tests.attacks import TrickleServer, pixel_bomb_png  # noqa: E402

LIMIT = 3


def vm(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` figure in KiB (VmHWM: the peak resident set)."""
    line = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith(field))
    return int(line.split()[1])


def ask(app: App, image: str, visitor: str) -> float:
    """Seconds for one question, from a visitor as the proxy saw them."""
    started = time.perf_counter()
    Client(app.url, verbose=False, headers={"X-Forwarded-For": visitor}).predict(
        image=handle_file(image), prompt="What is this?", max_new_tokens=8, api_name="/ask")
    return time.perf_counter() - started


def page_seconds(app: App) -> float:
    """The slowest of `/` and `/config`, each fetched three times."""
    slowest = 0.0
    for _ in range(3):
        for path in ("", "config"):
            started = time.perf_counter()
            requests.get(app.url + path, timeout=60).raise_for_status()
            slowest = max(slowest, time.perf_counter() - started)
    return slowest


def join_load_url(app: App, url: str, visitor: str) -> None:
    """Joins one *Load URL* click from `visitor`, as the proxy saw them."""
    config = requests.get(app.url + "config", timeout=30).json()
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "load-url")
    dep = next(d for d in config["dependencies"] if [button, "click"] in d["targets"])
    requests.post(app.url + "gradio_api/queue/join", timeout=30, headers={"X-Forwarded-For": visitor}, json={
        "data": [url], "fn_index": dep["id"], "trigger_id": button, "session_hash": secrets.token_hex(6),
        "event_data": None}).raise_for_status()


def answered_count(app: App, photo: str, visitors: list[str]) -> int:
    """How many of `visitors` (X-Forwarded-For values) got an answer to one question each."""
    count = 0
    for visitor in visitors:
        try:
            ask(app, photo, visitor)
            count += 1
        except AppError:
            pass
    return count


class Peak:
    """The app's resident memory sampled every 20 ms while a block runs, in MB over `before`."""

    def __init__(self, pid: int):
        self.pid = pid

    def __enter__(self) -> "Peak":
        self.before = self.top = rss_kib(self.pid)
        self._done = threading.Event()

        def sample():
            while not self._done.wait(0.02):
                self.top = max(self.top, rss_kib(self.pid))
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.growth_mb = (self.top - self.before) / 1024


def dependency(app: App, api_name: str) -> int:
    config = requests.get(app.url + "config", timeout=30).json()
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)


class Others:
    """What other visitors met while attacks ran: the slowest page, and their questions."""

    def __init__(self, app: App, photo: str):
        self.app, self.photo = app, photo
        self.slowest = 0.0
        self.asked = self.answered = 0

    def during(self, attack):
        """`attack()`'s result; meanwhile other visitors fetch pages and ask one question."""
        result: list = []
        thread = threading.Thread(target=lambda: result.append(attack()))
        thread.start()
        self.asked += 1
        self.answered += answered_count(self.app, self.photo, [f"192.0.2.{100 + self.asked}"])
        self.slowest = max(self.slowest, page_seconds(self.app))
        while thread.is_alive():
            self.slowest = max(self.slowest, page_seconds(self.app))
        thread.join()
        return result[0]


def beacon_fetches() -> tuple[int | None, str]:
    """Fetches a beacon server had after Chromium showed every fetching construct as answers,
    error texts and prompts (`tests/e2e/test_beacons.py`), and what it says it showed."""
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                          "tests/e2e/test_beacons.py"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    found = re.search(r"beacons: (\d+) fetches after (\d+) constructs as answers and as errors, (\d+) prompts",
                      run.stdout)
    if not found:
        return None, "not run: " + (run.stdout.strip().splitlines() or ["no output"])[-1]
    return int(found[1]), f"{found[2]} constructs as answers and as errors, {found[3]} prompts, in Chromium"


def data_uri_ask(app: App, png: bytes) -> str:
    """What `/ask` says of a PNG sent as a `data:` URI."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    event = requests.post(app.url + "gradio_api/call/ask", timeout=60, json={
        "data": [{"url": uri, "path": None, "meta": {"_type": "gradio.FileData"}}, "What is this?",
                 *[field.default for field in PARAMETERS]]}).json()["event_id"]
    return requests.get(app.url + f"gradio_api/call/ask/{event}", timeout=120).text


def chat(messages: int) -> list[dict]:
    return [{"role": role, "content": [{"type": "text", "text": "Hi there"}], "metadata": None, "options": None}
            for _, role in zip(range(messages), ["user", "assistant"] * messages)]


def main() -> None:
    quick = _common.quick_flag(__doc__)
    header("Hostile visitors: pixel bombs, trickling image URLs, rotated X-Forwarded-For", quick)
    bombs, loads = (2, 16) if quick else (6, 64)
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp, Server(tokens_per_second=400) as server, \
            App({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": server.token,
                 "MINIGPT4_VISITOR_LIMIT_PER_HOUR": str(LIMIT), "MINIGPT4_TRUSTED_PROXY_HOPS": "1",
                 "MINIGPT4_ALLOW_PRIVATE_URLS": "1"}) as app:
        app.wait_ready()
        photo = _common.small_jpeg_file(tmp)
        bomb = Path(tmp) / "bomb.png"
        bomb.write_bytes(pixel_bomb_png())
        visitors = iter(f"203.0.113.{n}" for n in range(1, 250))

        # 1. pixel bombs
        ask(app, photo, next(visitors))  # warm: first-question costs are not the bombs'
        before = rss_kib(app.pid)
        started = time.perf_counter()
        with ThreadPoolExecutor(bombs) as pool:
            list(pool.map(lambda visitor: ask(app, str(bomb), visitor), [next(visitors) for _ in range(bombs)]))
        bomb_s = time.perf_counter() - started
        growth_mb = (vm(app.pid, "VmHWM:") - before) / 1024

        # 2. trickling URL loads
        calm_page, calm_ask = page_seconds(app), ask(app, photo, next(visitors))
        with TrickleServer(phase="headers", interval=3.0) as slow:
            flood = time.perf_counter()
            for n in range(loads):
                join_load_url(app, f"{slow.url}/{n}.png", f"198.18.0.{n + 1}")
            while slow.open_connections() < min(loads, 16):
                time.sleep(0.05)
            flooded_page, flooded_ask = page_seconds(app), ask(app, photo, next(visitors))
            peak_open = slow.open_connections()
            while slow.served < loads or slow.open_connections():
                time.sleep(0.05)
            drained_s = time.perf_counter() - flood

        # 3. rotated X-Forwarded-For
        answered = answered_count(app, photo, [f"10.9.{n}.1, 203.0.113.250" for n in range(6)])

        # 4. a 56 MB body, declared and chunked, to the direct route and the queue
        messages = json.dumps([{"role": "user", "content": "x" * 40}] * 800_000)
        body = f'{{"fn_index": {dependency(app, "new_image")}, "data": [null, {messages}]}}'.encode()
        others = Others(app, photo)
        others.during(lambda: None)  # the baseline includes what serving another visitor costs
        others.asked = others.answered = 0
        baseline = rss_kib(app.pid)
        statuses = []
        with Peak(app.pid) as body_peak:
            for path in ("gradio_api/run/predict", "gradio_api/queue/join"):
                for chunked in (False, True):
                    data = (body[i:i + 1_000_000] for i in range(0, len(body), 1_000_000)) if chunked else body
                    statuses.append(others.during(lambda: requests.post(
                        app.url + path, data=data, timeout=120,
                        headers={"Content-Type": "application/json"}).status_code))
        body_settled = rss_kib(app.pid) / baseline - 1

        # 5. pixel bombs as data: URIs
        thirteen = pixel_bomb_png(13000, 13000)
        with Peak(app.pid) as uri_peak:
            started = time.perf_counter()
            said = others.during(lambda: data_uri_ask(app, thirteen))
            uri_s = time.perf_counter() - started
        nine = pixel_bomb_png(9000, 9000)
        with Peak(app.pid) as uris_peak, ThreadPoolExecutor(3) as pool:
            said3 = others.during(lambda: list(pool.map(lambda _: data_uri_ask(app, nine), range(3))))
        uri_refused = "megapixels are accepted" in said and all("megapixels are accepted" in s for s in said3)

        # 6. a forged chat history
        forged = {}
        undo = dependency(app, "undo")
        for count in (60_000, 404):
            forged_body = json.dumps({"fn_index": undo, "data": [chat(count)], "session_hash": secrets.token_hex(6)})
            started = time.perf_counter()
            forged[count] = others.during(lambda: requests.post(
                app.url + "gradio_api/run/predict", timeout=120, data=forged_body,
                headers={"Content-Type": "application/json"}))
            forged[count].seconds = time.perf_counter() - started

        # 7. one visitor fills the queue
        load_url = dependency(app, "load_url")
        with TrickleServer(phase="headers", interval=3.0) as slow:
            joined = [requests.post(app.url + "gradio_api/queue/join", timeout=30,
                                    headers={"X-Forwarded-For": "198.51.100.9"}, json={
                                        "data": [f"{slow.url}/{n}.png"], "fn_index": load_url,
                                        "session_hash": secrets.token_hex(6)}).status_code for n in range(200)]
            flood_page = page_seconds(app)
            queue_answered = answered_count(app, photo, [f"192.0.2.{n + 1}" for n in range(10)])
            while slow.open_connections():
                time.sleep(0.05)
        after = rss_kib(app.pid)
        settled = after / baseline - 1
    beacons, beacons_shown = (None, "not run in quick mode") if quick else beacon_fetches()

    print(f"\n{bombs} pixel-bomb PNGs at once; {loads} trickling URL loads (a byte every 3 s)")
    table([("app memory growth, pixel bombs at once", f"{growth_mb:.0f} MB", f"answered in {bomb_s:.1f} s"),
           ("slowest page (/, /config)", f"{flooded_page * 1e3:.0f} ms", f"{calm_page * 1e3:.0f} ms before"),
           ("an ordinary question", f"{flooded_ask:.2f} s", f"{calm_ask:.2f} s before"),
           ("URL loads holding a connection at once", str(peak_open), f"of {loads}"),
           ("until every trickling load ended", f"{drained_s:.1f} s", ""),
           ("host-paid answers, 6 asks with rotated X-Forwarded-For", str(answered), f"limit {LIMIT}")],
          ["Measure", "Figure", "Note"])
    print("\nRound 2 (#18): huge bodies, data: URI bombs, forged history, one visitor flooding the queue")
    table([("56 MB body, 4 ways (run/join × declared/chunked)", " ".join(map(str, statuses)),
            f"peak +{body_peak.growth_mb:.0f} MB, after {body_settled:+.1%}"),
           ("13000×13000 PNG as a data: URI", f"{uri_s:.2f} s", f"peak +{uri_peak.growth_mb:.0f} MB"),
           ("three 9000×9000 data: URIs at once", "refused" if uri_refused else "ANSWERED",
            f"peak +{uris_peak.growth_mb:.0f} MB"),
           ("forged history, 60k messages", str(forged[60_000].status_code), f"{forged[60_000].seconds:.2f} s"),
           ("forged history, 404 messages", "the chat's limit" if TOO_LONG in forged[404].text
            else str(forged[404].status_code), f"{forged[404].seconds:.2f} s"),
           ("one visitor's 200 joins taken by the queue", str(joined.count(200)),
            f"{joined.count(503)} refused in words"),
           ("pages while that visitor's joins pend", f"{flood_page * 1e3:.0f} ms", ""),
           ("other visitors' questions answered meanwhile", f"{queue_answered} of 10", ""),
           ("slowest page while each attack of 4–6 ran", f"{others.slowest * 1e3:.0f} ms", ""),
           ("other visitors' questions answered during 4–6", f"{others.answered} of {others.asked}", ""),
           ("beacon fetches", "–" if beacons is None else str(beacons), beacons_shown),
           ("app memory after all, vs before round 2", f"{settled * 100:+.1f} %",
            f"{baseline / 1024:.0f} → {after / 1024:.0f} MB")],
          ["Measure", "Figure", "Note"])
    targets([
        ("app growth with 6 pixel bombs ≤ 800 MB", f"{growth_mb:.0f} MB ({bombs} bombs)",
         None if quick else growth_mb <= 800),
        ("pages < 2 s while ≥ 64 trickling loads pend", f"{flooded_page * 1e3:.0f} ms ({loads} loads)",
         None if quick else flooded_page < 2),
        ("a question answered as usual (< 2× calm + 1 s)", f"{flooded_ask:.2f} s vs {calm_ask:.2f} s",
         flooded_ask < 2 * calm_ask + 1),
        ("trickling fetches end ≤ 60 s", f"{drained_s:.1f} s", None if quick else drained_s <= 60),
        ("the hourly limit holds with a rotated X-Forwarded-For", f"{answered} of 6 answered",
         answered == LIMIT),
        ("a 56 MB body refused (413) every way", " ".join(map(str, statuses)), set(statuses) == {413}),
        ("a single body grows the app ≤ 500 MB", f"+{body_peak.growth_mb:.0f} MB", body_peak.growth_mb <= 500),
        ("a data: URI image grows the app ≤ 800 MB", f"+{max(uri_peak.growth_mb, uris_peak.growth_mb):.0f} MB",
         max(uri_peak.growth_mb, uris_peak.growth_mb) <= 800 and uri_refused),
        ("pages < 2 s during every attack", f"{max(others.slowest, flood_page) * 1e3:.0f} ms",
         max(others.slowest, flood_page) < 2),
        ("a forged history refused in < 2 s, the chat's limit in words",
         f"{max(r.seconds for r in forged.values()):.2f} s",
         forged[60_000].status_code == 400 and TOO_LONG in forged[404].text
         and max(r.seconds for r in forged.values()) < 2),
        ("other visitors answered during every attack",
         f"{queue_answered + others.answered} of {10 + others.asked}",
         queue_answered == 10 and others.answered == others.asked),
        ("beacon fetches 0", beacons_shown if beacons is None else str(beacons), None if beacons is None else beacons == 0),
        ("memory back within 10 % after round 2", f"{settled * 100:+.1f} %", settled <= 0.10),
    ])


if __name__ == "__main__":
    main()
