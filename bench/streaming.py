"""Streaming overhead: answer tokens through the app (gradio_client) versus straight from SSE.

One run starts a predictions server in this process (paced at PACE words per second) and
`python app.py` pointed at it. For each session a gradio_client job asks `/ask`; the moment the
server creates that prediction, a second reader opens the same prediction's SSE stream directly.
Both readers stamp every token with time.perf_counter() in this one process, so for each word
"added latency" = (when the gradio_client partial containing it arrived) − (when the SSE reader
saw it). Throughput ratio = SSE streaming time / app streaming time, both measured from the
SSE reader's first token to each reader's last token (1.0 = the app adds nothing).

The server's predictor "thinks" THINK_S before its first word, so the direct reader is connected
before any word exists; words the direct reader only got as replay are left out.

    python bench/streaming.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import App, TOKEN, header, percentile, table, targets  # noqa: E402

import requests  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from minigpt4_ui.server import start_background  # noqa: E402
from minigpt4_ui.server.predictors.builtin import BuiltinPredictor  # noqa: E402
from minigpt4_ui.server.runner import Runner  # noqa: E402

PACE = 20.0  # words per second, roughly a real model's streaming speed
THINK_S = 1.0
TARGET_RATIO = 0.95
TARGET_P99_MS = 50.0


class ThinkingPredictor:
    """The built-in predictor, with THINK_S of empty chunks (the runner paces those too) first."""

    def __init__(self, pace: float):
        self._inner = BuiltinPredictor()
        self._empty = round(THINK_S * pace)

    def predict(self, inputs, image, log, cancel=None):
        yield from [""] * self._empty
        yield from self._inner.predict(inputs, image, log, cancel)


class DirectReaders:
    """Opens each new prediction's SSE stream as soon as the server creates it; keyed by prompt."""

    def __init__(self, server_url: str):
        self.server_url = server_url
        self.results: dict[str, dict] = {}
        self.threads: list[threading.Thread] = []
        self._original = Runner.submit
        readers = self

        def submit(runner, prediction, inputs, *args, **kwargs):
            readers._original(runner, prediction, inputs, *args, **kwargs)
            readers.start(prediction["id"], prediction["input"]["prompt"])

        Runner.submit = submit

    def start(self, prediction_id: str, prompt: str) -> None:
        record = {"connected": None, "events": []}
        self.results[prompt] = record

        def read():
            with requests.Session() as session:
                def connected():
                    record["connected"] = time.perf_counter()
                for stamp, data in _common.stream_outputs(
                        session, f"{self.server_url}/v1/streams/{prediction_id}", connected):
                    record["events"].append((stamp, data))

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        Runner.submit = self._original


class TimedOutputs(list):
    """Replaces a gradio_client job's output list: stamps each partial as it is appended."""

    def __init__(self, existing):
        super().__init__(existing)
        self.stamps = [time.perf_counter()] * len(existing)

    def append(self, item):
        self.stamps.append(time.perf_counter())
        super().append(item)


def run_session(client: Client, image: str, prompt: str, max_new_tokens: int) -> dict:
    job = client.submit(image=handle_file(image), prompt=prompt, max_new_tokens=max_new_tokens,
                        api_name="/ask")
    with job.communicator.lock:
        timed = TimedOutputs(job.communicator.job.outputs)
        job.communicator.job.outputs = timed
    final = job.result(timeout=120)
    return {"final": final, "partials": list(zip(timed.stamps, list(timed)))}


def analyse(direct: dict, app: dict) -> tuple[list[float], float, float, int]:
    """Per-word added latency (s), SSE and app streaming durations, words left out as replay."""
    added, text, skipped = [], "", 0
    partials = app["partials"]
    j = 0
    sse_first = direct["events"][0][0]
    for stamp, data in direct["events"]:
        text += data
        while j < len(partials) and len(partials[j][1] or "") < len(text):
            j += 1
        if j == len(partials):
            raise RuntimeError("the app's answer is shorter than the server's output")
        if stamp - direct["connected"] < 0.002:  # replayed on connect, not seen live
            skipped += 1
            continue
        added.append(partials[j][0] - stamp)
    if app["final"] != text:
        raise RuntimeError(f"the app's answer differs from the server's output:\n{app['final']!r}\n{text!r}")
    sse_span = direct["events"][-1][0] - sse_first
    app_span = partials[-1][0] - sse_first
    return added, sse_span, app_span, skipped


def main() -> None:
    quick = _common.quick_flag(__doc__)
    header(f"Streaming overhead: app (gradio_client) vs direct SSE, {PACE:g} words/s", quick)
    levels = (2,) if quick else (1, 8, 32)
    max_new_tokens = 10 if quick else 60
    pace = PACE * 2 if quick else PACE
    server = start_background(token=TOKEN, tokens_per_second=pace, predictor=ThinkingPredictor(pace))
    readers = DirectReaders(server.url)
    app = App({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": TOKEN})
    rows, summary = [], {}
    try:
        app.wait_ready()
        tmp = tempfile.mkdtemp(prefix="bench-streaming-")
        image = _common.small_jpeg_file(tmp)
        clients = [Client(app.url, verbose=False) for _ in range(max(levels))]
        raw = _common.RawAsk(app.url)
        raw_image = raw.upload(image)

        def via_gradio_client(k, prompt):
            return run_session(clients[k], image, prompt, max_new_tokens)

        def via_queue(k, prompt):
            partials = raw.ask(raw_image, prompt, max_new_tokens=max_new_tokens)
            return {"final": partials[-1][1], "partials": partials}

        # One warm-up request each: the first call pays one-off costs (imports, caches) in the app.
        via_gradio_client(0, "Warm-up")
        via_queue(0, "Warm-up too")
        for n in levels:
            for reader, call in (("gradio_client", via_gradio_client), ("queue SSE", via_queue)):
                prompts = [f"Session {k} of {n} ({reader}): what is in this photo?" for k in range(n)]
                with ThreadPoolExecutor(n) as pool:
                    apps = list(pool.map(call, range(n), prompts))
                for thread in readers.threads:
                    thread.join(10)
                added, sse_total, app_total, skipped, words = [], 0.0, 0.0, 0, 0
                for prompt, result in zip(prompts, apps):
                    lat, sse_span, app_span, skip = analyse(readers.results[prompt], result)
                    added += lat
                    sse_total += sse_span
                    app_total += app_span
                    skipped += skip
                    words += len(readers.results[prompt]["events"])
                ratio = sse_total / app_total
                p50, p99 = percentile(added, 50) * 1e3, percentile(added, 99) * 1e3
                rows.append((n, reader, words, len(added), f"{p50:.1f}", f"{p99:.1f}",
                             f"{max(added) * 1e3:.1f}", f"{words / sse_total:.1f}",
                             f"{words / app_total:.1f}", f"{ratio:.3f}"))
                summary[n, reader] = (ratio, p99)
    finally:
        app.close()
        readers.close()
        server.close()
    print(f"\n{pace:g} words/s per session, {max_new_tokens} words per answer; latency = app partial − SSE event, per word")
    table(rows, ["Sessions", "Reader", "Words", "Matched live", "Added p50 ms", "Added p99 ms", "Added max ms",
                 "SSE words/s", "App words/s", "Throughput ratio"])
    top = max(levels)
    rows = []
    for reader in ("gradio_client", "queue SSE"):
        rows += [(f"throughput ratio ≥ {TARGET_RATIO} at {n} sessions ({reader})",
                  f"{summary[n, reader][0]:.3f}", summary[n, reader][0] >= TARGET_RATIO) for n in levels]
        rows.append((f"p99 added latency < {TARGET_P99_MS:g} ms at {top} sessions ({reader})",
                     f"{summary[top, reader][1]:.1f} ms", summary[top, reader][1] < TARGET_P99_MS))
    targets(rows)
    print("gradio_client polls for messages every 50 ms (gradio_client.utils.stream_sse_v1plus), "
          "which adds 0–50 ms per partial; 'queue SSE' reads the app's Gradio queue stream "
          "directly, as the browser does.")

if __name__ == "__main__":
    main()
