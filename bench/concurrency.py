"""Concurrency: N chats at once through the app, each as long as one chat alone.

Starts `python app.py` on its embedded backend paced at PACE words per second, times one chat
alone (T, the baseline), then N chats started together, each in its own Gradio session, speaking
the app's queue protocol as a browser does. Target: every one of the N chats done within 1.3 × T.

    python bench/concurrency.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import App, header, median, table, targets  # noqa: E402

PACE = 20.0
TARGET = 1.3


def main() -> None:
    quick = _common.quick_flag(__doc__)
    header("Concurrency: N chats at once vs one chat alone (embedded backend)", quick)
    sessions = 4 if quick else 32
    words = 10 if quick else 60
    pace = PACE * 2 if quick else PACE
    app = App({"MINIGPT4_TOKENS_PER_SECOND": str(pace)})
    try:
        app.wait_ready()
        raw = _common.RawAsk(app.url)
        image = raw.upload(_common.small_jpeg_file(tempfile.mkdtemp(prefix="bench-concurrency-")))

        def chat(k: int) -> tuple[float, float, int]:
            start = time.perf_counter()
            partials = raw.ask(image, f"Chat {k}: what is in this photo?", max_new_tokens=words)
            return partials[0][0] - start if partials else float("nan"), time.perf_counter() - start, \
                len(partials[-1][1].split())

        chat(-1)  # warm-up: the first request pays one-off costs
        alone = [chat(-2 - i) for i in range(1 if quick else 3)]
        t_alone = median([a[1] for a in alone])
        begin = time.perf_counter()
        with ThreadPoolExecutor(sessions) as pool:
            together = list(pool.map(chat, range(sessions)))
        wall = time.perf_counter() - begin
    finally:
        app.close()
    durations = [t[1] for t in together]
    worst = max(durations)
    print(f"\n{words} words per answer at {pace:g} words/s; each chat timed from queue/join to its last partial")
    table([("1 (baseline, median)", f"{t_alone:.2f}", f"{t_alone:.2f}", f"{median([a[0] for a in alone]):.2f}",
            "1.00"),
           (f"{sessions} together", f"{median(durations):.2f}", f"{worst:.2f}",
            f"{median([t[0] for t in together]):.2f}", f"{worst / t_alone:.2f}")],
          ["Chats", "Median s", "Slowest s", "First partial s (median)", "Slowest / T"])
    print(f"all {sessions} done {wall:.2f} s after the first started")
    targets([(f"{sessions} chats each ≤ {TARGET} × T (T = {t_alone:.2f} s)", f"{worst / t_alone:.2f} × T",
              worst <= TARGET * t_alone)])


if __name__ == "__main__":
    main()
