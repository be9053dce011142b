"""The eight inputs of daanelson/minigpt-4, defined once.

The UI builds its controls from these, the app validates with them before a call, and the local
server validates with them on `POST /v1/predictions`. Bounds and defaults are the model's own
(`predict.py` of the Replicate model and the seed OpenAPI page).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    """One model input: its JSON type, default, inclusive bounds and description."""

    name: str
    label: str
    type: type  # str, int or float
    description: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    format: str | None = None

    @property
    def required(self) -> bool:
        return self.default is None

    @property
    def json_type(self) -> str:
        return {str: "string", int: "integer", float: "number"}[self.type]


FIELDS: tuple[Field, ...] = (
    Field("image", "Image", str, "Image to discuss", format="uri"),
    Field("prompt", "Prompt", str, "Prompt for mini-gpt4 regarding input image"),
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


@dataclass(frozen=True)
class Problem:
    """One invalid field, in the shape of Replicate's `invalid_fields` entries."""

    field: str
    type: str
    description: str

    def as_json(self) -> dict:
        return {"type": self.type, "field": f"input.{self.field}" if self.field else "input",
                "description": self.description}


class InputError(ValueError):
    """Raised by `validate` with every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.field or 'input'}: {p.description}" for p in problems))


def defaults() -> dict[str, Any]:
    """The six tuning parameters at their model defaults."""
    return {f.name: f.default for f in PARAMETERS}


def _coerce(field: Field, value: Any) -> Any:
    """Return value as the field's type, or raise TypeError; bools are never numbers."""
    if field.type is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, bool):
        pass
    elif field.type is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise TypeError(f"Invalid type. Expected: {field.json_type}, given: {type(value).__name__}")


def validate(inputs: dict[str, Any]) -> dict[str, Any]:
    """Check an input dict against the schema; return it complete with defaults.

    Raises InputError listing every missing, unknown, mistyped or out-of-range field.
    """
    problems: list[Problem] = []
    clean: dict[str, Any] = {}
    for name in inputs:
        if name not in BY_NAME:
            problems.append(Problem(name, "additional_property_not_allowed",
                                    f"Additional property {name} is not allowed"))
    for field in FIELDS:
        value = inputs.get(field.name)
        if value is None:
            if field.required:
                problems.append(Problem("", "required", f"{field.name} is required"))
            else:
                clean[field.name] = field.default
            continue
        try:
            value = _coerce(field, value)
        except TypeError as exc:
            problems.append(Problem(field.name, "invalid_type", str(exc)))
            continue
        if field.required and isinstance(value, str) and not value.strip():
            problems.append(Problem(field.name, "required", "Must not be empty"))
            continue
        if field.minimum is not None and value < field.minimum:
            problems.append(Problem(field.name, "number_gte",
                                    f"Must be greater than or equal to {field.minimum:g}"))
            continue
        if field.maximum is not None and value > field.maximum:
            problems.append(Problem(field.name, "number_lte",
                                    f"Must be less than or equal to {field.maximum:g}"))
            continue
        clean[field.name] = value
    if problems:
        raise InputError(problems)
    return clean


def openapi_input() -> dict:
    """The Input schema as Cog publishes it in a version's `openapi_schema`."""
    properties = {}
    for order, field in enumerate(FIELDS):
        prop: dict[str, Any] = {"type": field.json_type, "title": field.label,
                                "description": field.description, "x-order": order}
        if field.format:
            prop["format"] = field.format
        if not field.required:
            prop["default"] = field.default
        if field.minimum is not None:
            prop["minimum"] = field.minimum
        if field.maximum is not None:
            prop["maximum"] = field.maximum
        properties[field.name] = prop
    return {"type": "object", "title": "Input", "properties": properties,
            "required": [f.name for f in FIELDS if f.required]}
