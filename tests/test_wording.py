"""What the app says about a problem: the control by its label, the bound in numbers, every problem."""

from __future__ import annotations

import pytest

from minigpt4_ui.app import images, wording
from minigpt4_ui.shared import schema
from minigpt4_ui.shared.schema import Problem


@pytest.mark.parametrize("problem, expected", [
    (Problem("max_length", "number_gte", "Must be greater than or equal to 1"), "Max length must be at least 1"),
    (Problem("top_p", "number_gte", "Must be greater than or equal to 0"), "Top p must be at least 0"),
    (Problem("repetition_penalty", "number_gte", "x"), "Repetition penalty must be at least 0.01"),
    (Problem("num_beams", "number_lte", "Must be less than or equal to 10"), "Beams must be at most 10"),
    (Problem("temperature", "number_lte", "x"), "Temperature must be at most 2"),
    (Problem("max_new_tokens", "blank", "is empty"), "Max new tokens is empty: enter a number"),
    (Problem("temperature", "invalid_type", "Invalid type. Expected: number, given: str"),
     "Temperature must be a number"),
    (Problem("image", "required", "add an image first"),
     "Add an image first (upload, paste, webcam or an image URL)"),
    (Problem("prompt", "required", "Must not be empty"), "Type a question first"),
    (Problem("prompt", "max_length", "20,000 characters is too long; up to 16,000 are accepted"),
     "Prompt: 20,000 characters is too long; up to 16,000 are accepted"),
    (Problem("prompt", "invalid_type", "Invalid type. Expected: string, given: int"),
     "Prompt: Invalid type. Expected: string, given: int"),
    (Problem("seed", "additional_property_not_allowed", "Additional property seed is not allowed"),
     "Seed: Additional property seed is not allowed"),
    (Problem("", "required", "prompt is required"), "The input: prompt is required"),
])
def test_a_problem_names_the_control_by_its_label(problem, expected):
    assert wording.problem(problem) == expected


def test_no_sentence_uses_a_field_name_where_a_label_exists():
    for field in schema.PARAMETERS:
        for kind in ("number_gte", "number_lte", "blank", "invalid_type"):
            if kind == "number_lte" and field.maximum is None:
                continue
            sentence = wording.problem(Problem(field.name, kind, "raw description"))
            assert sentence.startswith(field.label) and field.name not in sentence.replace(field.label, "")
            assert "raw description" not in sentence


def test_every_problem_is_listed_in_one_message():
    with pytest.raises(schema.InputError) as caught:
        schema.validate({"image": "x", "prompt": " ", "max_length": 0, "num_beams": 11, "top_p": 2})
    message = wording.input_problem(caught.value)
    assert message == ("Type a question first. Max length must be at least 1. Beams must be at most 10. "
                       "Top p must be at most 1.")


def test_an_image_problem_is_said_as_is():
    assert wording.input_problem(images.ImageError("The image file is empty (0 bytes).")) == \
        "The image file is empty (0 bytes)."
    assert wording.input_problem(RuntimeError("odd")) == "RuntimeError: odd"


def test_a_model_failure_says_why_or_that_it_gave_no_reason():
    assert wording.model_failed("CUDA out of memory") == "The model failed: CUDA out of memory"
    assert wording.model_failed(None) == "The model failed: it gave no reason"
