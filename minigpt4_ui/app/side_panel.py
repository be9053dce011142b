"""The side panel: answer settings, the visitor's token, the request sent and the history."""

from __future__ import annotations

import functools
from typing import NamedTuple

import gradio as gr

from . import model_controls
from ..shared import schema
from .handlers import Studio
from .records import HISTORY_HEADERS
from .wiring import QUIET, SessionState


class SidePanel(NamedTuple):
    """The side panel's components that events use."""

    sidebar: gr.Sidebar
    controls: list  # the picked model's answer settings (model_controls)
    reset: gr.Button
    visitor_token: gr.Textbox
    request_json: gr.Code
    request_curl: gr.Code
    request_python: gr.Code
    history: gr.Dataframe
    history_message: gr.Markdown
    chosen: gr.JSON
    account_button: gr.Button
    account: gr.Dataframe


def layout() -> SidePanel:
    """Lay out the side panel (closed to start with)."""
    with gr.Sidebar(label="Settings and history", open=False, position="right", elem_id="settings") as sidebar:
        gr.Markdown("### Answer settings")
        # Built from the picked model's schema; MiniGPT-4's to start with.
        controls = model_controls.build(schema.SPEC)
        reset = gr.Button(value="Reset answer settings to the model's defaults", size="sm")
        with gr.Accordion(label="Your Replicate token", open=False):
            visitor_token = gr.Textbox(
                label="Replicate API token (optional)", type="password", placeholder="r8_…",
                info="Used for your session only and sent only to Replicate (api.replicate.com): "
                     "never stored or shared.")
        with gr.Accordion(label="View request", open=False):
            request_json = gr.Code(label="Input sent (JSON)", language="json", interactive=False)
            request_curl = gr.Code(label="curl (Replicate, with your own image file)", language="shell",
                                   interactive=False)
            request_python = gr.Code(label="Python (Replicate, with your own image file)",
                                     language="python", interactive=False)
        with gr.Accordion(label="History", open=False):
            history = gr.Dataframe(headers=HISTORY_HEADERS, value=[], interactive=False, elem_id="history",
                                   label="This session's predictions (select one to see it)")
            history_message = gr.Markdown("")
            chosen = gr.JSON(label="Prediction")
            account_button = gr.Button(value="List my account's predictions (needs your token)",
                                       size="sm")
            account = gr.Dataframe(headers=HISTORY_HEADERS, value=[], interactive=False,
                                   label="Your account's latest predictions")
    return SidePanel(sidebar, controls, reset, visitor_token, request_json, request_curl, request_python,
                     history, history_message, chosen, account_button, account)


def wire_settings(panel: SidePanel, state: SessionState, studio: Studio, open_settings: gr.Button) -> None:
    """Wire the header's button that opens the panel, and the answer settings' reset and sliders."""
    controls, spec = panel.controls, state.spec
    open_settings.click(lambda: gr.Sidebar(open=True), outputs=panel.sidebar, queue=False, **QUIET)
    panel.reset.click(studio.reset, inputs=spec, outputs=controls, queue=False, **QUIET)
    for slot in range(model_controls.SLOTS):
        slider = controls[slot * len(model_controls.KINDS) + model_controls.KINDS.index("slider")]
        slider.release(functools.partial(model_controls.settle_slider, slot), inputs=[spec, slider],
                       outputs=slider, queue=False, **QUIET)


def wire_history(panel: SidePanel, state: SessionState, studio: Studio) -> None:
    """Wire the history: a prediction selected, and the account's predictions listed."""
    panel.history.select(studio.show_record, inputs=[state.records, panel.visitor_token],
                         outputs=[panel.chosen, panel.history_message], **QUIET)
    panel.account_button.click(studio.account_predictions, inputs=panel.visitor_token,
                               outputs=[panel.account, panel.history_message], **QUIET)
