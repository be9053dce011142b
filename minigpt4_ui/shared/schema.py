"""The eight inputs of daanelson/minigpt-4, defined once: one ModelSpec among any others.

The UI builds its controls from these, the app validates with them before a call, and the local
server validates with them on `POST /v1/predictions`. Bounds and defaults are the model's own
(`predict.py` of the Replicate model and the seed OpenAPI page). Validation itself is
`model_schema.validate`, the same code path every other model's inputs go through.
"""

from __future__ import annotations

from typing import Any

from .facts import MODEL, VERSION
from .model_schema import Field, InputError, ModelSpec, Problem
from . import model_schema

__all__ = ["BY_NAME", "FIELDS", "MODEL", "PARAMETERS", "SPEC", "VERSION", "Field", "InputError",
           "Problem", "defaults", "openapi_input", "validate"]


FIELDS: tuple[Field, ...] = (
    Field("image", "Image", str, "Image to discuss", format="uri", required=True),
    Field("prompt", "Prompt", str, "Prompt for mini-gpt4 regarding input image", required=True),
    Field("max_length", "Max length", int, "Total length of prompt and output in tokens",
          default=4000, minimum=1),
    Field("max_new_tokens", "Max new tokens", int, "Maximum number of new tokens to generate",
          default=3000, minimum=1),
    Field("num_beams", "Beams", int, "Number of beams for beam search decoding",
          default=3, minimum=1, maximum=10),
    Field("repetition_penalty", "Repetition penalty", float,
          "Penalty for repeated words in generated text; 1 is no penalty, values greater than 1 "
          "discourage repetition, less than 1 encourage it.",
          default=1.0, minimum=0.01, maximum=5),
    Field("temperature", "Temperature", float,
          "Temperature for generating tokens, lower = more predictable results",
          default=1.0, minimum=0.01, maximum=2),
    Field("top_p", "Top p", float, "Sample from the top p percent most likely tokens",
          default=0.9, minimum=0, maximum=1),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
PARAMETERS: tuple[Field, ...] = tuple(f for f in FIELDS if not f.required)
SPEC = ModelSpec(model=MODEL, version=VERSION, fields=FIELDS, image="image", question="prompt")


def defaults() -> dict[str, Any]:
    """The six tuning parameters at their model defaults."""
    return {f.name: f.default for f in PARAMETERS}


def validate(inputs: dict[str, Any]) -> dict[str, Any]:
    """Check an input dict against MiniGPT-4's inputs; return it complete with defaults.

    Raises InputError listing every missing, unknown, mistyped or out-of-range field.
    """
    return model_schema.validate(FIELDS, inputs)


def openapi_input() -> dict:
    """The Input schema as Cog publishes it in a version's `openapi_schema`."""
    return model_schema.openapi_input(FIELDS)
