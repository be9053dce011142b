"""An audience: N new visitors at once, each as a browser, against a bare Gradio chat in the same run.

Each visitor loads the page, uploads a photo, asks, and reads the answer's stream, over Gradio's
own HTTP protocol as the page speaks it (`_visitor.py`: the events exactly as the page chains
them). The app answers from its embedded server's built-in stand-in, paced at PACE words per
second; the baseline (`_bare_chat_app.py`) is the barest Gradio chat with the same chain, the same
queue concurrency limit, streaming the app's own answer at the same pace from an async generator.
Both start fresh for each level; the app goes first, because its answer is what the bare app
streams.

Per level and app: errors (an answer missing, failed or not the expected text), the first word
after Send (median, p90), the whole chat after Send (median, slowest), and memory per idle session:
the growth of the process's RSS while N more visitors open the page and ask nothing, over N.
Targets: median first word within 1 s of the bare app's, slowest chat within 1.2x, no errors.

`--replicas K` runs each app as K processes behind nginx with docs/nginx-replicas.conf (session
affinity by cookie); RSS is then the replicas' sum.

The app is started as docs/hosting-an-event.md sets it up for an audience: no hourly allowance and
no per-visitor share of the queue (every visitor here comes from 127.0.0.1, as an audience behind
one NAT does), and a queue as long as the audience.

    python bench/audience.py [--quick] [--sessions 128 256] [--replicas 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import App, header, median, percentile, rss_kib, table, targets  # noqa: E402
from _replicas import Nginx  # noqa: E402
from _visitor import Page, Visitor, connections  # noqa: E402

import httpx  # noqa: E402

from minigpt4_ui.app.ui import CONCURRENCY_LIMIT  # noqa: E402

PACE = 20.0
LEVELS = [128, 256]
FIRST_WORD_MARGIN_S = 1.0
SLOWEST_RATIO = 1.2
QUESTION = "Visitor {k}: what is in this photo?"
APP, BARE = "MiniGPT-4 Studio", "bare Gradio chat"


class Target:
    """One app as visitors reach it: a process, or `replicas` processes behind nginx."""

    def __init__(self, script: str, env: dict[str, str], replicas: int):
        self.folder = tempfile.TemporaryDirectory(prefix="bench-audience-")
        self.processes = []
        for n in range(max(1, replicas)):
            # A cache folder per process: an upload's path says which replica took it.
            own = {**env, "GRADIO_TEMP_DIR": f"{self.folder.name}/gradio-{n}"}
            if replicas > 1:
                own["MINIGPT4_TRUSTED_PROXY_HOPS"] = "1"
            self.processes.append(App(own, script=script))
        self.nginx: Nginx | None = None
        try:
            for process in self.processes:
                process.wait_ready()
            if replicas > 1:
                self.nginx = Nginx([process.port for process in self.processes])
        except BaseException:
            self.close()
            raise
        self.url = self.nginx.url if self.nginx else self.processes[0].url
        self.page = Page.of(httpx.get(self.url + "config", timeout=30).json())

    def rss_kib(self) -> int:
        return sum(rss_kib(process.pid) for process in self.processes)

    def replica_of(self, upload_path: str) -> int | None:
        return next((n for n in range(len(self.processes))
                     if upload_path.startswith(f"{self.folder.name}/gradio-{n}/")), None)

    def close(self) -> None:
        if self.nginx:
            problems = self.nginx.errors().strip().splitlines()
            if problems:
                print(f"nginx logged {len(problems)} problems; the first: {problems[0]}", flush=True)
            self.nginx.close()
        for process in self.processes:
            process.close()
        self.folder.cleanup()


class Result:
    """One app at one level: every visit, and the memory of its idle sessions."""

    def __init__(self, visits: list, expected: list[str], idle_kib: float, replicas: list[int | None]):
        self.visits = visits
        self.errors = [v for v in visits if v.error or v.first_word is None or v.answer.split() != expected]
        ok = [v for v in visits if v not in self.errors]
        self.page_s = [v.page_loaded - v.started for v in ok]
        self.first_word_s = [v.first_word_s for v in ok]
        self.total_s = [v.total_s for v in ok]
        self.idle_kib = idle_kib
        self.per_replica = [replicas.count(n) for n in sorted({r for r in replicas if r is not None})]

    def first_error(self) -> str:
        if not self.errors:
            return ""
        v = self.errors[0]
        return v.error or f"answer {len(v.answer.split())} words: {v.answer[:120]!r} {v.log[-1:]}"


async def visit_all(target: Target, transport: httpx.AsyncHTTPTransport, count: int, photo: bytes, *,
                    ask: bool) -> list[Visitor]:
    """`count` visitors at once; each opens the page and, with `ask`, uploads and asks. Open tabs
    stay open (their heartbeat streams too) until the caller closes them."""

    async def one(k: int) -> Visitor:
        visitor = Visitor(target.url, target.page, transport)
        step = "opening the page"
        try:
            await visitor.open()
            if ask:
                step = "uploading"
                await visitor.add_image("photo.jpg", photo)
                step = "asking"
                await visitor.ask(QUESTION.format(k=k))
        except Exception as exc:  # noqa: BLE001 - every failure is counted and the first one shown
            visitor.visit.error = f"{step}: {type(exc).__name__}: {exc!r}"
        return visitor

    return list(await asyncio.gather(*(one(k) for k in range(count))))


async def close_all(visitors: list[Visitor]) -> None:
    await asyncio.gather(*(visitor.close() for visitor in visitors), return_exceptions=True)


async def measure(target: Target, count: int, photo: bytes) -> tuple[Result, str]:
    """Warm up, open `count` idle sessions (memory), then `count` new visitors ask at once."""
    async with connections() as transport:
        warm = await visit_all(target, transport, 2, photo, ask=True)
        await close_all(warm)
        if any(v.visit.error for v in warm):
            raise RuntimeError(f"the warm-up failed: {warm[0].visit.error}")
        answer = warm[-1].visit.answer
        before = target.rss_kib()
        idle = await visit_all(target, transport, count, photo, ask=False)
        idle_kib = (target.rss_kib() - before) / count
        await close_all(idle)
        visitors = await visit_all(target, transport, count, photo, ask=True)
        await close_all(visitors)
    visits = [v.visit for v in visitors]
    return Result(visits, answer.split(), idle_kib, [target.replica_of(v.upload_path) for v in visits]), answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (CI): 8 visitors; figures are rough")
    parser.add_argument("--sessions", type=int, nargs="+", help=f"visitors at once, per level (default {LEVELS})")
    parser.add_argument("--replicas", type=int, default=1, help="processes per app behind nginx (default 1: no nginx)")
    args = parser.parse_args()
    levels = args.sessions or ([8] if args.quick else LEVELS)
    pace = PACE * 2 if args.quick else PACE
    header(f"Audience: N new visitors at once, the app vs a bare Gradio chat ({args.replicas} process"
           f"{'es behind nginx' if args.replicas > 1 else ''} each)", args.quick)
    print("load average (1, 5, 15 min) at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    photo_path = _common.small_jpeg_file(tempfile.mkdtemp(prefix="bench-audience-photo-"))
    photo = Path(photo_path).read_bytes()
    hf_home = tempfile.mkdtemp(prefix="bench-audience-hf-")  # empty: the built-in stand-in answers
    app_env = {"MINIGPT4_TOKENS_PER_SECOND": str(pace), "MINIGPT4_DOWNLOADS": "0", "HF_HOME": hf_home,
               "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0", "MINIGPT4_MAX_QUEUE_PER_VISITOR": "0"}
    rows, checks, answer_words = [], [], 0
    for count in levels:
        results = {}
        target = Target("app.py", {**app_env, "MINIGPT4_MAX_QUEUE": str(2 * count)}, args.replicas)
        try:
            results[APP], answer = asyncio.run(measure(target, count, photo))
        finally:
            target.close()
        answer_words = len(answer.split())
        target = Target("bench/_bare_chat_app.py", {"BARE_ANSWER": answer, "BARE_WORDS_PER_SECOND": str(pace),
                                                     "BARE_CONCURRENCY_LIMIT": str(CONCURRENCY_LIMIT)},
                        args.replicas)
        try:
            results[BARE], _ = asyncio.run(measure(target, count, photo))
        finally:
            target.close()
        for name in (BARE, APP):
            r = results[name]
            rows.append((count, name, len(r.errors), f"{median(r.page_s):.2f}", f"{median(r.first_word_s):.2f}",
                         f"{percentile(r.first_word_s, 90):.2f}", f"{median(r.total_s):.2f}",
                         f"{max(r.total_s, default=float('nan')):.2f}", f"{r.idle_kib:.0f}",
                         " / ".join(map(str, r.per_replica)) if args.replicas > 1 else "-"))
            if r.errors:
                print(f"{count} visitors, {name}: {len(r.errors)} errors; the first: {r.first_error()}", flush=True)
        app, bare = results[APP], results[BARE]
        added = median(app.first_word_s) - median(bare.first_word_s)
        ratio = max(app.total_s, default=float("nan")) / max(bare.total_s, default=float("nan"))
        checks += [(f"{count} visitors: median first word ≤ bare + {FIRST_WORD_MARGIN_S:g} s",
                    f"{added:+.2f} s", added <= FIRST_WORD_MARGIN_S),
                   (f"{count} visitors: slowest chat ≤ {SLOWEST_RATIO} × bare", f"{ratio:.2f} ×",
                    ratio <= SLOWEST_RATIO),
                   (f"{count} visitors: no errors", f"{len(app.errors)}", not app.errors)]
    print(f"\neach answer {answer_words} words at {pace:g} words/s; queue concurrency {CONCURRENCY_LIMIT} per "
          "event in both apps; times in seconds from Send; idle session = RSS growth per page opened")
    table(rows, ["Visitors", "App", "Errors", "Page loaded (median)", "First word (median)", "First word (p90)",
                 "Chat (median)", "Slowest chat", "KiB per idle session", "Sessions per replica"])
    print("load average (1, 5, 15 min) at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    targets(checks + [("memory per idle session (stated, no target)", "table above", None)])


if __name__ == "__main__":
    main()
