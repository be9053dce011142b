"""Load test: many concurrent sessions × several turns against the app on its embedded backend.

    python bench/load.py [--sessions 50] [--turns 5] [--tps 50] [--quick]

Starts `python app.py` (no token: the embedded predictions server, paced at --tps words per
second), then runs --sessions gradio_client sessions at once, each asking --turns questions in a
row about its own image. Every answer must be complete and correct: it quotes its own prompt,
reports its own image's size and ends with the built-in predictor's last sentence. Prints the
answers, errors, wall time, answers per second, latency, and the app's resident memory (VmRSS,
app and embedded server are one process) before, at peak and after the load once it settled.
Loopback only. Exits 1 if any answer was wrong or missing, else 0 (timings never fail it).
"""

from __future__ import annotations

import argparse
import gc
import secrets
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import App, header, percentile, rss_kib, table, targets  # noqa: E402

ENDING = "Ask MiniGPT-4 itself for that."  # the last words of a full report
SETTLE_SECONDS = 5.0


def _image(directory: Path, width: int, height: int) -> str:
    from PIL import Image, ImageDraw

    path = directory / f"s{width}x{height}.png"
    image = Image.new("RGB", (width, height), (40, 120, 200))
    ImageDraw.Draw(image).rectangle((0, 0, width // 3, height), fill=(240, 240, 240))
    image.save(path)
    return str(path)


class Sampler(threading.Thread):
    """Samples a process's VmRSS every `interval` seconds; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = rss_kib(pid)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.peak = max(self.peak, rss_kib(self.pid))
            except (OSError, RuntimeError):
                return

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        return self.peak


def check(answer: object, prompt: str, width: int, height: int) -> str | None:
    """None if the answer is complete and this session's own; else what is wrong."""
    if not isinstance(answer, str):
        return f"not text: {answer!r}"[:200]
    if not answer.startswith(f"This {width}×{height} "):  # each session's image has its own size
        return f"wrong image size (expected {width}×{height}): {answer[:200]!r}"
    if not answer.endswith(ENDING):
        return f"incomplete: …{answer[-80:]!r}"
    return None


def session(url: str, index: int, turns: int, image: tuple[str, int, int], start: threading.Barrier):
    """One visitor: a Client of its own, `turns` questions in a row. Returns (latencies, errors)."""
    from gradio_client import Client, handle_file

    path, width, height = image
    latencies: list[float] = []
    errors: list[str] = []
    try:
        client = Client(url, verbose=False)
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
        start.abort()
        return latencies, [f"session {index}: could not connect: {exc}"]
    try:
        start.wait(timeout=120)
    except threading.BrokenBarrierError:
        pass
    for turn in range(turns):
        prompt = f"Session {index} turn {turn} ({secrets.token_hex(2)}): what do you see?"
        began = time.perf_counter()
        try:
            answer = client.predict(image=handle_file(path), prompt=prompt, api_name="/ask")
        except Exception as exc:  # noqa: BLE001
            errors.append(f"session {index} turn {turn}: {type(exc).__name__}: {exc}")
            continue
        latencies.append(time.perf_counter() - began)
        problem = check(answer, prompt, width, height)
        if problem:
            errors.append(f"session {index} turn {turn}: {problem}")
    return latencies, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--tps", type=float, default=50.0, help="embedded predictor pace, words per second")
    parser.add_argument("--rounds", type=int, default=2,
                        help="run the whole load this many times: memory that keeps growing is a leak, "
                             "memory that plateaus is the allocator keeping what it once needed")
    parser.add_argument("--quick", action="store_true", help="10 sessions × 2 turns, one round (CI)")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.turns, args.rounds = 10, 2, 1
    header(f"Load: {args.sessions} sessions × {args.turns} turns, embedded backend at {args.tps:g} words/s",
           args.quick)

    with tempfile.TemporaryDirectory(prefix="load-") as tmp, \
            App({"MINIGPT4_TOKENS_PER_SECOND": f"{args.tps:g}"}) as app:
        app.wait_ready()
        # A distinct size per session, at most 448 px wide so that the app sends it unscaled.
        sizes = [(160 + 5 * (i % 56), 100 + 3 * (i % 56) + i // 56) for i in range(args.sessions)]
        images = [(_image(Path(tmp), w, h), w, h) for w, h in sizes]
        # Warm-up: the first answer loads what every later one shares; "before" is measured after it.
        warm_latencies, warm_errors = session(app.url, -1, 1, images[0], threading.Barrier(1))
        if warm_errors:
            print("warm-up failed:", *warm_errors, sep="\n  ")
            return 1
        time.sleep(1.0)
        before = rss_kib(app.pid)
        results, walls, peaks, afters = [], [], [], []
        for round_ in range(args.rounds):
            sampler = Sampler(app.pid)
            sampler.start()
            start = threading.Barrier(args.sessions)
            began = time.perf_counter()
            with ThreadPoolExecutor(args.sessions) as pool:
                results += pool.map(lambda i: session(app.url, i, args.turns, images[i], start),
                                    range(args.sessions))
            walls.append(time.perf_counter() - began)
            peaks.append(sampler.stop())
            gc.collect()
            time.sleep(SETTLE_SECONDS)  # streams close, threads idle, the app's caches settle
            afters.append(rss_kib(app.pid))
        app.check_alive()

    latencies = [t for lat, _ in results for t in lat]
    errors = [e for _, errs in results for e in errs]
    expected = args.sessions * args.turns * args.rounds
    wall = sum(walls)
    mib = lambda kib: kib / 1024  # noqa: E731
    print()
    table([(args.sessions, args.turns, args.rounds, expected, expected - len(errors), len(errors), wall,
            len(latencies) / wall if wall else float("nan"), percentile(latencies, 50),
            percentile(latencies, 95), max(latencies, default=float("nan")))],
          ["Sessions", "Turns", "Rounds", "Asked", "Correct", "Errors", "Wall s", "Answers/s", "p50 s",
           "p95 s", "max s"])
    print()
    table([(r + 1, mib(before), mib(peaks[r]), mib(afters[r]), mib(afters[r] - before)) for r in range(args.rounds)],
          ["Round", "RSS before MiB", "RSS peak MiB", "RSS after (settled) MiB", "after − before MiB"])
    growth = afters[-1] - afters[0]
    targets([
        ("every answer complete and correct", f"{expected - len(errors)}/{expected}", not errors),
        ("memory back near its start (after ≤ before + 25%)",
         f"{mib(afters[-1]):.0f} MiB vs {mib(before):.0f} MiB", afters[-1] <= before * 1.25),
        ("no growth from round to round (last after ≤ first after + 5%)",
         f"{mib(growth):+.1f} MiB" if args.rounds > 1 else "one round", afters[-1] <= afters[0] * 1.05
         if args.rounds > 1 else None),
    ])
    print(f"\nerrors: {len(errors)}")
    for error in errors[:20]:
        print("  " + error)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
