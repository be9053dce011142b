"""The embedded predictions server alone: predictions per second and first-token latency.

Starts `python -m minigpt4_ui.server` (unpaced: the built-in predictor answers at full speed) in
its own process. Each client thread loops: create a prediction (POST /v1/predictions with a
448 px JPEG data URI, as the app sends) and read its SSE stream to `done`. The baseline is the
same server answering its cheapest authenticated request (GET of the model version) on the same
number of threads: the HTTP floor, so the ratio is what a prediction costs beyond it.

    python bench/server.py [--quick]
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import Server, header, percentile, table, targets  # noqa: E402

import requests  # noqa: E402

from minigpt4_ui.app.settings import DEFAULT_VERSION  # noqa: E402


def hammer(threads: int, seconds: float, work) -> tuple[int, list[float]]:
    """Run `work(session)` on each thread until `seconds` pass; (count, per-call samples)."""
    stop = time.perf_counter() + seconds
    counts, samples = [0] * threads, []
    lock = threading.Lock()

    def loop(i: int) -> None:
        with requests.Session() as session:
            while time.perf_counter() < stop:
                sample = work(session)
                counts[i] += 1
                if sample is not None:
                    with lock:
                        samples.append(sample)

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts), samples, time.perf_counter() - start


def main() -> None:
    quick = _common.quick_flag(__doc__)
    header("Embedded server alone: predictions/s and first-token latency", quick)
    seconds = 2.0 if quick else 8.0
    threads = 8
    image = _common.small_jpeg_uri()
    rows = []
    with Server() as server:
        auth = {"Authorization": f"Bearer {server.token}"}
        version_url = f"{server.url}/v1/models/daanelson/minigpt-4/versions/{DEFAULT_VERSION}"

        def floor(session):
            session.get(version_url, headers=auth, timeout=30).raise_for_status()

        def predict(session):
            start = time.perf_counter()
            prediction = _common.create_prediction(session, server.url, server.token, image,
                                                   "What is in this photo?")
            created = time.perf_counter()
            first = None
            for stamp, _ in _common.stream_outputs(session, prediction["urls"]["stream"]):
                first = first or stamp
            return (created - start, first - start, time.perf_counter() - start)

        for work in (floor, predict):  # warm-up
            work(requests.Session())
        for n in (1, threads):
            count, _, took = hammer(n, seconds, floor)
            base = count / took
            count, samples, took = hammer(n, seconds, predict)
            rate = count / took
            create_ms = [s[0] * 1e3 for s in samples]
            first_ms = [s[1] * 1e3 for s in samples]
            done_ms = [s[2] * 1e3 for s in samples]
            rows.append((n, f"{base:.0f}", f"{rate:.1f}", f"{rate / base:.3f}",
                         f"{percentile(create_ms, 50):.1f}", f"{percentile(first_ms, 50):.1f}",
                         f"{percentile(first_ms, 99):.1f}", f"{percentile(done_ms, 50):.1f}"))
    print(f"\nunpaced built-in predictor, 448×336 JPEG data URI; {seconds:g} s per row; "
          "each prediction = create + read its SSE stream to done")
    table(rows, ["Client threads", "GET version /s (floor)", "Predictions done /s", "Ratio to floor",
                 "Create p50 ms", "First token p50 ms", "First token p99 ms", "Done p50 ms"])
    targets([("(no target is set for the server alone)", "figures above", None)])


if __name__ == "__main__":
    main()
