"""What the page hands the chat handlers after the question: the picked model and its controls."""

from minigpt4_ui import model_controls, schema


def controls(**params) -> list:
    """MiniGPT-4 and its settings (defaults, overridden by `params`), as the control pool holds them."""
    return [schema.SPEC, *model_controls.pool_values(schema.SPEC, {**schema.defaults(), **params})]
