"""A model's inputs read from its Cog OpenAPI schema, and validation of an input dict against them.

Replicate publishes each version's `openapi_schema`; `components.schemas.Input` describes every
input (type, default, bounds, description, `x-order`, `format: uri` for files, choices inline as
`enum` or, from older Cog, as `allOf: [{"$ref": "#/components/schemas/<name>"}]`), and
`components.schemas.Output` says whether text streams (`x-cog-array-type: iterator` with
`x-cog-array-display: concatenate`). Both the app and the embedded server use this module, so it
imports nothing from either.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# Where the question goes, in order of preference.
QUESTION_NAMES = ("prompt", "question", "text", "query")
JSON_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool,
                               "array": list}
TYPE_NAMES: dict[type, str] = {kind: name for name, kind in JSON_TYPES.items()}
# A public host pays for every token a visitor asks for, and many models publish no upper bound on
# their lengths (MiniGPT-4's max_length, LLaVA's max_tokens: 1,000,000,000 reached the paid API),
# so the app caps every whole-number input named for a length or a token count at a little above
# MiniGPT-4's default max_length (4000); a model's own smaller maximum still applies.
MAX_LENGTH_INPUT = 4096
_LENGTH_NAME = re.compile(r"(?:^|_)(?:length|tokens?)(?:_|$)")
# No model's number input means anything further from zero (1e300 reached the paid API as a
# temperature): beyond it a value is a slip or an attack.
MAX_NUMBER = 1_000_000
# A lone UTF-16 surrogate is a Python string but not Unicode text: it cannot be encoded to send.
_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_TEXT = "contains a character that is not text (an unpaired surrogate, U+D800 to U+DFFF): remove it"


@dataclass(frozen=True)
class Field:
    """One model input: type, default, inclusive bounds, choices and description."""

    name: str
    label: str
    type: type  # str, int, float, bool or list (of strings)
    description: str = ""
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    format: str | None = None  # "uri" for files
    choices: tuple | None = None

    @property
    def json_type(self) -> str:
        return TYPE_NAMES[self.type]


@dataclass(frozen=True)
class ModelSpec:
    """What the app needs to know about one model version's inputs and output."""

    model: str  # owner/name
    version: str | None
    fields: tuple[Field, ...]  # in `x-order`
    image: str  # the name of the image input
    question: str  # the name of the text input the question goes to
    history: str | None = None  # a list-of-strings input for earlier turns, if the model has one
    streams: bool = False  # output is concatenated text chunks, not one string

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def parameters(self) -> tuple[Field, ...]:
        """The inputs a user tunes: all but the image, the question and the history."""
        special = {self.image, self.question, self.history}
        return tuple(f for f in self.fields if f.name not in special)

    def defaults(self) -> dict[str, Any]:
        """The parameters that have defaults, at those defaults."""
        return {f.name: f.default for f in self.parameters if f.default is not None}

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}" if self.version else self.model


class UnmappableSchema(ValueError):
    """The schema lacks what an image + question chat needs; the message says what and why."""


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


def read_schema(openapi_schema: Mapping, *, model: str, version: str | None) -> ModelSpec:
    """The ModelSpec of a version's `openapi_schema`; raises UnmappableSchema saying what is missing."""
    schemas = (openapi_schema.get("components") or {}).get("schemas") or {}
    source = schemas.get("Input")
    if not isinstance(source, Mapping) or not isinstance(source.get("properties"), Mapping):
        raise UnmappableSchema(f"{model} publishes no input schema (components.schemas.Input), "
                               "so its inputs are unknown")
    required = set(source.get("required") or ())
    properties = list(source["properties"].items())
    # x-order first; properties without it keep their place after those that have it.
    entries = sorted(enumerate(properties),
                     key=lambda item: (item[1][1].get("x-order", len(properties)), item[0]))
    fields = []
    for _, (name, prop) in entries:
        field = _field(name, _resolve(prop, schemas), name in required)
        if field is not None:
            fields.append(field)
        elif name in required:
            raise UnmappableSchema(f"{model} requires the input {name!r}, whose type this app "
                                   "cannot provide")
    files = [f for f in fields if f.format == "uri" and f.type is str]
    if not files:
        raise UnmappableSchema(f"{model} has no image input (no string input with format: uri), "
                               "so it cannot be asked about an image")
    texts = [f for name in QUESTION_NAMES for f in fields
             if f.name == name and f.type is str and not f.choices]
    if not texts:
        raise UnmappableSchema(f"{model} has no text input named {', '.join(QUESTION_NAMES[:-1])} "
                               f"or {QUESTION_NAMES[-1]}, so there is nowhere to put the question")
    image = next((f for f in files if f.name == "image"), files[0])
    history = next((f.name for f in fields if f.name == "history" and f.type is list), None)
    return ModelSpec(model=model, version=version, fields=tuple(fields), image=image.name,
                     question=texts[0].name, history=history,
                     streams=_streams(schemas.get("Output"), model))


def _resolve(prop: Mapping, schemas: Mapping) -> dict:
    """The property with an `allOf: [{$ref}]` enum schema merged in (older Cog's choices)."""
    merged = dict(prop)
    for part in prop.get("allOf") or ():
        ref = part.get("$ref", "") if isinstance(part, Mapping) else ""
        target = schemas.get(ref.rpartition("/")[2]) if ref.startswith("#/components/schemas/") else None
        if isinstance(target, Mapping):
            # The property's own title and description describe the input; the target's
            # ("An enumeration.") only the enum.
            merged = {**{k: v for k, v in target.items() if k not in ("title", "description")},
                      **merged}
    return merged


def _field(name: str, prop: Mapping, required: bool) -> Field | None:
    """A Field for a resolved property, or None for a type this app has no control for."""
    kind = JSON_TYPES.get(prop.get("type", ""))
    if kind is None or (kind is list and (prop.get("items") or {}).get("type") != "string"):
        return None
    choices = tuple(prop["enum"]) if prop.get("enum") else None
    return Field(name=name, label=prop.get("title") or name.replace("_", " ").capitalize(),
                 type=kind, description=prop.get("description") or "", default=prop.get("default"),
                 required=required, minimum=prop.get("minimum"), maximum=prop.get("maximum"),
                 format=prop.get("format"), choices=choices)


def _streams(output: Any, model: str) -> bool:
    if not isinstance(output, Mapping):
        return False  # no Output schema: whatever arrives is shown as text
    if output.get("type") == "string" and output.get("format") != "uri":
        return False
    items = output.get("items") or {}
    if output.get("type") == "array" and items.get("type") == "string" and items.get("format") != "uri":
        return (output.get("x-cog-array-type") == "iterator"
                and output.get("x-cog-array-display") == "concatenate")
    raise UnmappableSchema(f"{model} does not answer with text (its output is "
                           f"{_describe_output(output)}), so it cannot be shown as a chat answer")


def _describe_output(output: Mapping) -> str:
    if output.get("format") == "uri" or (output.get("items") or {}).get("format") == "uri":
        return "files"
    return f"of type {output.get('type') or 'unknown'}"


def control_kind(field: Field) -> str:
    """Which control fits a field: dropdown, checkbox, slider, number, textbox or lines.

    Sliders need both bounds; a number without them gets a number box; `lines` is a list of
    strings, one per line.
    """
    if field.choices:
        return "dropdown"
    if field.type is bool:
        return "checkbox"
    if field.type in (int, float):
        return "slider" if field.minimum is not None and field.maximum is not None else "number"
    return "lines" if field.type is list else "textbox"


def validate(fields: tuple[Field, ...], inputs: Mapping[str, Any],
             also: Callable[[Field, Any], Problem | None] | None = None) -> dict[str, Any]:
    """Check an input dict against fields; return it complete with the defaults.

    Raises InputError listing every missing, unknown, mistyped, out-of-range or unlisted value, and
    what `also` (the caller's own rules, e.g. `app_rules`) says of each value the fields allow.
    An optional input without a default is left out when absent (the model decides).
    """
    by_name = {f.name: f for f in fields}
    problems = [Problem(name, "additional_property_not_allowed",
                        f"Additional property {name} is not allowed")
                for name in inputs if name not in by_name]
    clean: dict[str, Any] = {}
    for field in fields:
        value = inputs.get(field.name)
        if value is None:
            if field.required:
                problems.append(Problem("", "required", f"{field.name} is required"))
            elif field.default is not None:
                clean[field.name] = field.default
            continue
        try:
            value = _coerce(field, value)
        except TypeError as exc:
            problems.append(Problem(field.name, "invalid_type", str(exc)))
            continue
        problem = _check(field, value) or (also(field, value) if also else None)
        if problem is not None:
            problems.append(problem)
            continue
        clean[field.name] = value
    if problems:
        raise InputError(problems)
    return clean


def _check(field: Field, value: Any) -> Problem | None:
    if field.required and isinstance(value, str) and not value.strip():
        return Problem(field.name, "required", "Must not be empty")
    if field.choices and value not in field.choices:
        listed = ", ".join(f'"{choice}"' for choice in field.choices)
        return Problem(field.name, "enum", f"{field.name} must be one of the following: {listed}")
    if field.minimum is not None and value < field.minimum:
        return Problem(field.name, "number_gte", f"Must be greater than or equal to {field.minimum:g}")
    if field.maximum is not None and value > field.maximum:
        return Problem(field.name, "number_lte", f"Must be less than or equal to {field.maximum:g}")
    return None


def app_maximum(field: Field) -> float | None:
    """The largest value the app sends for `field`: its own maximum, or MAX_LENGTH_INPUT for a
    length or token count when that is smaller."""
    if field.type is int and _LENGTH_NAME.search(field.name):
        return MAX_LENGTH_INPUT if field.maximum is None else min(field.maximum, MAX_LENGTH_INPUT)
    return field.maximum


def app_rules(field: Field, value: Any) -> Problem | None:
    """What a public app refuses of a value the model allows: a length or token count over
    MAX_LENGTH_INPUT, a number further than MAX_NUMBER from 0, text that is not valid Unicode."""
    cap = app_maximum(field)
    if field.type is int and cap is not None and value > cap:
        return Problem(field.name, "app_maximum", f"must be at most {cap:,}")
    if field.type is float and abs(value) > MAX_NUMBER:
        bound = ("at most " if value > 0 else "at least -") + f"{MAX_NUMBER:,}"
        return Problem(field.name, "app_maximum", f"must be {bound}")
    if not is_text(value):
        return Problem(field.name, "invalid_text", NOT_TEXT)
    return None


def is_text(value: Any) -> bool:
    """Whether every string in `value` (a string, or lists and objects of them) is valid Unicode."""
    if isinstance(value, str):
        return not _SURROGATE.search(value)
    if isinstance(value, list):
        return all(is_text(item) for item in value)
    if isinstance(value, dict):
        return all(is_text(key) and is_text(item) for key, item in value.items())
    return True


def _coerce(field: Field, value: Any) -> Any:
    """Return value as the field's type, or raise TypeError; bools are never numbers."""
    if field.type is str:
        if isinstance(value, str):
            return value
    elif field.type is bool:
        if isinstance(value, bool):
            return value
    elif field.type is list:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        if isinstance(value, list):
            raise TypeError("Invalid type. Expected: array of strings")
    elif isinstance(value, bool):
        pass
    elif field.type is int:
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float: no more a number than infinity
            number = math.inf
        if math.isfinite(number):
            return number
        raise TypeError("Must be a finite number")
    raise TypeError(f"Invalid type. Expected: {field.json_type}, given: {type(value).__name__}")


def openapi_input(fields: tuple[Field, ...]) -> dict:
    """The Input schema as Cog publishes it in a version's `openapi_schema` (choices inline)."""
    properties = {}
    for order, field in enumerate(fields):
        prop: dict[str, Any] = {"type": field.json_type, "title": field.label,
                                "description": field.description, "x-order": order}
        if field.type is list:
            prop["items"] = {"type": "string"}
        for key in ("format", "default", "minimum", "maximum"):
            if getattr(field, key) is not None:
                prop[key] = getattr(field, key)
        if field.choices:
            prop["enum"] = list(field.choices)
        properties[field.name] = prop
    return {"type": "object", "title": "Input", "properties": properties,
            "required": [f.name for f in fields if f.required]}
