"""The Compare tab: one image and one question to 2–4 contenders side by side, and its events."""

from __future__ import annotations

import functools
from typing import NamedTuple

import gradio as gr

from .chat_tab import ChatTab
from .compare import MAX_CONTENDERS, STOP as STOP_COMPARING, Comparer
from .guarded_inputs import unopened
from .handlers import Studio
from .side_panel import SidePanel
from .wiring import CONCURRENCY_LIMIT, DOWNLOAD_FIRST, QUIET, SessionState


class CompareTab(NamedTuple):
    """The Compare tab's components that events use; the contenders' are lists, in contender order."""

    image: gr.Image
    prompt: gr.Textbox
    count: gr.Radio
    compare: gr.Button
    stop: gr.Button
    export: gr.Button
    files: gr.File
    message: gr.Markdown
    contenders: list  # model and parameters, two per contender
    columns: list
    panes: list  # status and answer, two per contender
    better: list
    carry_on: list


def layout(models: list[str], contender_models: list[str], contender_params: list[str], *,
           allow_private_urls: bool) -> CompareTab:
    """Lay out the Compare tab (inside the page's gr.Tabs)."""
    with gr.Tab(label="Compare", id="compare"):
        with gr.Row(equal_height=False):
            # Taller than the chat's: its longer label would cover the upload icon.
            image = unopened(gr.Image(label="Image to compare on", type="filepath",
                                      image_mode=None, height=230, buttons=[],
                                      sources=["upload", "webcam", "clipboard"],
                                      elem_id="compare-image", scale=1, min_width=200),
                             allow_private_urls=allow_private_urls)
            with gr.Column(scale=3, min_width=260):
                prompt = gr.Textbox(label="Question for every contender", lines=1, max_lines=8,
                                    elem_id="compare-prompt")
                count = gr.Radio(label="Contenders", choices=[2, 3, 4], value=2, elem_id="contenders")
                with gr.Row():
                    compare = gr.Button(value="Compare", variant="primary", elem_id="compare")
                    stop = gr.Button(value=STOP_COMPARING, variant="stop", visible=False, elem_id="compare-stop")
                    export = gr.Button(value="Export comparison", elem_id="export-compare")
                files = gr.File(label="Comparison (HTML and JSON)", visible=False, interactive=False,
                                elem_id="compare-files")
        message = gr.Markdown("", elem_id="compare-message")
        contenders, columns, panes, better, carry_on = _contender_columns(models, contender_models, contender_params)
    return CompareTab(image, prompt, count, compare, stop, export, files, message,
                      contenders, columns, panes, better, carry_on)


def _contender_columns(models: list[str], contender_models: list[str],
                       contender_params: list[str]) -> tuple[list, list, list, list, list]:
    """One column per contender (the first two shown): its model, parameters, answer and buttons."""
    contenders, columns, panes, better, carry_on = [], [], [], [], []
    with gr.Row(equal_height=False):
        for index in range(MAX_CONTENDERS):
            number = index + 1
            with gr.Column(visible=index < 2, min_width=240) as column:
                contenders += [
                    gr.Dropdown(label=f"Contender {number}: model", choices=models,
                                value=contender_models[index], allow_custom_value=True,
                                elem_id=f"contender-model-{number}"),
                    gr.Textbox(label=f"Contender {number}: parameters (JSON)", max_lines=4,
                               value=contender_params[index],
                               placeholder='{"temperature": 0.5}',
                               elem_id=f"contender-params-{number}")]
                panes += [gr.Markdown("", elem_id=f"pane-status-{number}"),
                          gr.Markdown("", elem_id=f"pane-answer-{number}")]
                better.append(gr.Button(value=f"Answer {number} is better", visible=False, size="sm"))
                carry_on.append(gr.Button(value=f"Continue answer {number} in chat", visible=False,
                                          size="sm"))
            columns.append(column)
    return contenders, columns, panes, better, carry_on


def wire(tab: CompareTab, chat: ChatTab, panel: SidePanel, state: SessionState, tabs: gr.Tabs,
         studio: Studio, comparer: Comparer) -> None:
    """Wire Compare's events; Continue in chat fills the chat and switches `tabs` to it."""
    comparison, message, better = state.comparison, tab.message, tab.better
    # Compare: one streaming event runs every contender; Stop is the same session flag as the chat's.
    tab.count.change(comparer.show_contenders, inputs=tab.count, outputs=tab.columns, queue=False, **QUIET)
    start = dict(fn=comparer.start, inputs=[tab.image, tab.prompt, tab.count, *tab.contenders],
                 outputs=[message, tab.compare, tab.stop], queue=False, **QUIET)
    each_pane = [part for index in range(MAX_CONTENDERS)
                 for part in (*tab.panes[2 * index: 2 * index + 2], better[index], tab.carry_on[index])]
    run = dict(fn=comparer.run,
               inputs=[tab.image, tab.prompt, tab.count, panel.visitor_token, state.records, *tab.contenders],
               outputs=[comparison, state.records, panel.history, message, tab.compare, tab.stop, *each_pane],
               concurrency_limit=CONCURRENCY_LIMIT, **QUIET)
    tab.compare.click(**start).success(**run)
    tab.prompt.submit(**start).success(**run)
    tab.stop.click(studio.chat.stop, outputs=tab.stop, queue=False, **QUIET)
    for index in range(MAX_CONTENDERS):
        better[index].click(functools.partial(comparer.mark_better, index), inputs=comparison,
                            outputs=[comparison, *better], queue=False, **QUIET)
        tab.carry_on[index].click(functools.partial(comparer.continue_in_chat, index), inputs=comparison,
                                  outputs=[tabs, chat.chatbot, chat.image, chat.picker, state.spec, message,
                                           *panel.controls],
                                  queue=False, **QUIET)
    tab.export.click(comparer.export, inputs=comparison, outputs=[tab.files, message],
                     **QUIET).then(None, inputs=tab.files, js=DOWNLOAD_FIRST, **QUIET)
