"""The built-in demo predictor: an honest report of what can be measured in the image.

It is not MiniGPT-4 and says so. The answer depends only on the prompt and the pixels, so the same
input always gives the same text; `temperature`, `top_p`, `num_beams`, `repetition_penalty` and
`max_length` are accepted but cannot change a deterministic answer. `max_new_tokens` is honoured,
counting one word as one token.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

from PIL import Image, ImageStat

from ...conversation import ASSISTANT, HUMAN
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
    """The full reply text for a prompt and the measured facts.

    A prompt that carries earlier turns (MiniGPT-4's `###Human:` separators) is answered for its
    last question, and the reply says how many turns came before it.
    """
    earlier = prompt.count(ASSISTANT.strip())
    quote = " ".join(prompt.rsplit(HUMAN.strip(), 1)[-1].split())
    if len(quote) > QUOTE_LIMIT:
        quote = quote[:QUOTE_LIMIT - 1].rstrip() + "…"
    orientation = ("square" if facts.width == facts.height
                   else "landscape" if facts.width > facts.height else "portrait")
    names = [name for name, _ in facts.colours]
    mix = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    shares = ", ".join(f"{name} {share}%" for name, share in facts.colours)
    level = ("dark" if facts.brightness < 35 else "bright" if facts.brightness > 65
             else "of medium brightness")
    contrast = "low" if facts.contrast < 12 else "high" if facts.contrast > 28 else "moderate"
    return (
        f"You asked: “{quote}”{_follow_up(earlier)}. I am the built-in demo predictor, not MiniGPT-4, so I can only "
        f"report what I can measure rather than describe the scene. This is a "
        f"{facts.width}×{facts.height} {orientation} image, mostly {mix} ({shares} of a "
        f"64×64 thumbnail). Overall it is {level} (mean brightness {facts.brightness}%) "
        f"with {contrast} contrast ({facts.contrast}%). For a real description of what the "
        f"picture shows, ask MiniGPT-4 itself on Replicate."
    )


def _follow_up(earlier: int) -> str:
    if not earlier:
        return ""
    return f", following {earlier} earlier turn{'s' * (earlier > 1)} of our conversation"


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
