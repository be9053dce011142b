"""A model's tuning controls, built from its ModelSpec into a fixed pool of Gradio components.

The pool has SLOTS slots, each with one component of every kind (`model_schema.control_kind`);
a spec shows, per parameter in x-order, the slot's component of the parameter's kind and hides
the rest. A fixed pool (rather than gr.render) lets Send read the controls as ordinary inputs, so
the values a person sees are the values that are sent, with no round trip to keep in step.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gradio as gr

from . import wording
from ..shared.model_schema import Field, ModelSpec, app_maximum, control_kind

# More than any hosted model has (MiniGPT-4: 6); a model with more keeps the rest at their defaults.
SLOTS = 8
# One component of each kind per slot, in this order ("lines", a list of strings, is a textbox).
KINDS = ("slider", "number", "checkbox", "dropdown", "textbox")


def shown(spec: ModelSpec) -> tuple[Field, ...]:
    """The parameters that get a control, in x-order."""
    return spec.parameters[:SLOTS]


def left_out(spec: ModelSpec) -> tuple[Field, ...]:
    """The parameters past the pool's size: they keep the model's defaults."""
    return spec.parameters[SLOTS:]


def _kind(field: Field) -> str:
    kind = control_kind(field)
    return "textbox" if kind == "lines" else kind


def _unchecked(control: gr.components.Component) -> gr.components.Component:
    """Pass a value through as typed, so validation names the control and its bound when it is off.

    Gradio's own checks ("Value 0 is less than minimum value 1.") fail the whole event, which
    paints an "Error" badge over the chat. (Patched on the instance: a subclass would make Gradio
    write a .pyi stub beside this file.) An update makes Gradio check with a copy of the component
    instead, without this patch, so number boxes are given no bounds to check: they say them in
    their info, and validation enforces them.
    """
    control.preprocess = lambda payload: payload
    return control


def field_props(field: Field, value: Any) -> dict[str, Any]:
    """The properties of the control that shows `field` holding `value`."""
    props: dict[str, Any] = {"label": field.label, "info": field.description or None, "value": value}
    kind = _kind(field)
    if kind == "number":
        props["info"] = " ".join(part for part in (field.description, _bounds(field)) if part) or None
    integer = field.type is int
    if kind == "slider":
        props.update(value=field.minimum if value is None else value, minimum=field.minimum,
                     maximum=app_maximum(field), step=1 if integer else 0.01, precision=0 if integer else None,
                     elem_classes=[])
    elif kind == "dropdown":
        props["choices"] = list(field.choices)
    elif kind == "textbox" and field.type is list:
        props.update(lines=3, value="\n".join(value or []), placeholder="One item per line")
    elif kind == "textbox":
        props.update(value=value or "", lines=1)
    return props


def _bounds(field: Field) -> str:
    whole = "A whole number" if field.type is int else "A number"
    maximum = app_maximum(field)
    if field.minimum is not None and maximum is not None:
        return f"({whole}, {field.minimum:g} to {maximum:g}.)"
    if field.minimum is not None:
        return f"({whole}, at least {field.minimum:g}.)"
    if maximum is not None:
        return f"({whole}, at most {maximum:g}.)"
    return f"({whole}.)"


def build(spec: ModelSpec) -> list[gr.components.Component]:
    """Create the pool, showing `spec`'s controls at their defaults; call inside the layout."""
    fields = shown(spec)
    components = []
    for slot in range(SLOTS):
        field = fields[slot] if slot < len(fields) else None
        wanted = _kind(field) if field else None
        for kind in KINDS:
            props = field_props(field, field.default) if kind == wanted else {"visible": False}
            components.append(_unchecked(_create(kind, props)))
    return components


def _create(kind: str, props: dict[str, Any]) -> gr.components.Component:
    if kind == "slider":
        props = {"minimum": 0, "maximum": 1, **props}
        return gr.Slider(buttons=[], **props)
    if kind == "number":
        return gr.Number(**props)
    if kind == "checkbox":
        return gr.Checkbox(**props)
    if kind == "dropdown":
        return gr.Dropdown(**{"choices": [], **props})
    return gr.Textbox(**props)


def updates(spec: ModelSpec, values: Mapping[str, Any] | None = None) -> list:
    """gr.update()s that turn the pool into `spec`'s controls, at `values` or else the defaults."""
    values = values or {}
    fields = shown(spec)
    out = []
    for slot in range(SLOTS):
        field = fields[slot] if slot < len(fields) else None
        wanted = _kind(field) if field else None
        for kind in KINDS:
            if kind == wanted:
                out.append(gr.update(visible=True, **field_props(field, values.get(field.name, field.default))))
            else:
                out.append(gr.update(visible=False))
    return out


def settle_slider(slot: int, spec: ModelSpec, typed: Any) -> dict:
    """The update for the slider in `slot` once a person leaves its number box or lets go of it.

    Gradio's box moves a typed value beyond a bound to the bound, and a blank to the minimum,
    without a word; the slider's caption says so instead (naming the field and the bound), and a
    blank goes back to the model's default. Otherwise the caption is the field's description again.
    """
    fields = shown(spec)
    if slot >= len(fields) or _kind(fields[slot]) != "slider":
        return gr.skip()
    field = fields[slot]
    maximum = app_maximum(field)
    if typed is None or typed == "":
        default = field.minimum if field.default is None else field.default
        return gr.update(value=default, info=wording.number_restored(field.label, default), elem_classes=["info"])
    if isinstance(typed, (int, float)) and field.minimum is not None and typed < field.minimum:
        return gr.update(value=field.minimum, elem_classes=["problem"],
                         info=wording.number_moved(field.label, typed, field.minimum, below=True))
    if isinstance(typed, (int, float)) and maximum is not None and typed > maximum:
        return gr.update(value=maximum, elem_classes=["problem"],
                         info=wording.number_moved(field.label, typed, maximum, below=False))
    return gr.update(info=field.description or None, elem_classes=[])


def params(spec: ModelSpec, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters as the pool holds them (`values` in pool order) for `spec`.

    A number left blank stays None, so validation names it; an empty optional text, list or choice
    is left out, so the model's default applies.
    """
    out: dict[str, Any] = {}
    for slot, field in enumerate(shown(spec)):
        value = values[slot * len(KINDS) + KINDS.index(_kind(field))]
        if field.type is list:
            value = [line.strip() for line in (value or "").splitlines() if line.strip()]
        if value in ("", [], None) and field.type is not int and field.type is not float:
            continue
        out[field.name] = value
    return out


def pool_values(spec: ModelSpec, values: Mapping[str, Any]) -> list[Any]:
    """The pool's values (in pool order) that hold `values` for `spec`; the inverse of `params`."""
    out: list[Any] = [None] * (SLOTS * len(KINDS))
    for slot, field in enumerate(shown(spec)):
        value = values.get(field.name, field.default)
        out[slot * len(KINDS) + KINDS.index(_kind(field))] = (
            "\n".join(value or []) if field.type is list else value)
    return out
