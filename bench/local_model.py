"""Local model: SmolVLM on ONNX Runtime (int8, fp32) against transformers, and the server's overhead.

In one run, on the same weights, image and prompt (greedy, one beam, one 512-px tile):
- each engine in a process of its own (so peak RSS is its own): ONNX Runtime int8, ONNX Runtime
  fp32 (both `onnx_engine.OnnxVLM`, our decoding loop) and transformers `generate()` with a
  streamer (`SmolVLMPredictor`, torch). First word = processor start to first token; decode
  tokens/s = tokens after the first / time after the first; peak RSS = the process's maximum.
- the app's added time: int8 through the embedded server (POST /v1/predictions, image as a JPEG
  data URI, SSE stream; what the app calls) against the same engine called directly, alternating.

Targets (issue #17, 2-core machine): int8 first word ≤ 1.0 s, decode ≥ 60 tokens/s and ≥ 3× the
transformers path, peak RSS ≤ 1.2 GB, server overhead ≤ 5 %.

    python bench/local_model.py [--quick] [--workdir DIR] [--runs N] [--max-new-tokens N]

Full mode builds a random Idefics3 of SmolVLM-256M-Instruct's exact shape (tests/tiny_vlm.py) and
exports it to the official ONNX layout (tests/onnx_export.py; about 2.5 min and 3.4 GB once; with
--workdir the export is kept and reused). The work per token equals the real model's; the words
are nonsense. --quick uses the committed tiny fixture (seconds; for CI, not for the targets).
Needs requirements-local.txt (torch, onnx, onnxscript) for the transformers path and the export.
"""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import base64  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import header, median, table, targets  # noqa: E402

sys.path.insert(0, str(_common.ROOT))
from PIL import Image  # noqa: E402

from minigpt4_ui.shared import schema  # noqa: E402

PROMPT = "Describe this image in detail."
FIXTURE = _common.ROOT / "tests" / "fixtures" / "tiny-smolvlm"
ENGINES = ("onnx-int8", "onnx-fp32", "transformers")
TARGET_FIRST_WORD_S = 1.0
TARGET_TOKENS_PER_S = 60.0
TARGET_SPEED_UP = 3.0
TARGET_PEAK_RSS_MB = 1200.0
TARGET_OVERHEAD = 0.05


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny fixture, a few runs (CI)")
    parser.add_argument("--workdir", help="keep (and reuse) the random model and its export here")
    parser.add_argument("--runs", type=int, help="measured runs per engine (default: 2 quick, 5 full)")
    parser.add_argument("--max-new-tokens", type=int, help="tokens per answer (default: 16 quick, 100 full)")
    parser.add_argument("--measure", choices=[*ENGINES, "server"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    return parser.parse_args()


def image_bytes() -> bytes:
    """What the app sends: a ≤448 px JPEG of a photo-like picture."""
    buffer = io.BytesIO()
    _common.photo(448, 336).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def inputs(max_new: int) -> dict:
    return schema.validate({"image": "data:,", "prompt": PROMPT, "num_beams": 1, "temperature": 0.01,
                            "max_new_tokens": max_new, "max_length": 4000, "repetition_penalty": 1.0})


def clocked(tokens) -> dict:
    """Time a stream of tokens (the clock started just before it was made)."""
    started = time.perf_counter()
    stamps = [time.perf_counter() for _ in tokens]
    first = stamps[0] - started
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return {"first": first, "tps": decode, "tokens": len(stamps)}


def measure_engine(engine_name: str, folder: str, runs: int, max_new: int) -> dict:
    """One engine, in this process: load, one warm-up, `runs` timed answers."""
    from minigpt4_ui.server.predictors.smolvlm import available_cpus

    picture = Image.open(io.BytesIO(image_bytes())).convert("RGB")
    values = inputs(max_new)
    started = time.perf_counter()
    if engine_name.startswith("onnx"):
        from minigpt4_ui.server.predictors.onnx_engine import Decoding, OnnxVLM

        engine = OnnxVLM(folder, precision=engine_name.split("-")[1], threads=available_cpus())

        def answer():
            prompt = engine.prepare(values, picture)  # the processor's time counts
            yield from engine.generate(prompt, Decoding.from_inputs(values, prompt.max_new_tokens))
    else:
        from transformers import TextIteratorStreamer

        from minigpt4_ui.server.predictors.smolvlm import SmolVLMPredictor

        predictor = SmolVLMPredictor(folder).load()

        def answer():
            plan = predictor.plan(values, picture)
            streamer = TextIteratorStreamer(predictor.processor.tokenizer, skip_prompt=True)
            thread = threading.Thread(target=lambda: predictor.model.generate(
                **plan.model_inputs, **plan.generate_kwargs, streamer=streamer))
            thread.start()
            # The streamer gives text per word; each word of the random model is one token.
            yield from (chunk for chunk in streamer if chunk)
            thread.join()
    load = time.perf_counter() - started
    clocked(answer())  # warm-up: first-call allocations, thread pools
    rows = [clocked(answer()) for _ in range(runs)]
    return {"engine": engine_name, "load": load, "first": median([r["first"] for r in rows]),
            "tps": median([r["tps"] for r in rows]), "tokens": rows[-1]["tokens"],
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM, which starts afresh at exec, unlike
    getrusage's maximum, which a child inherits from the parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure_server(folder: str, runs: int, max_new: int) -> dict:
    """int8 through the embedded server against the same engine called directly, alternating."""
    import requests

    from minigpt4_ui.server import start_background
    from minigpt4_ui.server.predictors.builtin import BuiltinPredictor
    from minigpt4_ui.server.predictors.model_weights import ModelWeights
    from minigpt4_ui.server.predictors.onnx_engine import Decoding
    from minigpt4_ui.server.predictors.smolvlm_onnx import OnnxSmolVLMPredictor

    weights = ModelWeights(folder, "int8").start()
    weights.wait(30)
    predictor = OnnxSmolVLMPredictor(weights, fallback=BuiltinPredictor())
    engine = predictor.load()
    raw = image_bytes()
    values = inputs(max_new)
    uri = "data:image/jpeg;base64," + base64.b64encode(raw).decode()

    def direct() -> dict:
        started = time.perf_counter()
        picture = Image.open(io.BytesIO(raw)).convert("RGB")
        prompt = engine.prepare(values, picture)
        stamps = [time.perf_counter() for _ in engine.generate(prompt, Decoding.from_inputs(values, max_new))]
        return {"first": stamps[0] - started, "total": stamps[-1] - started}

    def served(session, url) -> dict:
        started = time.perf_counter()
        created = session.post(f"{url}/v1/predictions", timeout=60, json={
            "version": _common.DEFAULT_VERSION, "stream": True,
            "input": {"image": uri, "prompt": PROMPT, **{k: values[k] for k in values if k not in ("image", "prompt")}}})
        created.raise_for_status()
        stamps = [stamp for stamp, _ in _common.stream_outputs(session, created.json()["urls"]["stream"])]
        return {"first": stamps[0] - started, "total": stamps[-1] - started}

    rows: dict[str, list] = {"direct": [], "server": []}
    with start_background(predictor=predictor) as server, requests.Session() as session:
        direct(), served(session, server.url)  # warm-up
        for _ in range(runs):
            rows["direct"].append(direct())
            rows["server"].append(served(session, server.url))
    return {name: {"first": median([r["first"] for r in runs_]), "total": median([r["total"] for r in runs_])}
            for name, runs_ in rows.items()}


def child(kind: str, folder: str, runs: int, max_new: int) -> dict:
    """Run one measurement in a fresh process and read its JSON line."""
    done = subprocess.run([sys.executable, __file__, "--measure", kind, "--folder", folder,
                           "--runs", str(runs), "--max-new-tokens", str(max_new)],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"{kind} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_folder(args: argparse.Namespace) -> tuple[str, str]:
    """The folder to measure and what it is."""
    if args.quick:
        return str(FIXTURE), "the committed tiny fixture (tests/fixtures/tiny-smolvlm)"
    from tests.onnx_export import export_onnx
    from tests.tiny_vlm import build_tiny_vlm

    work = Path(args.workdir or tempfile.mkdtemp(prefix="smolvlm-256m-shape-"))
    if not (work / "onnx" / "decoder_model_merged_int8.onnx").is_file():
        started = time.perf_counter()
        build_tiny_vlm(work, shape="smolvlm-256m")
        export_onnx(str(work), precisions=("fp32", "int8"))
        print(f"built and exported SmolVLM-256M's shape (random weights) in "
              f"{time.perf_counter() - started:.0f} s")
    if not args.workdir:
        import atexit
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    return str(work), f"random weights of SmolVLM-256M-Instruct's exact shape ({work})"


def main() -> None:
    args = parse()
    runs = args.runs or (2 if args.quick else 5)
    max_new = args.max_new_tokens or (16 if args.quick else 100)
    if args.measure:
        result = (measure_server(args.folder, runs, max_new) if args.measure == "server"
                  else measure_engine(args.measure, args.folder, runs, max_new))
        print(json.dumps(result))
        return
    header("Local model: ONNX Runtime int8 / fp32 vs transformers; server overhead", args.quick)
    folder, what = model_folder(args)
    print(f"model: {what}; greedy, one tile, {max_new} new tokens, {runs} runs each after a warm-up, "
          f"each engine in its own process\n")
    results = {name: child(name, folder, runs, max_new) for name in ENGINES}
    torch_tps = results["transformers"]["tps"]
    table([(name, r["load"], r["first"] * 1000, r["tps"], r["tps"] / torch_tps, r["peak_rss_mb"])
           for name, r in results.items()],
          ["engine", "load (s)", "first word (ms)", "decode tokens/s", "× transformers", "peak RSS (MB)"])
    server = child("server", folder, runs, max_new)
    d, s = server["direct"], server["server"]
    print()
    table([("int8 engine directly", d["first"] * 1000, d["total"] * 1000),
           ("int8 through the server", s["first"] * 1000, s["total"] * 1000),
           ("server / direct", s["first"] / d["first"], s["total"] / d["total"])],
          ["path", "first word (ms)", "whole answer (ms)"])
    int8 = results["onnx-int8"]
    first_ratio, total_ratio = s["first"] / d["first"], s["total"] / d["total"]
    print()
    targets([(f"int8 first word ≤ {TARGET_FIRST_WORD_S:g} s", f"{int8['first']:.2f} s",
              int8["first"] <= TARGET_FIRST_WORD_S),
             (f"int8 decode ≥ {TARGET_TOKENS_PER_S:g} tokens/s", f"{int8['tps']:.1f}",
              int8["tps"] >= TARGET_TOKENS_PER_S),
             (f"int8 decode ≥ {TARGET_SPEED_UP:g}× transformers", f"{int8['tps'] / torch_tps:.2f}×",
              int8["tps"] >= TARGET_SPEED_UP * torch_tps),
             (f"int8 peak RSS ≤ {TARGET_PEAK_RSS_MB:g} MB", f"{int8['peak_rss_mb']:.0f} MB",
              int8["peak_rss_mb"] <= TARGET_PEAK_RSS_MB),
             (f"server overhead ≤ {TARGET_OVERHEAD:.0%} (first word, whole answer)",
              f"{first_ratio - 1:+.1%}, {total_ratio - 1:+.1%}",
              first_ratio <= 1 + TARGET_OVERHEAD and total_ratio <= 1 + TARGET_OVERHEAD)])
    print(f"\nbenchmark wall time {time.perf_counter() - PROCESS_START:.1f} s")
    if args.quick:
        print("(tiny fixture: a token takes well under a millisecond, so these figures say nothing "
              "about the targets; run without --quick)")


if __name__ == "__main__":
    main()
