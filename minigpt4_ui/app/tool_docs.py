"""What the public endpoints say about themselves: their docstrings, which Gradio turns into the
API page's text and into the MCP tools' descriptions an agent reads. Each parameter's meaning and
bounds come from the model's schema and the app's caps, so the words cannot drift from the rules.

Gradio reads a docstring as: the description, then `Args:` with one `name: text` line per
parameter, then `Returns:`.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from . import images
from ..shared import schema
from .chat import MAX_PROMPT_CHARS
from ..shared.model_schema import MAX_LENGTH_INPUT, Field, app_maximum

Fn = TypeVar("Fn", bound=Callable)

IMAGE = ("The image: an http(s) URL of a JPEG, PNG, WebP, GIF or BMP file on a public address (the app "
         f"fetches it within {images.FETCH_TIMEOUT[1]:.0f} s, up to {images.MAX_DOWNLOAD_BYTES // 1_000_000} MB), "
         "or the image itself as a data: URI (data:image/png;base64,...); at most "
         f"{images.MAX_PIXELS // 1_000_000} megapixels.")
PROMPT = f"Your question about the image, in plain words (up to {MAX_PROMPT_CHARS:,} characters)."


def documented(doc: str) -> Callable[[Fn], Fn]:
    """Give a function this docstring."""
    def apply(fn: Fn) -> Fn:
        fn.__doc__ = doc
        return fn
    return apply


def bounds(field: Field) -> str:
    """A field's type, bounds and default in words, with the app's caps ("a whole number from 1
    to 4,096; default 4000")."""
    kind = {int: "a whole number", float: "a number", bool: "true or false", str: "text",
            list: "a list of texts"}[field.type]
    low, high = field.minimum, app_maximum(field)
    if field.choices:
        kind = "one of " + ", ".join(f'"{choice}"' for choice in field.choices)
    elif low is not None and high is not None:
        kind += f" from {low:,g} to {high:,g}"
    elif low is not None:
        kind += f" of at least {low:,g}"
    elif high is not None:
        kind += f" of at most {high:,g}"
    return kind + ("" if field.default is None else f"; default {field.default}")


def parameter(field: Field) -> str:
    """One `Args:` line: the field's name, label, meaning and bounds."""
    meaning = field.description.strip().rstrip(".")
    return f"    {field.name}: {field.label}: {meaning}. {bounds(field).capitalize()}."


ASK = "\n".join([
    "Ask MiniGPT-4 (daanelson/minigpt-4) a question about one image; returns its answer as text. Who "
    "answers depends on the host (MiniGPT-4 on Replicate, or a small model on the host without a "
    "Replicate token): list_models says who. Leave a setting out to use the model's default.",
    "",
    "Args:",
    f"    image: {IMAGE}",
    f"    prompt: {PROMPT}",
    *(parameter(field) for field in schema.PARAMETERS),
    "",
    "Returns:",
    "    The answer text.",
])

ASK_MODEL = "\n".join([
    "Ask any image + prompt model the app can use a question about one image, with that model's own "
    "settings; returns its answer as text. Call list_models first for the models and each one's "
    "settings with their bounds.",
    "",
    "Args:",
    f"    image: {IMAGE}",
    f"    prompt: {PROMPT}",
    "    model: The model as owner/name or owner/name:version (a 64-character version id), e.g. "
    "yorickvp/llava-13b; empty for the host's MiniGPT-4.",
    "    parameters: The model's other inputs as one JSON object, e.g. {\"temperature\": 0.5}; empty "
    "for its defaults. Names, types and bounds are the model's own (list_models gives them); any "
    f"length or token count is capped at {MAX_LENGTH_INPUT:,}.",
    "",
    "Returns:",
    "    The answer text.",
])

LIST_MODELS = "\n".join([
    "List the models this app can ask about an image: for each, who answers it here and its settings "
    "(name, type, default, bounds, meaning), which ask_model takes as its parameters.",
    "",
    "Returns:",
    "    A JSON array of {model, answered_by, settings} objects (or {model, problem} for a model "
    "whose settings cannot be read now).",
])
