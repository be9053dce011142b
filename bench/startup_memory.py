"""Start-up time and memory: `python app.py` versus the smallest Gradio app with the same endpoint.

Start-up = from spawning the process to the first successful `/ask` answer (upload, queue,
answer), on the embedded backend. Memory = the app process's RSS (VmRSS from /proc) when idle,
with N idle gradio_client sessions connected, and while N chats stream at once. The baseline is
bench/_minimal_app.py (gr.Blocks with one streaming `/ask` that yields "ok"), started the same way.

    python bench/startup_memory.py [--quick]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import App, header, rss_kib, table, targets  # noqa: E402

from gradio_client import Client  # noqa: E402

PACE = 20.0


def first_answer(app: App, image_path: str, **params) -> tuple[float, float]:
    """(seconds to the HTTP server answering, seconds to the first successful /ask)."""
    ready = app.wait_ready() - app.started
    raw = _common.RawAsk(app.url)
    partials = raw.ask(raw.upload(image_path), "What is in this photo?", **params)
    assert partials and partials[-1][1], "no answer"
    return ready, time.perf_counter() - app.started


def import_seconds(module: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=_common.ROOT, check=True)
    return time.perf_counter() - start


def main() -> None:
    quick = _common.quick_flag(__doc__)
    header("Start-up time and memory per session", quick)
    sessions = 4 if quick else 32
    words = 10 if quick else 60
    image_path = _common.small_jpeg_file(tempfile.mkdtemp(prefix="bench-startup-"))
    nan = float("nan")
    imports = {m: nan if quick else import_seconds(m) for m in ("gradio", "minigpt4_ui.app.ui")}
    base_ready = base_first = base_rss = nan
    if not quick:  # the baseline costs another Gradio start-up; quick mode checks the app only
        base = App(script=str(Path(__file__).resolve().parent / "_minimal_app.py"))
        try:
            base_ready, base_first = first_answer(base, image_path)
            base_rss = rss_kib(base.pid)
        finally:
            base.close()

    app = App({"MINIGPT4_TOKENS_PER_SECOND": str(PACE)})
    try:
        ready, first = first_answer(app, image_path, max_new_tokens=3)
        idle_rss = rss_kib(app.pid)
        with ThreadPoolExecutor(8) as pool:
            clients = list(pool.map(lambda _: Client(app.url, verbose=False), range(sessions)))
        time.sleep(1)
        idle_n_rss = rss_kib(app.pid)
        raw = _common.RawAsk(app.url)
        uploaded = raw.upload(image_path)
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(app.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        with ThreadPoolExecutor(sessions) as pool:
            list(pool.map(lambda k: raw.ask(uploaded, f"Chat {k}: what is this?", max_new_tokens=words),
                          range(sessions)))
        done.set()
        sampler.join()
        after_rss = rss_kib(app.pid)
        del clients
    finally:
        app.close()

    print("\nstart-up: spawn → HTTP answering → first /ask answered (seconds)")
    table([("minimal Gradio app (baseline)", f"{base_ready:.2f}", f"{base_first:.2f}", "1.00",
            f"{imports['gradio']:.2f} (import gradio)"),
           ("python app.py (embedded)", f"{ready:.2f}", f"{first:.2f}", f"{first / base_first:.2f}",
            f"{imports['minigpt4_ui.app.ui']:.2f} (import minigpt4_ui.app.ui)")],
          ["Process", "HTTP ready s", "First answer s", "Ratio", "Import alone s"])
    mib = 1024
    print(f"\nmemory (RSS, MiB); {sessions} sessions")
    table([("minimal Gradio app, after one answer", f"{base_rss / mib:.0f}", "", ""),
           ("app, idle after one answer", f"{idle_rss / mib:.0f}", "", f"{idle_rss / base_rss:.2f}× baseline"),
           (f"app + {sessions} idle gradio_client sessions", f"{idle_n_rss / mib:.0f}",
            f"{(idle_n_rss - idle_rss) / sessions:.0f}", ""),
           (f"app, peak while {sessions} chats stream", f"{peak[0] / mib:.0f}",
            f"{(peak[0] - idle_n_rss) / sessions:.0f}", ""),
           ("app, after those chats", f"{after_rss / mib:.0f}", "", "")],
          ["State", "RSS MiB", "KiB per session", "Note"])
    targets([("(no target is set for start-up or memory)", "figures above", None)])


if __name__ == "__main__":
    main()
