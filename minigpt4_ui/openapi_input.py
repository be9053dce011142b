"""Validate an input dict against a Cog model's OpenAPI document (`components.schemas.Input`).

Used by the embedded server when it fronts a Cog container, whose `/openapi.json` describes the
inputs. It checks what Replicate's API checks before a prediction exists (required inputs,
unknown inputs, JSON types, choices, numeric bounds) and reports problems exactly as
`schema.validate` does for MiniGPT-4; anything subtler is left to the container, whose own
rejection then becomes the prediction's error. Imports nothing from the app or the server.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from .schema import InputError, Problem

JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
              "array": (list,), "object": (dict,)}


def input_properties(document: Mapping) -> dict[str, dict]:
    """Each input's property schema, with Cog's `allOf: [{$ref}]` choices merged in."""
    schemas = (document.get("components") or {}).get("schemas") or {}
    properties = (schemas.get("Input") or {}).get("properties") or {}
    return {name: _resolve(prop, schemas) for name, prop in properties.items()}


def validate(document: Mapping, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Check `inputs` against the document's Input schema; return them complete with defaults.

    Raises schema.InputError listing every missing, unknown, mistyped, unlisted or out-of-range
    input.
    """
    properties = input_properties(document)
    required = set(((document.get("components") or {}).get("schemas") or {})
                   .get("Input", {}).get("required") or ())
    problems = [Problem(name, "additional_property_not_allowed",
                        f"Additional property {name} is not allowed")
                for name in inputs if name not in properties]
    clean: dict[str, Any] = {}
    for name, prop in properties.items():
        value = inputs.get(name)
        if value is None:
            if name in required:
                problems.append(Problem("", "required", f"{name} is required"))
            elif prop.get("default") is not None:
                clean[name] = prop["default"]
            continue
        problem = _check(name, prop, value, required=name in required)
        if problem is not None:
            problems.append(problem)
            continue
        clean[name] = int(value) if prop.get("type") == "integer" else value
    if problems:
        raise InputError(problems)
    return clean


def _resolve(prop: Mapping, schemas: Mapping) -> dict:
    merged = dict(prop)
    for part in prop.get("allOf") or ():
        ref = part.get("$ref", "") if isinstance(part, Mapping) else ""
        target = schemas.get(ref.rpartition("/")[2]) if ref.startswith("#/components/schemas/") else None
        if isinstance(target, Mapping):
            # The property's own title and description describe the input; the target's only the enum.
            merged = {**{k: v for k, v in target.items() if k not in ("title", "description")},
                      **merged}
    return merged


def _check(name: str, prop: Mapping, value: Any, *, required: bool) -> Problem | None:
    kind = prop.get("type")
    if kind in JSON_TYPES and not _is_type(value, kind):
        return Problem(name, "invalid_type",
                       f"Invalid type. Expected: {kind}, given: {type(value).__name__}")
    if required and isinstance(value, str) and not value.strip():
        return Problem(name, "required", "Must not be empty")
    if prop.get("enum") and value not in prop["enum"]:
        listed = ", ".join(f'"{choice}"' for choice in prop["enum"])
        return Problem(name, "enum", f"{name} must be one of the following: {listed}")
    if prop.get("minimum") is not None and value < prop["minimum"]:
        return Problem(name, "number_gte", f"Must be greater than or equal to {prop['minimum']:g}")
    if prop.get("maximum") is not None and value > prop["maximum"]:
        return Problem(name, "number_lte", f"Must be less than or equal to {prop['maximum']:g}")
    return None


def _is_type(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "boolean":
        return False  # JSON true is never a number
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    if kind == "number" and isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, JSON_TYPES[kind])
