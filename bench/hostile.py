"""Hostile visitors against `python app.py`: pixel bombs, trickling image URLs, a rotated
X-Forwarded-For.

One app, on the host's token against a predictions server in its own process, with one trusted
proxy in front (as on a Space: each request's X-Forwarded-For ends with the address the proxy
saw) and image URLs allowed on loopback (where the hostile image host runs).

1. Six 8000×7999 RGBA PNGs (250 KB each, 256 MB decoded) asked about at once: the app's growth,
   VmHWM after minus VmRSS before (`/proc/<pid>/status`).
2. 64 *Load URL* requests to a server that sends its status line and then one header byte every
   3 s: page latency (`/`, `/config`) and an ordinary question while they are pending, against
   the same before the flood; then how long until the image host sees every connection end.
3. Six questions whose X-Forwarded-For starts with a different forged address each time, with the
   hourly limit at 3: how many are answered on the host's token.

    python bench/hostile.py [--quick]
"""

from __future__ import annotations

import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import App, Server, header, rss_kib, table, targets  # noqa: E402

import requests  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

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


def join_load_url(app: App, url: str) -> None:
    config = requests.get(app.url + "config", timeout=30).json()
    button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "load-url")
    dep = next(d for d in config["dependencies"] if [button, "click"] in d["targets"])
    requests.post(app.url + "gradio_api/queue/join", timeout=30, json={
        "data": [url], "fn_index": dep["id"], "trigger_id": button, "session_hash": secrets.token_hex(6),
        "event_data": None}).raise_for_status()


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
                join_load_url(app, f"{slow.url}/{n}.png")
            while slow.open_connections() < min(loads, 16):
                time.sleep(0.05)
            flooded_page, flooded_ask = page_seconds(app), ask(app, photo, next(visitors))
            peak_open = slow.open_connections()
            while slow.served < loads or slow.open_connections():
                time.sleep(0.05)
            drained_s = time.perf_counter() - flood

        # 3. rotated X-Forwarded-For
        answered = 0
        for n in range(6):
            try:
                ask(app, photo, f"10.9.{n}.1, 203.0.113.250")
                answered += 1
            except AppError:
                pass

    print(f"\n{bombs} pixel-bomb PNGs at once; {loads} trickling URL loads (a byte every 3 s)")
    table([("app memory growth, pixel bombs at once", f"{growth_mb:.0f} MB", f"answered in {bomb_s:.1f} s"),
           ("slowest page (/, /config)", f"{flooded_page * 1e3:.0f} ms", f"{calm_page * 1e3:.0f} ms before"),
           ("an ordinary question", f"{flooded_ask:.2f} s", f"{calm_ask:.2f} s before"),
           ("URL loads holding a connection at once", str(peak_open), f"of {loads}"),
           ("until every trickling load ended", f"{drained_s:.1f} s", ""),
           ("host-paid answers, 6 asks with rotated X-Forwarded-For", str(answered), f"limit {LIMIT}")],
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
    ])


if __name__ == "__main__":
    main()
