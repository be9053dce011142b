"""The built-in demo predictors: an honest report of what can be measured in the image.

`BuiltinPredictor` stands in for MiniGPT-4 and `StandInPredictor` for the other hosted models;
neither is the model it answers for, and both say so. The answer depends only on the question and
the pixels, so the same input always gives the same text; sampling parameters (`temperature`,
`top_p`, `num_beams`, …) are accepted but cannot change a deterministic answer. Token limits
(`max_new_tokens`, llava's `max_tokens`) are honoured, counting one word as one token.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

from PIL import Image, ImageStat

from ...shared.facts import ASSISTANT, HUMAN
from ...shared.model_schema import ModelSpec
from . import LogFn

# A small named palette; each thumbnail pixel counts towards its nearest entry.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15), "dark grey": (70, 70, 70), "grey": (128, 128, 128),
    "light grey": (190, 190, 190), "white": (245, 245, 245), "red": (200, 35, 35),
    "dark red": (110, 20, 25), "orange": (240, 140, 30), "yellow": (240, 220, 50),
    "beige": (215, 195, 155), "brown": (120, 80, 45), "green": (50, 160, 60),
    "dark green": (25, 80, 35), "olive": (125, 125, 45), "teal": (30, 130, 130),
    "light blue": (135, 185, 235), "blue": (35, 85, 205), "dark blue": (20, 30, 90),
    "purple": (120, 55, 150), "pink": (240, 150, 185),
}
QUOTE_LIMIT = 160


@dataclass(frozen=True)
class Facts:
    """What the predictor measures in one image."""

    width: int
    height: int
    colours: list[tuple[str, int]]  # (name, percent), most common first
    brightness: int  # mean luma, percent
    contrast: int  # luma standard deviation, percent of full scale


def measure(image: Image.Image) -> Facts:
    """Size, dominant palette colours, brightness and contrast of an RGB image."""
    thumb = image.convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
    # Pillow maps every pixel to its nearest palette entry in C; a Python loop took ~0.5 s a photo.
    indexed = thumb.quantize(palette=_PALETTE_IMAGE, dither=Image.Dither.NONE)
    counts: Counter[str] = Counter()
    for count, index in indexed.getcolors(maxcolors=256):
        counts[_NAMES[index] if index < len(_NAMES) else _NAMES[0]] += count
    total = sum(counts.values())
    top = [(name, round(100 * n / total)) for name, n in counts.most_common(3)]
    colours = top[:1] + [(name, share) for name, share in top[1:] if share >= 10]
    luma = ImageStat.Stat(thumb.convert("L"))
    return Facts(width=image.width, height=image.height, colours=colours,
                 brightness=round(100 * luma.mean[0] / 255),
                 contrast=round(100 * luma.stddev[0] / 255))


def _palette_image() -> Image.Image:
    palette = Image.new("P", (1, 1))
    flat = [channel for rgb in PALETTE.values() for channel in rgb]
    # Unused entries repeat the first colour, so no pixel can map to an unnamed one.
    palette.putpalette(flat + flat[:3] * (256 - len(PALETTE)))
    return palette


_NAMES = list(PALETTE)
_PALETTE_IMAGE = _palette_image()


def answer(prompt: str, facts: Facts) -> str:
    """MiniGPT-4's stand-in reply to a prompt; earlier turns folded in with `###` count as context."""
    earlier = prompt.count(ASSISTANT.strip())
    question = prompt.rsplit(HUMAN.strip(), 1)[-1]
    return stand_in_answer("MiniGPT-4", question, facts, earlier=earlier)


def _follow_up(earlier: int) -> str:
    if not earlier:
        return ""
    return f" (after {earlier} earlier turn{'s' * (earlier > 1)})"


def words(text: str) -> list[str]:
    """Split text into chunks that each carry their leading whitespace; they join back to text."""
    return re.findall(r"\s*\S+", text)


class BuiltinPredictor:
    """Streams `answer(...)` word by word; see the module docstring for what it ignores."""

    def predict(self, inputs: dict, image: Image.Image, log: LogFn,
                cancel: threading.Event | None = None) -> Iterator[str]:
        chunks = words(answer(inputs["prompt"], measure(image)))
        limit = inputs["max_new_tokens"]
        log(f"built-in predictor: {len(chunks)} words, generating up to {limit} tokens\n")
        yield from chunks[:limit]


# What a question asks for, matched on words, case-insensitively: the answer follows the first match.
CAPTION_ASK = re.compile(r"\bcaption\b|\btitle\b", re.IGNORECASE)
SHORT_ASK = re.compile(r"\bone sentence\b|\bshort(ly)?\b|\bbrief(ly)?\b|\bin a (word|few words)\b"
                       r"|\bone word\b", re.IGNORECASE)
COLOUR_ASK = re.compile(r"\bcolou?rs?\b", re.IGNORECASE)
SIZE_ASK = re.compile(r"\b(size|big|large|small|resolution|dimensions?|pixels?|wide|tall)\b", re.IGNORECASE)
LIGHT_ASK = re.compile(r"\b(bright|brightness|dark|light|lit|contrast|exposure)\b", re.IGNORECASE)
# The word-count limits stand-ins honour, by input name (one word counts as one token).
TOKEN_LIMITS = ("max_tokens", "max_new_tokens")


def caption(facts: Facts) -> str:
    """A caption made of measurements: what a stand-in can truthfully say about a picture."""
    mix = _mix(facts)
    article = "An" if mix[0] in "aeiou" else "A"
    return f"{article} {mix} {_orientation(facts)} picture, {_level(facts)}, {facts.width}×{facts.height}"


def stand_in_answer(model: str, question: str, facts: Facts | None, *, wants_caption: bool = False,
                    earlier: int = 0) -> str:
    """The stand-in's reply for `model`, shaped by the question: a caption, one sentence, the
    colours, the size, the light, or else a full report of what it measured."""
    itself = f"measured by the built-in stand-in for {model}, not {model} itself"
    if facts is None:
        return (f"No image was sent, and the built-in stand-in for {model} can only measure images; "
                f"it is not {model} itself.")
    shares = ", ".join(f"{name} {share}%" for name, share in facts.colours)
    if wants_caption or CAPTION_ASK.search(question):
        return f"{caption(facts)} ({itself})."
    if SHORT_ASK.search(question):
        return f"It is a {facts.width}×{facts.height} {_orientation(facts)} image, mostly {_mix(facts)} ({itself})."
    if COLOUR_ASK.search(question):
        return (f"Mostly {_mix(facts)}: {shares} of a 64×64 thumbnail{_follow_up(earlier)}. That is "
                f"{itself}; it cannot tell which object has which colour.")
    if SIZE_ASK.search(question):
        return (f"The image is {facts.width}×{facts.height} pixels, {_orientation(facts)}, as received"
                f"{_follow_up(earlier)}. It says nothing about how big things in "
                f"it are: that was {itself}.")
    if LIGHT_ASK.search(question):
        return (f"It is {_level(facts)}: mean brightness {facts.brightness}%, {_contrast(facts)} contrast "
                f"({facts.contrast}%){_follow_up(earlier)}; {itself}.")
    return (f"This {facts.width}×{facts.height} {_orientation(facts)} image is mostly {_mix(facts)} "
            f"({shares} of a 64×64 thumbnail), {_level(facts)} (mean brightness {facts.brightness}%) "
            f"with {_contrast(facts)} contrast ({facts.contrast}%){_follow_up(earlier)}. That is all "
            f"the built-in stand-in can measure; it is not {model}, so it cannot say what the picture "
            f"shows. Ask {model} itself for that.")


def _contrast(facts: Facts) -> str:
    return "low" if facts.contrast < 12 else "high" if facts.contrast > 28 else "moderate"


def _orientation(facts: Facts) -> str:
    return ("square" if facts.width == facts.height
            else "landscape" if facts.width > facts.height else "portrait")


def _mix(facts: Facts) -> str:
    names = [name for name, _ in facts.colours]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _level(facts: Facts) -> str:
    return ("dark" if facts.brightness < 35 else "bright" if facts.brightness > 65
            else "of medium brightness")


class StandInPredictor:
    """Answers for a model whose weights are not here, following its own inputs.

    The question is the input `spec.question` names; a caption comes when asked for one (blip-2's
    `caption`, BLIP's `image_captioning` task, or the word in the question); earlier turns are
    counted from `history` (alternating messages) or blip-2's `context` ("Question: … Answer: …").
    Streaming models answer word by word, the others in one piece, as their real outputs do.
    """

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def predict(self, inputs: dict, image: Image.Image | None, log: LogFn,
                cancel: threading.Event | None = None) -> Iterator[str]:
        question = inputs.get(self.spec.question) or ""
        task = inputs.get("task")
        wants_caption = inputs.get("caption") is True or task == "image_captioning" or (
            self.spec.question == "question" and not question.strip())
        earlier = len(inputs.get("history") or []) // 2
        context = inputs.get("context")
        if isinstance(context, str):
            earlier = context.count("Answer:")
        text = stand_in_answer(self.spec.model, question, None if image is None else measure(image),
                               wants_caption=wants_caption, earlier=earlier)
        if task is not None:  # BLIP prefixes its answers with the task's kind
            text = ("Caption: " if task == "image_captioning" else
                    "Answer: " if task == "visual_question_answering" else
                    "Image-text matching cannot be measured by the stand-in: ") + text
        limit = next((inputs[name] for name in TOKEN_LIMITS if name in inputs), None)
        chunks = words(text)[:limit]
        log(f"stand-in for {self.spec.model}: {len(chunks)} words\n")
        if self.spec.streams:
            yield from chunks
        else:
            yield "".join(chunks)
