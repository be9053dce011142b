"""The Gradio Blocks app: the layout top to bottom, then the event wiring. Handlers live in `studio`."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from . import images, schema
from .backend import Backend
from .settings import Settings
from .studio import HISTORY_HEADERS, Studio

TITLE = "MiniGPT-4 Studio"
DESCRIPTION = ("Ask [MiniGPT-4](https://replicate.com/daanelson/minigpt-4) about an image: upload, paste, "
               "snap or link one, ask a question, and watch the answer stream in. Follow-up questions "
               "keep the conversation going.")
ASSETS = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES = [
    ("coffee.jpg", "What drink is this, and how would I make it at home? Give a short recipe."),
    ("chelsea.jpg", "Write a funny caption for this photo."),
    ("astronaut.jpg", "Describe this photo in detail."),
    ("rocket.jpg", "What is happening in this picture, and why is it impressive?"),
    ("text.png", "Read the handwriting in this image. What kind of notes are these?"),
]

THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate")
CSS = """
#backend-notice { border-left: 4px solid var(--color-accent); padding: 0.25em 0.75em; }
#status { min-height: 1.6em; }
footer { visibility: visible; }
"""

# Paced predictions mostly wait on the network, so many chats can share one worker process.
CONCURRENCY_LIMIT = 64


def _unopened(image: gr.Image) -> gr.Image:
    """Let uploads reach the handlers unopened, so `images` checks them and explains problems.

    gr.Image opens every upload with Pillow first and answers a broken file with a generic error.
    (Patched on the instance: a gr.Image subclass would make Gradio write a .pyi stub beside this file.)
    """
    opened = image.preprocess

    def preprocess(payload):
        if payload is None or (payload.url or "").startswith("data:"):
            return opened(payload)
        return payload.path

    image.preprocess = preprocess
    return image


def _control(field: schema.Field) -> gr.components.Component:
    """A control bound to the field's documented limits."""
    integer = field.type is int
    if field.maximum is not None:
        return gr.Slider(minimum=field.minimum, maximum=field.maximum, value=field.default,
                         step=1 if integer else 0.01, precision=0 if integer else None,
                         label=field.label, info=field.description)
    return gr.Number(value=field.default, minimum=field.minimum, precision=0 if integer else None,
                     label=field.label, info=field.description)


def build(backend: Backend, settings: Settings) -> gr.Blocks:
    """Build the app around a connected backend."""
    studio = Studio(backend, settings)
    with gr.Blocks(title=TITLE, delete_cache=images.GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(f"# {TITLE}\n{DESCRIPTION}")
        gr.Markdown(backend.notice, elem_id="backend-notice")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                image = _unopened(gr.Image(label="Image", type="filepath", image_mode=None, height=300,
                                           sources=["upload", "webcam", "clipboard"], elem_id="image"))
                with gr.Row(equal_height=True):
                    url = gr.Textbox(label="…or an image URL", placeholder="https://…", scale=4,
                                     max_lines=1, elem_id="image-url")
                    load_url = gr.Button(value="Load URL", scale=1, min_width=90, elem_id="load-url")
                prompt = gr.Textbox(label="Prompt", placeholder="What is in this picture?", lines=2,
                                    max_lines=8, elem_id="prompt")
                with gr.Row():
                    send = gr.Button(value="Send", variant="primary", elem_id="send")
                    stop = gr.Button(value="Stop", variant="stop", elem_id="stop")
                    clear = gr.Button(value="Clear", elem_id="clear")
                with gr.Accordion(label="Advanced", open=False):
                    controls = [_control(field) for field in schema.PARAMETERS]
                with gr.Accordion(label="Your Replicate token", open=False):
                    visitor_token = gr.Textbox(
                        label="Replicate API token (optional)", type="password", placeholder="r8_…",
                        info="Used for your session only, on Replicate: never stored or shared.")
            with gr.Column(scale=3, min_width=320):
                chatbot = gr.Chatbot(label="Conversation", height=540, elem_id="chat",
                                     placeholder="Add an image and ask a question about it.",
                                     buttons=["copy", "copy_all"])
                status = gr.Markdown("Add an image to start.", elem_id="status")
                with gr.Accordion(label="View request", open=False):
                    request_json = gr.Code(label="Input sent (JSON)", language="json", interactive=False)
                    request_curl = gr.Code(label="curl", language="shell", interactive=False)
                    request_python = gr.Code(label="Python", language="python", interactive=False)
                with gr.Accordion(label="History", open=False):
                    history = gr.Dataframe(headers=HISTORY_HEADERS, value=[], interactive=False, elem_id="history",
                                           label="This session's predictions (select one to see it)")
                    chosen = gr.JSON(label="Prediction")
                    account_button = gr.Button(value="List my account's predictions (needs your token)",
                                               size="sm")
                    account = gr.Dataframe(headers=HISTORY_HEADERS, value=[], interactive=False,
                                           label="Your account's latest predictions")
        gr.Examples(examples=[[str(ASSETS / name), text] for name, text in EXAMPLES],
                    inputs=[image, prompt], cache_examples=False, label="Examples")
        question = gr.State("")
        records = gr.State([])
        # The API's own inputs carry no bounds, so out-of-range values reach schema validation
        # and get its messages, which name the parameter and the limit.
        api_params = [gr.Number(value=field.default, visible=False) for field in schema.PARAMETERS]
        answer = gr.Textbox(visible=False)
        api_trigger = gr.Button(visible=False)

        private = dict(api_visibility="private")
        respond = dict(fn=studio.respond, inputs=[image, question, chatbot, records, visitor_token, *controls],
                       outputs=[chatbot, status, records, history, request_json, request_curl,
                                request_python, prompt],
                       concurrency_limit=CONCURRENCY_LIMIT, **private)
        # Checks go through the queue: only queued events show a gr.Error as a message in the page.
        check = dict(fn=studio.submit, inputs=[image, prompt, chatbot, *controls],
                     outputs=[chatbot, question, status, prompt], show_progress="hidden", **private)
        runs = [send.click(**check).success(**respond), prompt.submit(**check).success(**respond),
                chatbot.retry(studio.retry, inputs=chatbot, outputs=[chatbot, question, status],
                              **private).success(**respond)]
        stop.click(None, cancels=runs, **private).then(
            studio.stopped, inputs=chatbot, outputs=[chatbot, status], queue=False, **private)
        chatbot.undo(studio.undo, inputs=chatbot, outputs=[chatbot, prompt, status], queue=False, **private)
        chatbot.like(studio.like, inputs=[chatbot, records], outputs=records, queue=False, **private)
        clear.click(studio.clear, outputs=[image, url, prompt, chatbot, status], cancels=runs, queue=False,
                    **private)
        image.change(studio.new_image, inputs=[image, chatbot], outputs=[chatbot, status], queue=False, **private)
        for trigger in (load_url.click, url.submit):
            # One shared limit for both triggers: slow URLs wait in the queue, not on worker threads.
            trigger(studio.load_url, inputs=url, outputs=image, concurrency_id="load-url",
                    concurrency_limit=images.MAX_CONCURRENT_FETCHES, **private)
        history.select(studio.show_record, inputs=[records, visitor_token], outputs=chosen, **private)
        account_button.click(studio.account_predictions, inputs=visitor_token, outputs=account, **private)
        api_trigger.click(studio.ask, inputs=[image, prompt, *api_params], outputs=answer, api_name="ask",
                          concurrency_limit=CONCURRENCY_LIMIT)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=settings.max_queue or None)
    return demo
