"""Shared helpers for the benchmarks: the app and server as subprocesses, timing, tables, images.

Every script prints a table of figures, ratios against its baseline and each target as PASS/MISS,
then exits 0: benchmarks report, they do not fail a build on timing.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from minigpt4_ui.app.settings import DEFAULT_VERSION  # noqa: E402
from minigpt4_ui.replicate_api.sse import iter_events  # noqa: E402

TOKEN = "bench-token-not-secret"
CLEAN_ENV_PREFIXES = ("REPLICATE_", "MINIGPT4_", "GRADIO_")


# ---------------------------------------------------------------- output

def quick_flag(description: str) -> bool:
    import argparse
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="a short run (CI): checks the benchmark works; figures are rough")
    return parser.parse_args().quick


def header(title: str, quick: bool) -> None:
    cpu = os.cpu_count()
    print(f"== {title} ==  ({'quick' if quick else 'full'} mode; {cpu} CPUs; Python "
          f"{sys.version.split()[0]})", flush=True)


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
    """A plain Markdown table (pastes straight into a README)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines), flush=True)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def targets(rows: Sequence[tuple[str, str, bool | None]]) -> None:
    """(target, measured, ok) rows, printed as the Targets table."""
    print()
    table([(name, measured, verdict(ok)) for name, measured, ok in rows],
          ["Target", "Measured", "Result"])


# ---------------------------------------------------------------- statistics

def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEAN_ENV_PREFIXES)}
    env.update(PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False", **extra)
    return env


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class Proc:
    """A subprocess with its output in a temp log, stopped by `close()` (or `with`)."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.process.args} exited with {self.process.returncode}:\n"
                               f"{self.output()[-3000:]}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        os.unlink(self.log.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_http(proc: Proc, url: str, timeout: float = 90.0, interval: float = 0.05) -> float:
    """Poll `url` until it answers 2xx; returns perf_counter when it did."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        proc.check_alive()
        try:
            if requests.get(url, timeout=2).ok:
                return time.perf_counter()
        except requests.ConnectionError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer within {timeout} s:\n{proc.output()[-3000:]}")


class App(Proc):
    """`python app.py` on a free loopback port, as a user (or a Space) starts it."""

    def __init__(self, env: dict[str, str] | None = None, script: str = "app.py"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        # Every benchmark client comes from 127.0.0.1, so the per-visitor question limit is off
        # unless `env` sets it.
        super().__init__([sys.executable, script],
                         clean_env(**{"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                                      "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0", **(env or {})}))

    def wait_ready(self, timeout: float = 90.0) -> float:
        return wait_http(self, self.url + "gradio_api/info", timeout)


class Server(Proc):
    """`python -m minigpt4_ui.server` on a free port, in its own process."""

    def __init__(self, tokens_per_second: float | None = None, token: str = TOKEN):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "minigpt4_ui.server", "--port", str(self.port), "--token", token]
        if tokens_per_second:
            argv += ["--tokens-per-second", str(tokens_per_second)]
        super().__init__(argv, clean_env())
        self.token = token
        self._wait()

    def _wait(self) -> None:
        deadline = time.perf_counter() + 30
        while time.perf_counter() < deadline:
            self.check_alive()
            try:
                requests.get(self.url + "/", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError(f"server did not start:\n{self.output()}")


# ---------------------------------------------------------------- the predictions API, directly

def create_prediction(session: requests.Session, base_url: str, token: str, image_uri: str,
                      prompt: str, **params) -> dict:
    response = session.post(f"{base_url}/v1/predictions", timeout=30,
                            headers={"Authorization": f"Bearer {token}"},
                            json={"version": DEFAULT_VERSION, "stream": True,
                                  "input": {"image": image_uri, "prompt": prompt, **params}})
    response.raise_for_status()
    return response.json()


def stream_outputs(session: requests.Session, stream_url: str,
                   on_connect: Callable[[], None] | None = None) -> Iterator[tuple[float, str]]:
    """(perf_counter, data) for each `output` event of a prediction's SSE stream, until `done`."""
    with session.get(stream_url, stream=True, timeout=60,
                     headers={"Accept": "text/event-stream"}) as response:
        response.raise_for_status()
        if on_connect:
            on_connect()

        def chunks():
            while chunk := response.raw.read1(65536):
                yield chunk

        for event in iter_events(chunks()):
            if event.event == "output":
                yield time.perf_counter(), event.data
            elif event.event == "done":
                return


# ---------------------------------------------------------------- images

def photo(width: int, height: int, seed: int = 1):
    """A photo-like RGB image: smooth lighting, soft shapes, texture and sensor noise.

    Flat colours would make JPEG/PNG sizes unrealistically small; pure noise unrealistically big.
    """
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    # Low-frequency structure: a small random field upscaled smoothly (sky, walls, objects).
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    base = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    # Mid-frequency detail: a coarser random field, blurred (foliage, fabric).
    mid = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    mid = Image.fromarray(mid).resize((width, height), Image.Resampling.BILINEAR)
    mid = mid.filter(ImageFilter.GaussianBlur(2))
    img = np.asarray(base, dtype=np.int16) * 3 // 4 + np.asarray(mid, dtype=np.int16) // 4
    y = np.linspace(-40, 40, height, dtype=np.int16)[:, None, None]
    img = img + y  # a vertical light gradient
    img += rng.normal(0, 6, size=(height, width, 1)).astype(np.int16)  # luma sensor noise
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def small_jpeg_uri(width: int = 448, height: int = 336) -> str:
    """What the app sends: a ≤448 px JPEG as a data URI."""
    buffer = io.BytesIO()
    photo(width, height).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def small_jpeg_file(directory: str | Path, width: int = 448, height: int = 336) -> str:
    path = Path(directory) / f"photo-{width}x{height}.jpg"
    photo(width, height).save(path, format="JPEG", quality=90)
    return str(path)


def json_dumps(value) -> str:
    return json.dumps(value, indent=1)


WORD = re.compile(r"\S+")


# ---------------------------------------------------------------- the app's queue protocol, directly

class RawAsk:
    """Calls the app's `/ask` over Gradio's own queue protocol (what the browser speaks).

    gradio_client polls its message queue every 50 ms (`time.sleep(0.05)` in
    `gradio_client.utils.stream_sse_v1plus`), which adds 0–50 ms to every partial it reports; this
    reader blocks on the socket instead, so it shows what the app itself adds.
    """

    def __init__(self, url: str):
        self.url = url
        config = requests.get(url + "config", timeout=30).json()
        dep = next(d for d in config["dependencies"] if d.get("api_name") == "ask")
        self.fn_index = dep["id"]
        self.trigger_id = dep["targets"][0][0] if dep.get("targets") else None
        values = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
        self.defaults = [values.get(i) for i in dep["inputs"]]

    def upload(self, path: str) -> dict:
        with open(path, "rb") as handle:
            response = requests.post(self.url + "gradio_api/upload",
                                     files={"files": (Path(path).name, handle)}, timeout=30)
        response.raise_for_status()
        return {"path": response.json()[0], "orig_name": Path(path).name,
                "meta": {"_type": "gradio.FileData"}}

    def ask(self, image: dict, prompt: str, **params) -> list[tuple[float, str]]:
        """(perf_counter, text) for each partial answer, in order."""
        from gradio_client.utils import apply_diff
        import secrets

        data = list(self.defaults)
        data[0], data[1] = image, prompt
        names = ["image", "prompt", "max_length", "max_new_tokens", "num_beams",
                 "repetition_penalty", "temperature", "top_p"]
        for name, value in params.items():
            data[names.index(name)] = value
        session_hash = secrets.token_hex(6)
        partials: list[tuple[float, str]] = []
        with requests.Session() as session:
            session.post(self.url + "gradio_api/queue/join", timeout=30, json={
                "data": data, "fn_index": self.fn_index, "session_hash": session_hash,
                "event_data": None, "trigger_id": self.trigger_id}).raise_for_status()
            with session.get(self.url + "gradio_api/queue/data", params={"session_hash": session_hash},
                             stream=True, timeout=60) as response:
                response.raise_for_status()

                def chunks():
                    while chunk := response.raw.read1(65536):
                        yield chunk

                current = None
                for event in iter_events(chunks()):
                    msg = json.loads(event.data)
                    kind = msg.get("msg")
                    if kind == "process_generating":
                        value = msg["output"]["data"][0]
                        current = value if current is None else apply_diff(current, value)
                        partials.append((time.perf_counter(), current))
                    elif kind == "process_completed":
                        if not msg.get("success", True):
                            raise RuntimeError(f"/ask failed: {msg.get('output')}")
                        return partials
                    elif kind == "close_stream":
                        return partials
        return partials
