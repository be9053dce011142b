"""What the app says to a person about a problem: the field by its label, the bound in numbers."""

from __future__ import annotations

from . import images
from ..shared import schema
from ..shared.model_schema import ModelSpec

NO_QUESTION = "Type a question first"


def _bound(value: float) -> str:
    return f"{value:g}"


def problem(item: schema.Problem, spec: ModelSpec = schema.SPEC) -> str:
    """One problem as a sentence naming the control, e.g. "Max length must be at least 1"."""
    field = next((f for f in spec.fields if f.name == item.field), None)
    label = field.label if field else (item.field or "The input").capitalize()
    if item.type == "number_gte" and field is not None and field.minimum is not None:
        return f"{label} must be at least {_bound(field.minimum)}"
    if item.type == "number_lte" and field is not None and field.maximum is not None:
        return f"{label} must be at most {_bound(field.maximum)}"
    if item.type in ("app_maximum", "invalid_text"):
        return f"{label} {item.description}"
    if item.type == "invalid_type" and item.description == "Must be a finite number":
        return f"{label} must be a finite number"
    if item.type == "blank":
        return f"{label} is empty: enter a number"
    if item.type == "invalid_type" and field is not None and field.type is int \
            and item.description.endswith("given: float"):
        return f"{label} must be a whole number"
    if item.type == "invalid_type" and field is not None and field.type is not str:
        return f"{label} must be a number"
    if item.field == spec.image and item.type == "required":
        return "Add an image first (upload, paste, webcam or an image URL)"
    if item.field == spec.question and item.type == "required":
        return NO_QUESTION
    return f"{label}: {item.description}"


def input_problem(exc: Exception, spec: ModelSpec = schema.SPEC) -> str:
    """A schema or image problem as one message, in `spec`'s labels; every problem is listed."""
    if isinstance(exc, schema.InputError):
        return ". ".join(problem(p, spec) for p in exc.problems) + "."
    if isinstance(exc, images.ImageError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def model_failed(error: str | None) -> str:
    return f"The model failed: {error or 'it gave no reason'}"


def number_moved(label: str, typed: float, bound: float, *, below: bool) -> str:
    """A typed value a slider moved to its bound, e.g. "Beams must be at least 1: 0 became 1."."""
    limit = "at least" if below else "at most"
    return f"{label} must be {limit} {_bound(bound)}: {_bound(typed)} became {_bound(bound)}."


def number_restored(label: str, default: float) -> str:
    """A blanked slider put back at its default."""
    return f"{label} was empty: back to its default, {_bound(default)}."
