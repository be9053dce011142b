"""The app's API beside the page: hidden triggers for `/ask`, `/ask_model` and `/list_models`."""

from __future__ import annotations

import gradio as gr

from ..shared import schema
from .ask_model import ModelAsker
from .backend import Backend
from .handlers import Studio
from .wiring import CONCURRENCY_LIMIT

LIST_MODELS_AT_ONCE = 4


def add(image: gr.Image, prompt: gr.Textbox, studio: Studio, backend: Backend, models: list[str]) -> None:
    """Add the API's hidden inputs and triggers; they share the chat's image and question."""
    # The API's own inputs carry no bounds, so out-of-range values reach schema validation
    # and get its messages, which name the parameter and the limit.
    api_params = [gr.Number(value=field.default, visible=False) for field in schema.PARAMETERS]
    answer = gr.Textbox(visible=False)
    api_trigger = gr.Button(visible=False)
    api_trigger.click(studio.ask, inputs=[image, prompt, *api_params], outputs=answer, api_name="ask",
                      concurrency_limit=CONCURRENCY_LIMIT)
    # Any image + prompt model: its name and its other inputs (a JSON object) as text; both
    # may be left out (the host's MiniGPT-4, its defaults).
    asker = ModelAsker(backend.client, slot=studio.api_slot, resolver=studio.resolver, models=models,
                       spec_of=studio.spec_of, answered_by=lambda model: backend.answered_by(model, None))
    api_model, api_parameters = gr.Textbox(value="", visible=False), gr.Textbox(value="", visible=False)
    gr.Button(visible=False).click(asker.ask_model, inputs=[image, prompt, api_model, api_parameters],
                                   outputs=answer, api_name="ask_model",
                                   concurrency_limit=CONCURRENCY_LIMIT)
    # Reading schemas may wait on the API: a few at a time, in the queue.
    gr.Button(visible=False).click(asker.list_models, outputs=gr.Textbox(visible=False),
                                   api_name="list_models", concurrency_id="list-models",
                                   concurrency_limit=LIST_MODELS_AT_ONCE)
