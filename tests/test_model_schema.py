"""The schema reader on real schema shapes, control kinds, and validation against any model."""

import gradio as gr
import pytest

from minigpt4_ui.app import model_controls
from minigpt4_ui.shared import model_schema, schema
from minigpt4_ui.shared.model_schema import Field, UnmappableSchema, control_kind, read_schema

STREAM = {"type": "array", "items": {"type": "string"}, "title": "Output",
          "x-cog-array-type": "iterator", "x-cog-array-display": "concatenate"}
# yorickvp/llava-13b's Input as Cog publishes it (from its predict.py).
LLAVA_INPUT = {
    "type": "object", "title": "Input", "required": ["image", "prompt"],
    "properties": {
        "max_tokens": {"type": "integer", "title": "Max Tokens", "default": 1024, "minimum": 0,
                       "x-order": 4, "description": "Maximum number of tokens to generate."},
        "image": {"type": "string", "title": "Image", "format": "uri", "x-order": 0,
                  "description": "Input image"},
        "prompt": {"type": "string", "title": "Prompt", "x-order": 1,
                   "description": "Prompt to use for text generation"},
        "top_p": {"type": "number", "title": "Top P", "default": 1, "minimum": 0, "maximum": 1,
                  "x-order": 2, "description": "samples from the top p percentage"},
        "temperature": {"type": "number", "title": "Temperature", "default": 0.2, "minimum": 0,
                        "x-order": 3, "description": "Adjusts randomness of outputs"},
    }}
# salesforce/blip's `task`, in older Cog's allOf/$ref form.
BLIP_SCHEMAS = {
    "Input": {"type": "object", "title": "Input", "required": ["image"], "properties": {
        "image": {"type": "string", "title": "Image", "format": "uri", "x-order": 0},
        "task": {"allOf": [{"$ref": "#/components/schemas/task"}], "default": "image_captioning",
                 "description": "Choose a task.", "x-order": 1},
        "question": {"type": "string", "title": "Question", "x-order": 2},
    }},
    "task": {"title": "task", "description": "An enumeration.", "type": "string",
             "enum": ["image_captioning", "visual_question_answering", "image_text_matching"]},
    "Output": {"type": "string", "title": "Output"},
}


def openapi(inputs: dict, output: dict | None = None, **extra) -> dict:
    return {"components": {"schemas": {"Input": inputs, "Output": output or STREAM, **extra}}}


def test_llava_fields_come_in_x_order_with_bounds_and_a_streamed_output():
    spec = read_schema(openapi(LLAVA_INPUT), model="yorickvp/llava-13b", version="v1")
    assert [f.name for f in spec.fields] == ["image", "prompt", "top_p", "temperature", "max_tokens"]
    assert (spec.image, spec.question, spec.history, spec.streams) == ("image", "prompt", None, True)
    top_p, temperature, max_tokens = spec.parameters
    assert (top_p.type, top_p.minimum, top_p.maximum, top_p.default) == (float, 0, 1, 1)
    assert (temperature.minimum, temperature.maximum) == (0, None)  # a missing bound stays missing
    assert (max_tokens.type, max_tokens.label, max_tokens.required) == (int, "Max Tokens", False)
    assert [control_kind(f) for f in spec.parameters] == ["slider", "number", "number"]
    assert spec.defaults() == {"top_p": 1, "temperature": 0.2, "max_tokens": 1024}
    assert spec.ref == "yorickvp/llava-13b:v1"


def test_choices_by_allof_ref_become_a_dropdown_with_the_propertys_description():
    spec = read_schema({"components": {"schemas": BLIP_SCHEMAS}}, model="salesforce/blip", version=None)
    task = spec.field("task")
    assert task.choices == ("image_captioning", "visual_question_answering", "image_text_matching")
    assert (task.type, task.description, task.default, task.label) == (
        str, "Choose a task.", "image_captioning", "Task")
    assert control_kind(task) == "dropdown"
    assert (spec.question, spec.streams) == ("question", False)


def test_inline_enum_booleans_and_a_history_list():
    inputs = {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "uri"},
        "text": {"type": "string"},
        "mode": {"type": "string", "enum": ["fast", "best"], "default": "fast"},
        "caption": {"type": "boolean", "default": False},
        "history": {"type": "array", "items": {"type": "string"}},
    }}
    spec = read_schema(openapi(inputs), model="o/n", version=None)
    assert (spec.question, spec.history) == ("text", "history")
    assert [(f.name, control_kind(f)) for f in spec.parameters] == [("mode", "dropdown"),
                                                                     ("caption", "checkbox")]
    assert spec.field("caption").label == "Caption"  # no title: made from the name


def test_the_uri_input_named_image_is_preferred():
    inputs = {"type": "object", "properties": {
        "mask": {"type": "string", "format": "uri", "x-order": 0},
        "image": {"type": "string", "format": "uri", "x-order": 1},
        "query": {"type": "string", "x-order": 2}}}
    spec = read_schema(openapi(inputs), model="o/n", version=None)
    assert (spec.image, spec.question) == ("image", "query")


@pytest.mark.parametrize("inputs, output, why", [
    ({"type": "object", "properties": {"prompt": {"type": "string"}}}, None,
     "o/n has no image input (no string input with format: uri), so it cannot be asked about an image"),
    ({"type": "object", "properties": {"image": {"type": "string", "format": "uri"},
                                       "seed": {"type": "integer"}}}, None,
     "o/n has no text input named prompt, question, text or query, so there is nowhere to put the question"),
    ({"type": "object", "properties": {"image": {"type": "string", "format": "uri"},
                                       "prompt": {"type": "string"}}},
     {"type": "array", "items": {"type": "string", "format": "uri"}},
     "o/n does not answer with text (its output is files), so it cannot be shown as a chat answer"),
])
def test_unmappable_schemas_say_why(inputs, output, why):
    with pytest.raises(UnmappableSchema) as info:
        read_schema(openapi(inputs, output), model="o/n", version=None)
    assert str(info.value) == why


def test_a_missing_input_schema_says_so():
    with pytest.raises(UnmappableSchema, match="publishes no input schema"):
        read_schema({"components": {"schemas": {}}}, model="o/n", version=None)


def test_validation_names_the_field_and_its_bound_for_any_model():
    spec = read_schema({"components": {"schemas": BLIP_SCHEMAS}}, model="salesforce/blip", version=None)
    with pytest.raises(model_schema.InputError) as info:
        model_schema.validate(spec.fields, {"image": "x", "task": "dance", "seed": 1})
    assert [(p.field, p.type, p.description) for p in info.value.problems] == [
        ("seed", "additional_property_not_allowed", "Additional property seed is not allowed"),
        ("task", "enum", 'task must be one of the following: "image_captioning", '
                         '"visual_question_answering", "image_text_matching"')]
    # An optional input without a default is left to the model; defaults are filled in.
    assert model_schema.validate(spec.fields, {"image": "x"}) == {"image": "x",
                                                                  "task": "image_captioning"}


@pytest.mark.parametrize("field, value, message", [
    (Field("caption", "Caption", bool), 1, "Invalid type. Expected: boolean, given: int"),
    (Field("history", "History", list), ["a", 2], "Invalid type. Expected: array of strings"),
    (Field("top_p", "Top p", float, minimum=0, maximum=1), 1.5, "Must be less than or equal to 1"),
])
def test_type_and_bound_problems(field, value, message):
    with pytest.raises(model_schema.InputError) as info:
        model_schema.validate((field,), {field.name: value})
    assert info.value.problems[0].description == message


def test_minigpt4_is_one_model_spec_and_round_trips_through_its_published_schema():
    published = {"components": {"schemas": {"Input": schema.openapi_input(),
                                            "Output": {"type": "string"}}}}
    spec = read_schema(published, model=schema.MODEL, version=schema.VERSION)
    assert spec.fields == schema.SPEC.fields
    assert (spec.image, spec.question, spec.streams) == ("image", "prompt", False)
    assert [control_kind(f) for f in schema.SPEC.parameters] == [
        "number", "number", "slider", "slider", "slider", "slider"]


@pytest.mark.parametrize("field, cap", [
    (Field("max_tokens", "Max tokens", int, minimum=0), 4096),
    (Field("max_new_tokens", "Max new tokens", int), 4096),
    (Field("min_length", "Min length", int), 4096),
    (Field("max_output_tokens", "Max output tokens", int, maximum=100_000), 4096),
    (Field("max_length", "Max length", int, maximum=512), 512),  # the model's own smaller one
    (Field("length_penalty", "Length penalty", float), None),  # not a count
    (Field("seed", "Seed", int), None),
    (Field("num_beams", "Beams", int, maximum=10), 10),
])
def test_every_models_lengths_are_capped_and_the_controls_say_so(field, cap):
    assert model_schema.app_maximum(field) == cap
    if cap is not None:
        assert model_schema.app_rules(field, cap) is None
        assert model_schema.app_rules(field, cap + 1).description == f"must be at most {cap:,}"
    spec = read_schema(openapi(_input_with(field)), model="o/n", version=None)
    props = model_controls.field_props(spec.field(field.name), field.default)
    if control_kind(field) == "slider":
        assert props["maximum"] == cap
    elif cap is not None:
        assert props["info"].endswith((f" to {cap}.)", f"at most {cap}.)"))


def _input_with(field: Field) -> dict:
    return {"type": "object", "properties": {
        "image": {"type": "string", "format": "uri"}, "prompt": {"type": "string"},
        field.name: {"type": field.json_type, **{k: getattr(field, k) for k in ("minimum", "maximum")
                                                 if getattr(field, k) is not None}}}}


@pytest.mark.parametrize("value, message", [
    (1e300, "must be at most 1,000,000"), (-1e7, "must be at least -1,000,000"), ("a\ud800", None),
])
def test_absurd_numbers_and_text_that_is_not_unicode_are_refused(value, message):
    field = Field("temperature", "Temperature", float) if message else Field("prompt", "Prompt", str)
    problem = model_schema.app_rules(field, value)
    assert problem.description == (message or model_schema.NOT_TEXT)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 10 ** 400])
def test_numbers_that_are_not_finite_are_refused_as_such(value):
    with pytest.raises(model_schema.InputError) as info:
        model_schema.validate((Field("temperature", "Temperature", float),), {"temperature": value})
    assert info.value.problems[0].description == "Must be a finite number"


SLIDER_SLOTS = {f.name: slot for slot, f in enumerate(model_controls.shown(schema.SPEC))}


@pytest.mark.parametrize("name, typed, value, caption, style", [
    ("num_beams", 0, 1, "Beams must be at least 1: 0 became 1.", "problem"),
    ("temperature", -1, 0.01, "Temperature must be at least 0.01: -1 became 0.01.", "problem"),
    ("top_p", 2.5, 1, "Top p must be at most 1: 2.5 became 1.", "problem"),
    ("repetition_penalty", None, 1, "Repetition penalty was empty: back to its default, 1.", "info"),
])
def test_a_slider_says_when_its_typed_value_was_moved(name, typed, value, caption, style):
    """Gradio's number box moves such values silently (a blank to the minimum, 0.01)."""
    update = model_controls.settle_slider(SLIDER_SLOTS[name], schema.SPEC, typed)
    assert (update["value"], update["info"], update["elem_classes"]) == (value, caption, [style])


def test_a_slider_value_in_bounds_gets_its_description_back():
    update = model_controls.settle_slider(SLIDER_SLOTS["num_beams"], schema.SPEC, 4)
    assert update == gr.update(info=schema.SPEC.field("num_beams").description, elem_classes=[])
    assert model_controls.settle_slider(SLIDER_SLOTS["max_length"], schema.SPEC, 0) == gr.skip()  # a number box
    assert model_controls.settle_slider(model_controls.SLOTS - 1, schema.SPEC, 0) == gr.skip()  # an empty slot
