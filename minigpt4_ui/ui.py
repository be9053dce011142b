"""The Gradio Blocks app: the layout top to bottom, then the event wiring. Handlers live in `studio`.

Chat first: the conversation, with the examples in it while it is empty, then the image and the
question right under it. Settings, the visitor's token, the request and the history sit in a
side panel.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from . import images, schema
from .ask_model import ModelAsker
from .backend import Backend
from .settings import Settings
from .studio import HISTORY_HEADERS, Studio

TITLE = "MiniGPT-4 Studio"
ASSETS = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES = [
    ("coffee.jpg", "What drink is this, and how would I make it at home?"),
    ("chelsea.jpg", "Write a funny caption for this photo."),
    ("astronaut.jpg", "Describe this photo in one sentence."),
    ("rocket.jpg", "What is happening in this picture?"),
    ("text.png", "What kind of notes are these?"),
]

# Soft's helper text and label tags fall below WCAG AA (2.5:1 and 3.6:1); these reach 4.5:1 or more.
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate").set(
    block_info_text_color="*neutral_600",
    block_info_text_color_dark="*neutral_300",
    block_label_text_color="*neutral_700",
    block_label_text_color_dark="*neutral_200",
    block_title_text_color="*neutral_800",
    body_text_color_subdued="*neutral_600",
    body_text_color_subdued_dark="*neutral_300",
    button_primary_background_fill="*primary_600",
    button_primary_background_fill_hover="*primary_700",
)
# Two of Gradio's own buttons have no accessible name: the image in a question (it opens a
# preview) and the arrow that opens a status block. Name them as they appear.
HEAD = """<script>
new MutationObserver(() => {
  for (const button of document.querySelectorAll("button:not([data-named])")) {
    if ((button.getAttribute("aria-label") || button.innerText || button.title || "").trim()) continue;
    if (button.querySelector("img")) button.setAttribute("aria-label", "Show the image larger");
    else if (button.querySelector(".dropdown-arrow")) button.setAttribute("aria-label", "Show or hide the details");
    button.dataset.named = "1";
  }
}).observe(document.documentElement, {childList: true, subtree: true});
</script>"""
CSS = """
#header { align-items: center; }
#header h1 { margin: 0; font-size: 1.4rem; }
#backend-notice p { margin: 0; font-size: 0.9rem; }
#message p { margin: 0; color: #8a1c1c; font-weight: 600; }
#chat .examples { display: grid !important; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
                  gap: 8px; }
@media (max-width: 640px) {
  #chat .examples { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  #header h1 { font-size: 1.15rem; }
}
#chat [data-testid="user"] img { max-height: 160px; width: auto; }
#stop { background: #b91c1c; border-color: #b91c1c; color: #fff; }
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


def _unchecked(control: gr.components.Component) -> gr.components.Component:
    """Pass a number through as typed, so `schema` names the control and its bound when it is off.

    Gradio's own check says "Value 0 is less than minimum value 1." and fails the whole event,
    which paints an "Error" badge over the chat. (Patched on the instance, as in `_unopened`.)
    """
    control.preprocess = lambda payload: payload
    return control


def _control(field: schema.Field) -> gr.components.Component:
    """A control bound to the field's documented limits."""
    integer = field.type is int
    if field.maximum is not None:
        return _unchecked(gr.Slider(minimum=field.minimum, maximum=field.maximum, value=field.default,
                                    step=1 if integer else 0.01, precision=0 if integer else None,
                                    label=field.label, info=field.description, buttons=[]))
    return _unchecked(gr.Number(value=field.default, minimum=field.minimum, precision=0 if integer else None,
                                label=field.label, info=field.description))


def build(backend: Backend, settings: Settings) -> gr.Blocks:
    """Build the app around a connected backend."""
    studio = Studio(backend, settings)
    with gr.Blocks(title=TITLE, delete_cache=images.GRADIO_CACHE_CLEANUP) as demo:
        with gr.Row(elem_id="header"):
            gr.Markdown(f"# {TITLE}")
            open_settings = gr.Button(value="Settings and history", size="sm", scale=0, min_width=170,
                                      elem_id="open-settings")
        gr.Markdown(backend.notice, elem_id="backend-notice")
        chatbot = gr.Chatbot(
            label="Conversation", show_label=False, elem_id="chat", height="58vh", min_height=300, buttons=["copy", "copy_all"],
            placeholder="**Add an image and ask about it**, or start with an example:",
            examples=[{"text": text, "files": [str(ASSETS / name)]} for name, text in EXAMPLES])
        message = gr.Markdown("", elem_id="message")
        with gr.Row(elem_id="composer", equal_height=False):
            image = _unopened(gr.Image(label="Image", type="filepath", image_mode=None, height=170,
                                       sources=["upload", "webcam", "clipboard"], elem_id="image", buttons=[],
                                       scale=1, min_width=200))
            with gr.Column(scale=3, min_width=260):
                prompt = gr.Textbox(label="Your question", lines=1, max_lines=8, elem_id="prompt",
                                    placeholder="Ask about the image: Enter sends, Shift+Enter adds a line")
                with gr.Row():
                    send = gr.Button(value="Send", variant="primary", elem_id="send")
                    stop = gr.Button(value="Stop answering", variant="stop", visible=False, elem_id="stop")
                    new_chat = gr.Button(value="New chat", elem_id="new-chat")
                with gr.Accordion(label="Image from a URL", open=False):
                    with gr.Row(equal_height=True):
                        url = gr.Textbox(label="Image URL", placeholder="https://…", max_lines=1, scale=4,
                                         elem_id="image-url")
                        load_url = gr.Button(value="Load image from URL", scale=1, min_width=120,
                                             elem_id="load-url")
        with gr.Sidebar(label="Settings and history", open=False, position="right", elem_id="settings") as sidebar:
            gr.Markdown("### Answer settings")
            controls = [_control(field) for field in schema.PARAMETERS]
            reset = gr.Button(value="Reset answer settings to the model's defaults", size="sm")
            with gr.Accordion(label="Your Replicate token", open=False):
                visitor_token = gr.Textbox(
                    label="Replicate API token (optional)", type="password", placeholder="r8_…",
                    info="Used for your session only, on Replicate: never stored or shared.")
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
        question = gr.State("")
        records = gr.State([])
        # The API's own inputs carry no bounds, so out-of-range values reach schema validation
        # and get its messages, which name the parameter and the limit.
        api_params = [gr.Number(value=field.default, visible=False) for field in schema.PARAMETERS]
        answer = gr.Textbox(visible=False)
        api_trigger = gr.Button(visible=False)

        # Every step of a question is private, never raises, and draws no progress overlay: the
        # chat's own status block says what is happening, and Stop is a flag, not a cancellation.
        quiet = dict(api_visibility="private", show_progress="hidden")
        sent = dict(outputs=[chatbot, prompt, question, message, send, stop, new_chat], queue=False, **quiet)
        respond = dict(fn=studio.respond, inputs=[image, question, chatbot, records, visitor_token, *controls],
                       outputs=[chatbot, records, history, request_json, request_curl, request_python, send, stop,
                                new_chat],
                       concurrency_limit=CONCURRENCY_LIMIT, **quiet)
        ask = dict(fn=studio.send, inputs=[image, prompt, chatbot, *controls], **sent)
        # "multiple": a question sent while an answer runs reaches `send`, which says so.
        send.click(trigger_mode="multiple", **ask).success(**respond)
        prompt.submit(trigger_mode="multiple", **ask).success(**respond)
        chatbot.example_select(_example, outputs=[image, prompt], **quiet, queue=False).success(**ask).success(
            **respond)
        chatbot.retry(studio.retry, inputs=chatbot, **sent).success(**respond)
        stop.click(studio.stop, outputs=message, queue=False, **quiet)
        open_settings.click(lambda: gr.Sidebar(open=True), outputs=sidebar, queue=False, **quiet)
        reset.click(lambda: [field.default for field in schema.PARAMETERS], outputs=controls, queue=False, **quiet)
        chatbot.undo(studio.undo, inputs=chatbot, outputs=[chatbot, prompt, message], queue=False, **quiet)
        chatbot.like(studio.like, inputs=[chatbot, records], outputs=records, queue=False, **quiet)
        new_chat.click(studio.clear, outputs=[image, url, prompt, chatbot, message], queue=False, **quiet)
        image.change(studio.new_image, inputs=[image, chatbot], outputs=message, queue=False, **quiet)
        for trigger in (load_url.click, url.submit):
            # One shared limit for both triggers: slow URLs wait in the queue, not on worker threads.
            trigger(studio.load_url, inputs=url, outputs=[image, message], concurrency_id="load-url",
                    concurrency_limit=images.MAX_CONCURRENT_FETCHES, **quiet)
        history.select(studio.show_record, inputs=[records, visitor_token], outputs=[chosen, history_message],
                       **quiet)
        account_button.click(studio.account_predictions, inputs=visitor_token,
                             outputs=[account, history_message], **quiet)
        api_trigger.click(studio.ask, inputs=[image, prompt, *api_params], outputs=answer, api_name="ask",
                          concurrency_limit=CONCURRENCY_LIMIT)
        # Any image + prompt model: its name and its other inputs (a JSON object) as text.
        asker = ModelAsker(backend.client, slot=studio.api_slot)
        api_model, api_parameters = gr.Textbox(visible=False), gr.Textbox(visible=False)
        gr.Button(visible=False).click(asker.ask_model, inputs=[image, prompt, api_model, api_parameters],
                                       outputs=answer, api_name="ask_model",
                                       concurrency_limit=CONCURRENCY_LIMIT)
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=settings.max_queue or None)
    return demo


def _example(event: gr.SelectData) -> tuple[str, str]:
    """An example from the empty chat: its image and question, then sent as if typed."""
    value = event.value or {}
    files = value.get("files") or []
    first = files[0] if files else None
    return (first.get("path") if isinstance(first, dict) else first), value.get("text", "")
