import pytest

from minigpt4_ui.shared import schema


def _input(**overrides):
    return {"image": "https://example.com/a.png", "prompt": "What is this?", **overrides}


def test_the_eight_inputs_match_the_model():
    assert [f.name for f in schema.FIELDS] == [
        "image", "prompt", "max_length", "max_new_tokens", "num_beams",
        "repetition_penalty", "temperature", "top_p"]
    assert schema.defaults() == {"max_length": 4000, "max_new_tokens": 3000, "num_beams": 3,
                                 "repetition_penalty": 1.0, "temperature": 1.0, "top_p": 0.9}
    bounds = {f.name: (f.minimum, f.maximum) for f in schema.PARAMETERS}
    assert bounds == {"max_length": (1, None), "max_new_tokens": (1, None), "num_beams": (1, 10),
                      "repetition_penalty": (0.01, 5), "temperature": (0.01, 2), "top_p": (0, 1)}


def test_validate_fills_defaults_and_coerces_integral_floats():
    clean = schema.validate(_input(num_beams=2.0, temperature=1))
    assert clean["num_beams"] == 2 and isinstance(clean["num_beams"], int)
    assert clean["temperature"] == 1.0 and isinstance(clean["temperature"], float)
    assert clean["top_p"] == 0.9


def test_validate_reports_every_problem_at_once_with_its_bound():
    with pytest.raises(schema.InputError) as info:
        schema.validate({"prompt": "", "temperature": 3, "top_p": -0.1, "num_beams": 1.5,
                         "max_length": 0, "seed": 1})
    problems = {(p.field, p.type): p.description for p in info.value.problems}
    assert problems == {
        ("seed", "additional_property_not_allowed"): "Additional property seed is not allowed",
        ("", "required"): "image is required",
        ("prompt", "required"): "Must not be empty",
        ("max_length", "number_gte"): "Must be greater than or equal to 1",
        ("num_beams", "invalid_type"): "Invalid type. Expected: integer, given: float",
        ("temperature", "number_lte"): "Must be less than or equal to 2",
        ("top_p", "number_gte"): "Must be greater than or equal to 0",
    }


@pytest.mark.parametrize("value", [True, "1", float("nan"), float("inf"), [1]])
def test_non_numbers_are_rejected(value):
    with pytest.raises(schema.InputError) as info:
        schema.validate(_input(temperature=value))
    assert info.value.problems[0].type == "invalid_type"


def test_problems_have_replicates_invalid_fields_shape():
    with pytest.raises(schema.InputError) as info:
        schema.validate({"image": "x", "prompt": "p", "top_p": 2})
    assert [p.as_json() for p in info.value.problems] == [
        {"type": "number_lte", "field": "input.top_p", "description": "Must be less than or equal to 1"}]


def test_openapi_input_carries_bounds_and_required():
    spec = schema.openapi_input()
    assert spec["required"] == ["image", "prompt"]
    assert spec["properties"]["image"]["format"] == "uri"
    assert spec["properties"]["num_beams"] == {
        "type": "integer", "title": "Beams", "description": schema.BY_NAME["num_beams"].description,
        "x-order": 4, "default": 3, "minimum": 1, "maximum": 10}
