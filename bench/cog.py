"""Cog container backend: time the app and the adapter add over calling the container directly.

One run starts a real Cog server (coglet) whose MiniGPT-4 stand-in answers one string after
ANSWER_S seconds, as MiniGPT-4 does; `python -m minigpt4_ui.server --cog` in front of it (the
adapter alone); and `python app.py --cog`, once with a callback URL (progress by webhook) and once
without (one synchronous PUT). Each round asks every path once, in turn, with the same JPEG:

- direct: `POST /predictions` to the container, answered when the prediction ends;
- adapter: `POST /v1/predictions` with `Prefer: wait` to the embedded server;
- app: `/ask` over Gradio's queue protocol as a browser speaks it (the image uploaded once, as
  a browser does when it is added), until the final answer; and through gradio_client, which
  uploads the image again for every call and polls its queue every 50 ms (client costs, shown
  for comparison).

Added time = median(path) − median(direct); ratio = median(path) / median(direct).

    python bench/cog.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import App, Proc, RawAsk, free_port, header, median, table, targets  # noqa: E402

import requests  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from minigpt4_ui.app.settings import DEFAULT_VERSION  # noqa: E402
from tests.cogrunner import CogServer  # noqa: E402

TARGET_RATIO = 1.05
CALLBACK = "http://127.0.0.1:0"


def direct(session: requests.Session, cog_url: str, image: str, prompt: str) -> str:
    response = session.post(f"{cog_url}/predictions", timeout=120,
                            json={"input": {"image": image, "prompt": prompt}})
    response.raise_for_status()
    return response.json()["output"]


def adapter(session: requests.Session, server_url: str, image: str, prompt: str) -> str:
    response = session.post(f"{server_url}/v1/predictions", timeout=120,
                            headers={"Prefer": "wait"},
                            json={"version": DEFAULT_VERSION, "input": {"image": image, "prompt": prompt}})
    response.raise_for_status()
    prediction = response.json()
    assert prediction["status"] == "succeeded", prediction
    return prediction["output"]


def timed(call, *args) -> float:
    started = time.perf_counter()
    answer = call(*args)
    elapsed = time.perf_counter() - started
    assert answer.startswith("Answer to"), answer
    return elapsed


def main() -> None:
    quick = _common.quick_flag(__doc__.splitlines()[0])
    answer_s, rounds = (0.5, 2) if quick else (2.0, 7)
    header(f"Cog container backend: app and adapter vs the container, {answer_s:g} s predictions",
           quick)
    with tempfile.TemporaryDirectory() as folder, \
            CogServer("string", Path(folder) / "cog", env={"ANSWER_SECONDS": str(answer_s)}) as cog:
        cog.wait_for("READY")
        image = _common.small_jpeg_uri()
        image_file = _common.small_jpeg_file(folder)
        port = free_port()
        with Proc([sys.executable, "-m", "minigpt4_ui.server", "--port", str(port), "--cog",
                   cog.url, "--cog-callback-url", CALLBACK], _common.clean_env()) as server, \
                App({"MINIGPT4_COG_URL": cog.url, "MINIGPT4_COG_CALLBACK_URL": CALLBACK}) as app, \
                App({"MINIGPT4_COG_URL": cog.url}) as app_sync:
            server_url = f"http://127.0.0.1:{port}"
            _common.wait_http(server, f"{server_url}/v1/predictions")
            app.wait_ready()
            app_sync.wait_ready()
            session = requests.Session()
            browser, browser_sync = RawAsk(app.url), RawAsk(app_sync.url)
            uploaded, uploaded_sync = browser.upload(image_file), browser_sync.upload(image_file)
            client = Client(app.url, verbose=False)

            paths = {
                "direct (container)": lambda p: direct(session, cog.url, image, p),
                "adapter (webhooks)": lambda p: adapter(session, server_url, image, p),
                "app (webhooks)": lambda p: browser.ask(uploaded, p)[-1][1],
                "app (no callback: one synchronous PUT)":
                    lambda p: browser_sync.ask(uploaded_sync, p)[-1][1],
                "app (webhooks) via gradio_client": lambda p: client.predict(
                    image=handle_file(image_file), prompt=p, api_name="/ask"),
            }
            for name, call in paths.items():  # warm-up: connections, first-call imports
                timed(call, f"warm-up {name}")
            times: dict[str, list[float]] = {name: [] for name in paths}
            for round_ in range(rounds):
                for name, call in paths.items():
                    times[name].append(timed(call, f"round {round_}"))
    base = median(times["direct (container)"])
    rows = [(name, len(values), median(values), min(values), max(values),
             (median(values) - base) * 1000, median(values) / base)
            for name, values in times.items()]
    print(f"\n{rounds} rounds; the stand-in answers after {answer_s:g} s; times in seconds")
    table(rows, ["Path", "Runs", "Median s", "Min s", "Max s", "Added ms", "Ratio"])
    app_ratio = median(times["app (webhooks)"]) / base
    sync_ratio = median(times["app (no callback: one synchronous PUT)"]) / base
    targets([
        (f"app + adapter ≤ {TARGET_RATIO:.2f} × direct on a {answer_s:g} s prediction (webhooks)",
         f"{app_ratio:.3f}", app_ratio <= TARGET_RATIO if not quick else None),
        (f"app + adapter ≤ {TARGET_RATIO:.2f} × direct (synchronous PUT)", f"{sync_ratio:.3f}",
         sync_ratio <= TARGET_RATIO if not quick else None),
    ])


if __name__ == "__main__":
    main()
