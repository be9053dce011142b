"""Local model overhead: SmolVLM through the embedded server versus calling generate() directly.

One SmolVLMPredictor is loaded once and used both ways, with the same image, prompt and greedy
parameters (so both produce the same tokens):
- direct: processor + `model.generate(streamer=TextIteratorStreamer)` on a thread, as a script
  would call it; the clock starts before the processor runs.
- server: `POST /v1/predictions` (stream: true) with the image as a JPEG data URI, then the SSE
  stream; the clock starts before the POST, so HTTP, image decoding, prompt building, the runner
  and SSE all count.
First-token latency = time to the first text; tokens/s = new tokens / time to the last text.
Runs alternate (direct, server, ...) after one warm-up each; figures are medians.
Target: the server adds at most 5% (TTFT ratio ≤ 1.05, tokens/s ratio ≥ 0.95). On the tiny model
a whole answer takes milliseconds, so fixed HTTP costs dominate; the target is meant for a real
checkpoint, where a token takes tens of milliseconds.

    python bench/local_model.py [--quick] [--model PATH_OR_ID] [--max-new-tokens N] [--runs N]

Without --model it builds a random model (tests/tiny_vlm.py) into a temporary folder: the tiny one
by default, or with `--shape smolvlm-256m` one with SmolVLM-256M's exact layer sizes, whose timings
match the real checkpoint's (the answers are nonsense, the work per token is the same).
Pass a downloaded SmolVLM (`hf download HuggingFaceTB/SmolVLM-256M-Instruct`, then
`--model HuggingFaceTB/SmolVLM-256M-Instruct` or the folder) for real figures.
"""

from __future__ import annotations

import re
import time

PROCESS_START = time.perf_counter()

import argparse
import base64
import io
import os
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import header, median, table, targets  # noqa: E402

import requests  # noqa: E402
from PIL import Image  # noqa: E402

from minigpt4_ui import schema  # noqa: E402
from minigpt4_ui.server import start_background  # noqa: E402
from minigpt4_ui.server.predictors.smolvlm import DEFAULT_MODEL, SmolVLMPredictor  # noqa: E402

PROMPT = "Describe this image in detail."
TARGET_OVERHEAD = 0.05


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI): about 30 s or less")
    parser.add_argument("--model", help="a model folder or cached hub id (default: a random model)")
    parser.add_argument("--shape", default="tiny", choices=["tiny", "smolvlm-256m"],
                        help="without --model: the random model's layer sizes (smolvlm-256m: the real "
                             "model's, about 1 GB and some seconds to build)")
    parser.add_argument("--allow-download", action="store_true", help="let transformers download --model")
    parser.add_argument("--max-new-tokens", type=int, help="tokens per answer (default: by model and mode)")
    parser.add_argument("--runs", type=int, help="measured runs per path (default: 3 quick, 7 full)")
    return parser.parse_args()


def cached_smolvlm() -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(DEFAULT_MODEL, "config.json")
    except Exception:  # noqa: BLE001 - only a hint
        return None
    return DEFAULT_MODEL if isinstance(found, str) else None


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def direct(predictor: SmolVLMPredictor, inputs: dict, image_bytes: bytes) -> dict:
    """One streamed generate() call straight on the model, as a script would make it."""
    from transformers import TextIteratorStreamer

    started = time.perf_counter()
    image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    plan = predictor.plan(inputs, image)
    streamer = TextIteratorStreamer(predictor.processor.tokenizer, skip_prompt=True,
                                    skip_special_tokens=True)
    result: dict = {}

    def run() -> None:
        result["output"] = predictor.model.generate(**plan.model_inputs, **plan.generate_kwargs,
                                                    streamer=streamer)

    thread = threading.Thread(target=run)
    thread.start()
    first = last = None
    text = ""
    for chunk in streamer:
        if chunk:
            last = time.perf_counter()
            first = first or last
            text += chunk
    thread.join()
    tokens = int(result["output"].shape[1]) - plan.prompt_tokens
    return {"ttft": first - started, "total": last - started, "tokens": tokens, "text": text,
            "prompt_tokens": plan.prompt_tokens}


def through_server(session: requests.Session, url: str, params: dict, image_uri: str) -> dict:
    """One prediction through POST /v1/predictions and its SSE stream."""
    started = time.perf_counter()
    response = session.post(f"{url}/v1/predictions", timeout=60, json={
        "version": _common.DEFAULT_VERSION, "stream": True,
        "input": {"image": image_uri, "prompt": PROMPT, **params}})
    response.raise_for_status()
    prediction = response.json()
    first = last = None
    text = ""
    for stamp, data in _common.stream_outputs(session, prediction["urls"]["stream"]):
        last = stamp
        first = first or stamp
        text += data
    final = session.get(prediction["urls"]["get"], timeout=30).json()
    if final["status"] != "succeeded":
        raise RuntimeError(f"prediction {final['status']}: {final['error']}\n{final['logs']}")
    # The predictor's last log line counts the tokens it generated.
    counted = re.search(r"smolvlm: (\d+) new tokens in", final["logs"])
    if counted is None:
        raise RuntimeError(f"the logs do not count the new tokens:\n{final['logs']}")
    return {"ttft": first - started, "total": last - started, "tokens": int(counted.group(1)),
            "text": text}


def main() -> None:
    args = parse()
    header("Local model: server vs direct generate()", args.quick)
    print(f"(imports took {time.perf_counter() - PROCESS_START:.1f} s)")
    tiny = args.model is None and args.shape == "tiny"
    if args.model is None:
        sys.path.insert(0, str(_common.ROOT))
        from tests.tiny_vlm import build_tiny_vlm
        folder = tempfile.TemporaryDirectory(prefix="random-smolvlm-")
        started = time.perf_counter()
        model = str(build_tiny_vlm(folder.name, shape=args.shape))
        hint = cached_smolvlm()
        print(f"model: random Idefics3, {args.shape} shape (built in {model} in "
              f"{time.perf_counter() - started:.1f} s)" +
              (f"; {hint} is in your cache: pass --model {hint} for real figures" if hint else
               f"; for real figures: hf download {DEFAULT_MODEL}, then --model {DEFAULT_MODEL}"))
    else:
        model = args.model
        print(f"model: {model}")
    runs = args.runs or (3 if args.quick else 7)
    max_new = args.max_new_tokens or ((32 if args.quick else 256) if tiny else (24 if args.quick else 64))

    started = time.perf_counter()
    predictor = SmolVLMPredictor(model, allow_download=args.allow_download).load()
    print(f"loaded in {time.perf_counter() - started:.2f} s (imports included); "
          f"torch threads {predictor.threads}")
    params = {"num_beams": 1, "temperature": 0.01, "max_new_tokens": max_new,
              "max_length": 4000, "repetition_penalty": 1.0, "top_p": 0.9}
    inputs = schema.validate({"image": "data:,", "prompt": PROMPT, **params})
    image_bytes = jpeg(_common.photo(448, 336))  # what the app sends: a ≤448 px JPEG
    image_uri = "data:image/jpeg;base64," + base64.b64encode(image_bytes).decode()

    rows = {"direct": [], "server": []}
    with start_background(predictor=predictor) as server, requests.Session() as session:
        direct(predictor, inputs, image_bytes)  # warm-up: first-call allocations, thread pools
        through_server(session, server.url, params, image_uri)
        for _ in range(runs):
            rows["direct"].append(direct(predictor, inputs, image_bytes))
            rows["server"].append(through_server(session, server.url, params, image_uri))
    same = rows["direct"][-1]["text"] == rows["server"][-1]["text"]

    def summary(name: str) -> dict:
        runs_ = rows[name]
        return {"ttft": median([r["ttft"] for r in runs_]),
                "tps": median([r["tokens"] / r["total"] for r in runs_]),
                "total": median([r["total"] for r in runs_]),
                "tokens": median([r["tokens"] for r in runs_])}

    d, s = summary("direct"), summary("server")
    print(f"prompt {rows['direct'][0]['prompt_tokens']} tokens, {d['tokens']:.0f} new tokens, "
          f"greedy, {runs} runs each; same text both ways: {same}\n")
    table([("direct generate()", d["ttft"] * 1000, d["tps"], d["total"] * 1000),
           ("through the server", s["ttft"] * 1000, s["tps"], s["total"] * 1000),
           ("server / direct", s["ttft"] / d["ttft"], s["tps"] / d["tps"], s["total"] / d["total"]),
           ("server − direct (ms)", (s["ttft"] - d["ttft"]) * 1000, float("nan"),
            (s["total"] - d["total"]) * 1000)],
          ["path", "first token (ms)", "tokens/s", "whole answer (ms)"])
    ttft_ratio, tps_ratio = s["ttft"] / d["ttft"], s["tps"] / d["tps"]
    targets([(f"first-token overhead ≤ {TARGET_OVERHEAD:.0%}", f"{ttft_ratio - 1:+.1%}",
              ttft_ratio <= 1 + TARGET_OVERHEAD),
             (f"tokens/s overhead ≤ {TARGET_OVERHEAD:.0%}", f"{1 - tps_ratio:+.1%}",
              tps_ratio >= 1 - TARGET_OVERHEAD)])
    print(f"\nbenchmark wall time {time.perf_counter() - PROCESS_START:.1f} s")
    if tiny:
        print("(tiny model: a token takes well under a millisecond, so fixed per-request costs "
              "dominate the ratios; run with a real checkpoint for the figures that the target is for)")


if __name__ == "__main__":
    main()
