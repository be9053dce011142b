"""A real open vision-language model on the CPU: SmolVLM (Idefics3) through transformers.

`SmolVLMPredictor("HuggingFaceTB/SmolVLM-256M-Instruct")` answers with the model itself. torch and
transformers come from requirements-local.txt and are imported only when a predictor is made, so
the core app never needs them.

Loading is offline-first: files come from a folder or the local Hugging Face cache
(`local_files_only`), and a model that is not there fails in well under a second with a message
saying where it looked and how to get it. Pass `allow_download=True` to let transformers fetch it.

The six MiniGPT-4 parameters map as MiniGPT-4's `Chat.answer` means them:
- `max_length` bounds prompt plus answer. Like MiniGPT-4 it never passes to `generate()`; unlike
  MiniGPT-4 it cuts the answer, not the prompt, because cutting a prompt would cut image tokens.
  A prompt that leaves no room for one new token fails with a message naming the needed length.
- `max_new_tokens`, `num_beams`, `top_p` and `repetition_penalty` pass straight through.
- `temperature`: MiniGPT-4 always samples. At the schema's minimum, 0.01, sampling is argmax in
  all but name, so this predictor decodes greedily there (reproducible answers); above it, it
  samples with `temperature` and `top_p` (beam sampling when `num_beams` > 1, as MiniGPT-4 does).

Tokens stream as they are decoded when `num_beams` is 1; beam search yields one final answer.
Image splitting is turned off, so an image costs one tile (64 tokens for SmolVLM) and the first
token comes after about a second on two cores instead of about twenty.

Cancellation: the runner stops iterating and closes the generator; closing sets a stop event that
a stopping criterion checks after every decoding step, so generation ends within one step (the
prefill, one forward pass, cannot be interrupted). While nothing new is decoded (loading, waiting
for the model, prefill, beam search) `predict` yields empty chunks every HEARTBEAT_S seconds so
the runner gets a chance to see a cancel. Predictions share one model: `generate()` calls run one
at a time, and a prediction that has to wait says so in its logs.
"""

from __future__ import annotations

import importlib.util
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from PIL import Image

from . import LogFn, PredictionError
from .vlm_prompt import fit_new_tokens, messages_from_prompt, prepare_processor, render

__all__ = ["DEFAULT_MODEL", "LocalModelError", "SmolVLMPredictor", "messages_from_prompt"]

DEFAULT_MODEL = "HuggingFaceTB/SmolVLM-256M-Instruct"
GREEDY_TEMPERATURE = 0.01  # the schema's minimum temperature; at or below it, decode greedily
HEARTBEAT_S = 0.05  # how often `predict` yields "" while it waits, so a cancel is seen
REQUIREMENTS = "requirements-local.txt"
_HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


class LocalModelError(PredictionError):
    """The local model cannot be used: its dependencies or its files are missing."""


@dataclass
class Plan:
    """One prediction's model inputs and `generate()` arguments, before generation starts."""

    model_inputs: dict  # input_ids, attention_mask, pixel_values, ... as tensors
    generate_kwargs: dict  # max_new_tokens, num_beams, do_sample, ... (no streamer, no criteria)
    prompt_tokens: int
    image_tokens: int
    turns: int  # user messages in the conversation, the current question included
    notes: list[str] = field(default_factory=list)  # why max_new_tokens was lowered, if it was


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # e.g. blocked with sys.modules[name] = None
        return False


def _require_dependencies() -> None:
    missing = [name for name in ("torch", "transformers") if not _installed(name)]
    if missing:
        raise LocalModelError(
            f"the local model needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'}"
            f" not installed. Install the optional requirements: pip install -r {REQUIREMENTS}")


def resolve_model(model: str, *, allow_download: bool = False) -> str:
    """The folder that holds `model` (a folder or hub id), or the hub id if downloads are allowed.

    Raises LocalModelError at once, without touching the network, when it cannot be found.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LocalModelError(f"{path} is a folder but not a model: it has no config.json")
        return str(path.resolve())
    if path.exists():
        raise LocalModelError(f"{path} is a file; pass a model folder or a Hugging Face model id")
    how = (f"Download it once with `hf download {DEFAULT_MODEL}` (older huggingface_hub: "
           f"`huggingface-cli download {DEFAULT_MODEL}`) and pass its id, or pass a folder "
           "that holds a downloaded model")
    if not _HUB_ID.match(model) or model.startswith((".", "~")):
        raise LocalModelError(f"no model folder at {path.resolve()}. {how}.")
    if allow_download:
        return model
    from huggingface_hub import constants, try_to_load_from_cache

    config = try_to_load_from_cache(model, "config.json")
    if isinstance(config, str):
        return str(Path(config).parent)
    raise LocalModelError(
        f"model {model!r} is neither a folder nor in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}), and downloads are off. {how.replace(DEFAULT_MODEL, model)}, "
        "or allow downloads (--allow-download, or MINIGPT4_ALLOW_DOWNLOAD=1).")


class SmolVLMPredictor:
    """SmolVLM (or any Idefics3-style image-text-to-text checkpoint) answering on the CPU.

    The constructor checks dependencies and finds the files (fast, fails fast); the weights load
    on the first prediction, or earlier with `load()`. `threads` sets torch's thread count
    (default: the CPUs this process may use).
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, allow_download: bool = False,
                 threads: int | None = None):
        _require_dependencies()
        self.name = model
        self.allow_download = allow_download
        self.location = resolve_model(model, allow_download=allow_download)
        self.threads = threads or available_cpus()
        self.load_seconds: float | None = None
        self.processor: Any = None
        self.model: Any = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------

    def load(self, log: LogFn | None = None) -> "SmolVLMPredictor":
        """Load processor and weights once (thread-safe); later calls return at once."""
        with self._load_lock:
            if self.model is not None:
                return self
            where = "downloads allowed" if self.allow_download else "offline"
            if log:
                log(f"smolvlm: loading {self.name} from {self.location} ({where})\n")
            started = time.perf_counter()  # importing torch and transformers counts as loading
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor

            torch.set_num_threads(self.threads)
            local = not self.allow_download
            try:
                processor = AutoProcessor.from_pretrained(self.location, local_files_only=local)
                model = AutoModelForImageTextToText.from_pretrained(
                    self.location, local_files_only=local, dtype=torch.float32)
            except (OSError, ValueError) as exc:
                raise LocalModelError(f"could not load {self.name} from {self.location}: {exc}") from exc
            model.eval()
            prepare_processor(processor)
            self.load_seconds = time.perf_counter() - started
            self.processor, self.model = processor, model  # `model` last: it marks "loaded"
            if log:
                params = sum(p.numel() for p in model.parameters()) / 1e6
                log(f"smolvlm: model loaded in {self.load_seconds:.2f} s ({params:.1f} M parameters, "
                    f"float32, {self.threads} threads)\n")
            return self

    # -- planning --------------------------------------------------------------------------

    def plan(self, inputs: dict, image: Image.Image) -> Plan:
        """Model inputs and `generate()` arguments for validated MiniGPT-4 `inputs` (loads first)."""
        self.load()
        text, turns = render(self.processor, inputs["prompt"])
        model_inputs = self.processor(text=text, images=[image.convert("RGB")], return_tensors="pt")
        input_ids = model_inputs["input_ids"]
        prompt_tokens = int(input_ids.shape[1])
        image_token_id = getattr(self.model.config, "image_token_id", None)
        image_tokens = int((input_ids == image_token_id).sum()) if image_token_id is not None else 0
        context = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        budget = fit_new_tokens(prompt_tokens=prompt_tokens, image_tokens=image_tokens,
                                max_length=inputs["max_length"],
                                max_new_tokens=inputs["max_new_tokens"], context=context)
        max_new_tokens = budget.max_new_tokens
        kwargs: dict = {"max_new_tokens": max_new_tokens, "num_beams": inputs["num_beams"],
                        "repetition_penalty": inputs["repetition_penalty"]}
        if inputs["temperature"] <= GREEDY_TEMPERATURE:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=inputs["temperature"], top_p=inputs["top_p"],
                          top_k=None)
        tokenizer = self.processor.tokenizer
        if tokenizer.pad_token_id is not None:
            kwargs["pad_token_id"] = tokenizer.pad_token_id
        return Plan(model_inputs=dict(model_inputs), generate_kwargs=kwargs, prompt_tokens=prompt_tokens,
                    image_tokens=image_tokens, turns=turns, notes=budget.notes)

    # -- prediction ------------------------------------------------------------------------

    def predict(self, inputs: dict, image: Image.Image, log: LogFn,
                cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the answer (token by token when `num_beams` is 1); see the module docstring.

        `cancel`, if given, stops generation like closing the generator does.
        """
        if self.model is None:
            yield from wait_for(lambda: self.load(log))
        else:
            log(f"smolvlm: model {self.name} (loaded in {self.load_seconds:.2f} s)\n")
        if not self._generate_lock.acquire(blocking=False):
            log("smolvlm: waiting for the model: another prediction is generating\n")
            waited = time.perf_counter()
            while not self._generate_lock.acquire(timeout=HEARTBEAT_S):
                yield ""
            log(f"smolvlm: waited {time.perf_counter() - waited:.2f} s for the model\n")
        try:
            yield from self._generate(inputs, image, log, cancel)
        finally:
            self._generate_lock.release()

    def _generate(self, inputs: dict, image: Image.Image, log: LogFn,
                  cancel: threading.Event | None) -> Iterator[str]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        started = time.perf_counter()
        plan = self.plan(inputs, image)
        kwargs = plan.generate_kwargs
        _log_plan(plan, log)
        stop = StopOnEvent(plan.prompt_tokens, threading.Event(), cancel)
        streaming = kwargs["num_beams"] == 1
        streamer = (TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True,
                                         skip_special_tokens=True, timeout=HEARTBEAT_S)
                    if streaming else None)
        result: dict = {}

        def run() -> None:
            try:
                result["output"] = self.model.generate(
                    **plan.model_inputs, **kwargs, streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([stop]))
            except BaseException as exc:  # re-raised in the generator
                result["error"] = exc
                if streamer is not None:
                    streamer.end()

        generating = time.perf_counter()
        thread = threading.Thread(target=run, name="smolvlm-generate", daemon=True)
        outcome = "failed"
        thread.start()
        try:
            if streaming:
                yield from _streamed(streamer, log, started=started, generating=generating)
            else:
                while thread.is_alive():
                    thread.join(HEARTBEAT_S)
                    if thread.is_alive():
                        yield ""
            thread.join()
            if "error" in result:
                raise result["error"]
            if not streaming:
                log(f"smolvlm: answer after {time.perf_counter() - generating:.2f} s "
                    f"(preparing the inputs took {generating - started:.2f} s)\n")
                yield self.processor.tokenizer.decode(result["output"][0, plan.prompt_tokens:],
                                                      skip_special_tokens=True)
            outcome = "stopped by cancel" if stop.stopped else "done"
        except GeneratorExit:
            outcome = "canceled"
            raise
        finally:
            stop.request()  # closing the generator stops generate() within one step
            thread.join()
            elapsed = time.perf_counter() - generating
            rate = stop.new_tokens / elapsed if elapsed > 0 else 0.0
            log(f"smolvlm: {stop.new_tokens} new tokens in {elapsed:.2f} s ({rate:.1f} tokens/s, "
                f"{stop.steps} decoding steps), {outcome}\n")


def _log_plan(plan, log: LogFn) -> None:
    kwargs = plan.generate_kwargs
    mode = ("greedy" if not kwargs["do_sample"] else
            f"sampling (temperature {kwargs['temperature']:g}, top_p {kwargs['top_p']:g})")
    log(f"smolvlm: prompt {plan.prompt_tokens} tokens ({plan.image_tokens} image, "
        f"{plan.turns} turn{'s' * (plan.turns > 1)}); up to {kwargs['max_new_tokens']} new "
        f"tokens, {mode}, num_beams {kwargs['num_beams']}, repetition_penalty "
        f"{kwargs['repetition_penalty']:g}\n")
    for note in plan.notes:
        log(f"smolvlm: {note}\n")


def _streamed(streamer, log: LogFn, *, started: float, generating: float) -> Iterator[str]:
    """The streamer's text as it comes ("" as a heartbeat while none comes), logging when the
    first token came."""
    first = None
    while True:
        try:
            text = next(streamer)
        except StopIteration:
            return
        except queue.Empty:
            yield ""
            continue
        if text and first is None:
            first = time.perf_counter()
            log(f"smolvlm: first token after {first - generating:.2f} s "
                f"(preparing the inputs took {generating - started:.2f} s)\n")
        yield text


class StopOnEvent:
    """A stopping criterion that ends generation once its event (or `cancel`) is set.

    It also counts decoding steps, so callers can see how far generation got.
    """

    def __init__(self, prompt_tokens: int, event: threading.Event,
                 cancel: threading.Event | None = None):
        self.prompt_tokens = prompt_tokens
        self.event = event
        self.cancel = cancel
        self.steps = 0  # decoding steps so far (the criterion runs once after each)
        self.new_tokens = 0
        self.requested_at: int | None = None  # `steps` when request() was first called
        self.stopped_at: int | None = None  # the step whose check saw the stop
        self.stopped = False

    def request(self) -> None:
        """Ask generation to stop after the step now in flight."""
        if self.requested_at is None:
            self.requested_at = self.steps
        self.event.set()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.steps += 1
        self.new_tokens = int(input_ids.shape[-1]) - self.prompt_tokens
        stop = self.event.is_set() or (self.cancel is not None and self.cancel.is_set())
        if stop and not self.stopped:
            self.stopped, self.stopped_at = True, self.steps
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


def wait_for(work: Callable[[], object]) -> Iterator[str]:
    """Run `work` on a thread, yielding "" while it runs; re-raise what it raised."""
    result: dict = {}

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, name="smolvlm-load", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(HEARTBEAT_S)
        if thread.is_alive():
            yield ""
    if "error" in result:
        raise result["error"]
