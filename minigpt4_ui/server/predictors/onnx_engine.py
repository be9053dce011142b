"""SmolVLM (Idefics3) on ONNX Runtime, no torch: the three official sessions and our decoding loop.

The Hugging Face repository `HuggingFaceTB/SmolVLM-256M-Instruct` ships `onnx/vision_encoder*.onnx`,
`onnx/embed_tokens*.onnx` and `onnx/decoder_model_merged*.onnx`, one file per precision
(`PRECISIONS`). `OnnxVLM(folder)` loads them with the repository's processor (transformers'
`AutoProcessor`, which runs without torch) and decodes with MiniGPT-4's parameters:

- `temperature` at its minimum (0.01) decodes greedily; above it the next token is sampled from
  the softmax at that temperature, cut to the smallest set whose probability reaches `top_p`;
- `repetition_penalty` divides the positive logits (multiplies the negative ones) of every token
  already in the prompt or the answer, as transformers does;
- `num_beams` > 1 runs that many beams as one batch, the KV cache reordered every step by the
  beam each survivor came from; hypotheses end at end-of-utterance and are ranked by mean
  log-probability per token (transformers' `length_penalty` 1). With sampling the candidates are
  drawn rather than taken best-first, as MiniGPT-4's beam sampling does.
- `max_length` and `max_new_tokens` are fitted by `vlm_prompt.fit_new_tokens`.

Every decoding step is one `decoder_model_merged` run; `should_stop()` is asked before each, so a
stop ends generation within one step. Only the vision encoder and the prefill (one run each)
cannot be interrupted. Reference: shared/reference/onnx-smolvlm.md (sessions, shapes, pitfalls).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from ...shared.facts import SMOLVLM_PRECISION as DEFAULT_PRECISION  # int8: the fastest on CPU
from .vlm_prompt import fit_new_tokens, prepare_processor, render

GREEDY_TEMPERATURE = 0.01  # the schema's minimum temperature; at or below it, decode greedily
SESSIONS = ("vision_encoder", "embed_tokens", "decoder_model_merged")
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


def onnx_files(precision: str) -> list[str]:
    """The three session files of one precision, as paths inside the repository."""
    suffix = "" if precision == "fp32" else f"_{precision}"
    return [f"onnx/{stem}{suffix}.onnx" for stem in SESSIONS]


@dataclass(frozen=True)
class Decoding:
    """MiniGPT-4's decoding parameters as this engine reads them."""

    max_new_tokens: int
    num_beams: int = 1
    temperature: float = GREEDY_TEMPERATURE
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= GREEDY_TEMPERATURE

    @classmethod
    def from_inputs(cls, inputs: dict, max_new_tokens: int) -> "Decoding":
        return cls(max_new_tokens=max_new_tokens, num_beams=inputs["num_beams"],
                   temperature=inputs["temperature"], top_p=inputs["top_p"],
                   repetition_penalty=inputs["repetition_penalty"])


@dataclass
class Prompt:
    """One question's model inputs, ready to decode."""

    input_ids: np.ndarray  # int64 [1, L]
    pixel_values: np.ndarray  # float32 [1, tiles, 3, H, W]
    pixel_attention_mask: np.ndarray  # bool [1, tiles, H, W]
    image_tokens: int
    turns: int
    max_new_tokens: int  # after fitting max_length and the context
    notes: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass
class Timing:
    """Where one generation's time went (seconds), and how many tokens it made."""

    vision: float = 0.0
    prefill: float = 0.0
    steps: int = 0
    new_tokens: int = 0


class OnnxVLM:
    """The processor and three ONNX Runtime sessions of one SmolVLM folder, for one precision."""

    def __init__(self, folder: str | Path, *, precision: str = DEFAULT_PRECISION, threads: int = 2):
        import onnxruntime as ort
        from transformers import AutoProcessor

        self.folder = Path(folder)
        self.precision = precision
        self.processor = prepare_processor(AutoProcessor.from_pretrained(str(self.folder)))
        config = json.loads((self.folder / "config.json").read_text())
        text = config.get("text_config", {})
        self.image_token_id = int(config["image_token_id"])
        self.context = text.get("max_position_embeddings")
        self.eos_ids = _eos_ids(self.folder, config)
        heads = text.get("num_attention_heads", 9)
        self._kv_heads = int(text.get("num_key_value_heads") or heads)
        self._head_dim = int(text.get("head_dim") or text.get("hidden_size", 576) // heads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Spinning worker threads fight the app's own threads for two cores: without it the
        # first token came 2x sooner (reference §1).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        vision, embed, decoder = (
            ort.InferenceSession(str(self.folder / name), options, providers=["CPUExecutionProvider"])
            for name in onnx_files(precision))
        self.vision, self.embed, self.decoder = vision, embed, decoder
        self._types = {i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in decoder.get_inputs()}
        self._past = [i for i in decoder.get_inputs() if i.name.startswith("past_key_values.")]
        self._present = [o.name for o in decoder.get_outputs()][1:]
        self._vision_types = {i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in vision.get_inputs()}

    # -- preparing -------------------------------------------------------------------------

    def prepare(self, inputs: dict, image: Image.Image) -> Prompt:
        """Tokens and pixels for validated MiniGPT-4 `inputs`, with the answer's token budget."""
        text, turns = render(self.processor, inputs["prompt"])
        batch = self.processor(text=text, images=[image.convert("RGB")], return_tensors="np")
        input_ids = np.asarray(batch["input_ids"], dtype=np.int64)
        image_tokens = int((input_ids == self.image_token_id).sum())
        budget = fit_new_tokens(prompt_tokens=int(input_ids.shape[1]), image_tokens=image_tokens,
                                max_length=inputs["max_length"],
                                max_new_tokens=inputs["max_new_tokens"], context=self.context)
        return Prompt(input_ids=input_ids, pixel_values=np.asarray(batch["pixel_values"], np.float32),
                      pixel_attention_mask=np.asarray(batch["pixel_attention_mask"]).astype(bool),
                      image_tokens=image_tokens, turns=turns, max_new_tokens=budget.max_new_tokens,
                      notes=budget.notes)

    # -- decoding --------------------------------------------------------------------------

    def generate(self, prompt: Prompt, decoding: Decoding, *, should_stop: Callable[[], bool] = lambda: False,
                 timing: Timing | None = None) -> Iterator[int]:
        """Yield new token ids one by one (one beam), or the best beam's ids at its end.

        End-of-utterance ends the answer and is not yielded.
        """
        timing = timing or Timing()
        rng = np.random.default_rng(decoding.seed)
        logits, past = self._prefill(prompt, timing)
        if decoding.num_beams > 1:
            yield from self._beam_search(prompt, decoding, logits, past, rng, should_stop, timing)
            return
        seen = prompt.input_ids[0].tolist()
        length = prompt.tokens
        for _ in range(decoding.max_new_tokens):
            scores = _penalised(logits, [seen], decoding.repetition_penalty)
            token = int(_argmax(scores)[0] if decoding.greedy else _sample(scores, decoding, rng)[0])
            if token in self.eos_ids:
                return
            timing.new_tokens += 1
            yield token
            seen.append(token)
            if timing.new_tokens == decoding.max_new_tokens or should_stop():
                return
            logits, past = self._step(np.array([[token]], np.int64), past, length, timing)
            length += 1

    def decode(self, ids: list[int]) -> str:
        return self.processor.tokenizer.decode(ids, skip_special_tokens=True)

    def _prefill(self, prompt: Prompt, timing: Timing) -> tuple[np.ndarray, dict]:
        started = time.perf_counter()
        embeds = self.embed.run(None, {"input_ids": prompt.input_ids})[0]
        features = self.vision.run(None, {
            "pixel_values": prompt.pixel_values.astype(self._vision_types.get("pixel_values", np.float32)),
            "pixel_attention_mask": prompt.pixel_attention_mask})[0]
        where = prompt.input_ids == self.image_token_id
        embeds[where] = features.reshape(-1, embeds.shape[-1])[:int(where.sum())].astype(embeds.dtype)
        timing.vision = time.perf_counter() - started
        started = time.perf_counter()
        past = {i.name: np.zeros((1, self._kv_heads, 0, self._head_dim), self._types[i.name])
                for i in self._past}
        logits, past = self._run(embeds, past, 0)
        timing.prefill = time.perf_counter() - started
        return logits, past

    def _step(self, tokens: np.ndarray, past: dict, length: int, timing: Timing) -> tuple[np.ndarray, dict]:
        embeds = self.embed.run(None, {"input_ids": tokens})[0]
        timing.steps += 1
        return self._run(embeds, past, length)

    def _run(self, embeds: np.ndarray, past: dict, past_length: int) -> tuple[np.ndarray, dict]:
        """One decoder run over `embeds` [B, S, D] after `past_length` cached positions."""
        batch, seq = embeds.shape[:2]
        feed = {"inputs_embeds": embeds.astype(self._types["inputs_embeds"]),
                # The full mask, past included: the exports reject a mask of the new tokens only.
                "attention_mask": np.ones((batch, past_length + seq), np.int64),
                "position_ids": np.broadcast_to(np.arange(past_length, past_length + seq, dtype=np.int64),
                                                (batch, seq)).copy(),
                **past}
        outputs = self.decoder.run(None, feed)
        present = {name.replace("present.", "past_key_values.", 1): value
                   for name, value in zip(self._present, outputs[1:])}
        return outputs[0][:, -1].astype(np.float32), present

    def _beam_search(self, prompt: Prompt, decoding: Decoding, logits: np.ndarray, past: dict,
                     rng: np.random.Generator, should_stop: Callable[[], bool],
                     timing: Timing) -> Iterator[int]:
        beams = decoding.num_beams
        past = {name: np.repeat(value, beams, axis=0) for name, value in past.items()}
        logits = np.repeat(logits, beams, axis=0)
        scores = np.full(beams, -np.inf)
        scores[0] = 0.0  # all beams start as one: only the first may expand at step one
        prompt_ids = prompt.input_ids[0].tolist()
        answers: list[list[int]] = [[] for _ in range(beams)]
        done: list[tuple[float, list[int]]] = []
        length = prompt.tokens
        for step in range(decoding.max_new_tokens):
            # As transformers does in beam search: the penalty and warpers act on log-probabilities.
            logprobs = _penalised(_log_softmax(logits), [prompt_ids + a for a in answers],
                                  decoding.repetition_penalty)
            if not decoding.greedy:
                logprobs = top_p_mask(logprobs / decoding.temperature, decoding.top_p)
            totals = scores[:, None] + logprobs
            candidates = _beam_candidates(totals, 2 * beams, None if decoding.greedy else rng)
            survivors: list[tuple[int, int, float]] = []
            for rank, flat in enumerate(candidates):
                beam, token = divmod(int(flat), totals.shape[1])
                total = float(totals[beam, token])
                if token in self.eos_ids:
                    if rank < beams:  # transformers keeps an ended hypothesis only from the top ranks
                        done.append((total / max(1, len(answers[beam])), answers[beam]))
                    continue
                survivors.append((beam, token, total))
                if len(survivors) == beams:
                    break
            if not survivors:  # every candidate ended the answer
                break
            timing.new_tokens = step + 1
            best_running = max(t for _, _, t in survivors) / (step + 1)
            if len(done) >= beams and sorted(s for s, _ in done)[-beams] >= best_running:
                break
            if step + 1 == decoding.max_new_tokens or should_stop():
                answers = [answers[b] + [t] for b, t, _ in survivors]
                scores = np.array([t for _, _, t in survivors])
                break
            order = np.array([b for b, _, _ in survivors])
            answers = [answers[b] + [t] for b, t, _ in survivors]
            scores = np.array([t for _, _, t in survivors])
            past = {name: value[order] for name, value in past.items()}
            tokens = np.array([[t] for _, t, _ in survivors], np.int64)
            logits, past = self._step(tokens, past, length, timing)
            length += 1
        ranked = done + [(float(s) / max(1, len(a)), a) for s, a in zip(scores, answers) if np.isfinite(s)]
        best = max(ranked, key=lambda item: item[0])[1] if ranked else []
        timing.new_tokens = len(best)
        yield from best


class TextStream:
    """Token ids in, text out as soon as it is whole (no half UTF-8 characters, spaces kept)."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self._ids: list[int] = []
        self._prefix = 0  # ids before this were fully written out
        self._read = 0

    def push(self, token: int) -> str:
        """The new text `token` completes ("" while a character is still partial)."""
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix:self._read])
        now = self._decode(self._ids[self._prefix:])
        if len(now) > len(before) and not now.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self._ids)
            return now[len(before):]
        return ""


def _eos_ids(folder: Path, config: dict) -> set[int]:
    ids: set[int] = set()
    candidates = [config.get("eos_token_id"), config.get("text_config", {}).get("eos_token_id")]
    generation = folder / "generation_config.json"
    if generation.is_file():
        candidates.append(json.loads(generation.read_text()).get("eos_token_id"))
    for value in candidates:
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    return ids


def _penalised(logits: np.ndarray, seen: list[list[int]], penalty: float) -> np.ndarray:
    if penalty == 1.0:
        return logits
    out = logits.copy()
    for row, ids in enumerate(seen):
        unique = np.unique(np.asarray(ids, np.int64))
        values = out[row, unique]
        out[row, unique] = np.where(values < 0, values * penalty, values / penalty)
    return out


def _argmax(scores: np.ndarray) -> np.ndarray:
    return scores.argmax(axis=-1)


def _log_softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def top_p_mask(scores: np.ndarray, top_p: float) -> np.ndarray:
    """Scores outside the smallest set of tokens whose probability reaches `top_p` become -inf
    (the most likely token always stays)."""
    order = np.argsort(-scores, axis=-1)
    ranked = np.take_along_axis(scores, order, axis=-1)
    probs = np.exp(ranked - ranked[:, :1])
    probs /= probs.sum(axis=-1, keepdims=True)
    before = np.cumsum(probs, axis=-1) - probs  # probability of the tokens ranked above
    drop = before >= top_p
    drop[:, 0] = False
    masked = np.where(drop, -np.inf, ranked)
    out = np.empty_like(scores)
    np.put_along_axis(out, order, masked, axis=-1)
    return out


def _sample(scores: np.ndarray, decoding: Decoding, rng: np.random.Generator) -> np.ndarray:
    masked = top_p_mask(scores / decoding.temperature, decoding.top_p)
    probs = np.exp(_log_softmax(masked))
    return np.array([rng.choice(probs.shape[1], p=row / row.sum()) for row in probs])


def _beam_candidates(totals: np.ndarray, count: int, rng: np.random.Generator | None) -> np.ndarray:
    """The next `count` (beam, token) pairs as flat indices, best first: the top ones, or drawn
    by probability when sampling."""
    flat = totals.reshape(-1)
    finite = np.isfinite(flat)
    count = min(count, int(finite.sum()))
    if rng is None:
        picked = np.argpartition(-flat, count - 1)[:count]
    else:
        weights = np.exp(flat[finite] - flat[finite].max())
        picked = np.flatnonzero(finite)[rng.choice(int(finite.sum()), size=count, replace=False,
                                                   p=weights / weights.sum())]
    return picked[np.argsort(-flat[picked])]
