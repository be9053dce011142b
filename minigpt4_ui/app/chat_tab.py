"""The Chat tab: the conversation, with the examples in it while it is empty, then the image and the
question right under it; and its events, from a question to its answer."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import gradio as gr

from . import images
from ..shared import schema
from .guarded_inputs import bounded, unopened
from .chat_updates import NO_MESSAGE, STOP as STOP_ANSWERING
from .handlers import Studio
from .side_panel import SidePanel
from .wiring import CONCURRENCY_LIMIT, DOWNLOAD_FIRST, QUIET, SessionState

ASSETS = Path(__file__).resolve().parent.parent.parent / "assets"
EXAMPLES = [
    ("coffee.jpg", "What drink is this, and how would I make it at home?"),
    ("chelsea.jpg", "Write a funny caption for this photo."),
    ("astronaut.jpg", "Describe this photo in one sentence."),
    ("rocket.jpg", "What is happening in this picture?"),
    ("text.png", "What kind of notes are these?"),
]
MODEL_INFO = "From the list, or any image + prompt model as owner/name[:version]"


class ChatTab(NamedTuple):
    """The Chat tab's components that events use."""

    chatbot: gr.Chatbot
    message: gr.Markdown
    image: gr.Image
    picker: gr.Dropdown
    prompt: gr.Textbox
    send: gr.Button
    stop: gr.Button
    new_chat: gr.Button
    export_chat: gr.Button
    chat_files: gr.File
    url: gr.Textbox
    load_url: gr.Button


def layout(models: list[str], *, allow_private_urls: bool) -> ChatTab:
    """Lay out the Chat tab (inside the page's gr.Tabs)."""
    with gr.Tab(label="Chat", id="chat"):
        chatbot = bounded(gr.Chatbot(
            label="Conversation", show_label=False, elem_id="chat", height="55vh", min_height=300,
            buttons=["copy", "copy_all"],
            placeholder="**Add an image and ask about it**, or start with an example:",
            examples=[{"text": text, "files": [str(ASSETS / name)]} for name, text in EXAMPLES]))
        message = gr.Markdown("", elem_id="message")
        with gr.Row(elem_id="composer", equal_height=False):
            # The picker under the image keeps the question box right under the answer.
            with gr.Column(scale=1, min_width=200):
                image = unopened(gr.Image(label="Image", type="filepath", image_mode=None, height=170,
                                          sources=["upload", "webcam", "clipboard"], elem_id="image",
                                          buttons=[]), allow_private_urls=allow_private_urls)
                picker = gr.Dropdown(label="Model", choices=models, value=schema.MODEL,
                                     allow_custom_value=True, info=MODEL_INFO, elem_id="model")
            with gr.Column(scale=3, min_width=260):
                prompt = gr.Textbox(label="Your question", lines=1, max_lines=8, elem_id="prompt",
                                    placeholder="Ask about the image: Enter sends, Shift+Enter adds a line")
                with gr.Row():
                    send = gr.Button(value="Send", variant="primary", elem_id="send")
                    stop = gr.Button(value=STOP_ANSWERING, variant="stop", visible=False, elem_id="stop")
                    new_chat = gr.Button(value="New chat", elem_id="new-chat")
                    export_chat = gr.Button(value="Export conversation", elem_id="export-chat")
                chat_files = gr.File(label="Conversation (HTML and JSON)", visible=False, interactive=False,
                                     elem_id="chat-files")
                with gr.Accordion(label="Image from a URL", open=False):
                    with gr.Row(equal_height=True):
                        url = gr.Textbox(label="Image URL", placeholder="https://…", max_lines=1, scale=4,
                                         elem_id="image-url")
                        load_url = gr.Button(value="Load image from URL", scale=1, min_width=120,
                                             elem_id="load-url")
    return ChatTab(chatbot, message, image, picker, prompt, send, stop, new_chat, export_chat, chat_files,
                   url, load_url)


def wire_asking(chat: ChatTab, panel: SidePanel, state: SessionState, studio: Studio) -> None:
    """Wire a question from Send, Enter, an example or Retry, then its answer; Stop, the picker, Export."""
    chatbot, image, prompt, message, picker, files = (chat.chatbot, chat.image, chat.prompt, chat.message,
                                                      chat.picker, chat.chat_files)
    buttons, controls, records, spec = [chat.send, chat.stop, chat.new_chat], panel.controls, state.records, state.spec
    sent = dict(outputs=[chatbot, prompt, state.question, message, *buttons], queue=False, **QUIET)
    # The stream updates only the chat (see chat_handlers.Answer); the rest changes once, after it.
    respond = dict(fn=studio.chat.respond, inputs=[image, state.question, chatbot, records, panel.visitor_token, spec],
                   outputs=[chatbot, records], concurrency_limit=CONCURRENCY_LIMIT, **QUIET)
    answered = dict(fn=studio.chat.answered, inputs=records,
                    outputs=[panel.history, panel.request_json, panel.request_curl, panel.request_python, *buttons],
                    queue=False, **QUIET)
    ask = dict(fn=studio.chat.send, inputs=[image, prompt, chatbot, spec, *controls], **sent)
    # "multiple": a question sent while an answer runs reaches `send`, which says so.
    chat.send.click(trigger_mode="multiple", **ask).success(**respond).then(**answered)
    prompt.submit(trigger_mode="multiple", **ask).success(**respond).then(**answered)
    chatbot.example_select(_example, outputs=[image, prompt], **QUIET, queue=False).success(**ask).success(
        **respond).then(**answered)
    chatbot.retry(studio.chat.retry, inputs=[chatbot, spec, *controls], **sent).success(**respond).then(**answered)
    chat.stop.click(studio.chat.stop, outputs=chat.stop, queue=False, **QUIET)
    picker.change(studio.pick_model, inputs=[picker, spec], outputs=[spec, picker, message, *controls], **QUIET)
    chat.export_chat.click(studio.export_conversation, inputs=[chatbot, records], outputs=[files, message],
                           **QUIET).then(None, inputs=files, js=DOWNLOAD_FIRST, **QUIET)


def wire_changes(chat: ChatTab, state: SessionState, studio: Studio) -> None:
    """Wire undo, like, New chat and the chat's trash button; a new image, uploaded or from a URL."""
    chatbot, image, message, url = chat.chatbot, chat.image, chat.message, chat.url
    chatbot.undo(studio.chat.undo, inputs=chatbot, outputs=[chatbot, chat.prompt, message], queue=False, **QUIET)
    chatbot.like(studio.like, inputs=[chatbot, state.records], outputs=state.records, queue=False, **QUIET)
    chat.new_chat.click(studio.chat.clear, outputs=[image, url, chat.prompt, chatbot, message], queue=False, **QUIET)
    chatbot.clear(lambda: NO_MESSAGE, outputs=message, queue=False, **QUIET)  # the chat's own trash button
    # Queued: it decodes the image.
    image.change(studio.chat.new_image, inputs=[image, chatbot], outputs=message, **QUIET)
    for trigger in (chat.load_url.click, url.submit):
        # One shared limit for both triggers: slow URLs wait in the queue, not on worker threads.
        trigger(studio.chat.load_url, inputs=url, outputs=[image, message], concurrency_id="load-url",
                concurrency_limit=images.MAX_CONCURRENT_FETCHES, **QUIET)


def _example(event: gr.SelectData) -> tuple[str, str]:
    """An example from the empty chat: its image and question, then sent as if typed."""
    value = event.value or {}
    files = value.get("files") or []
    first = files[0] if files else None
    return (first.get("path") if isinstance(first, dict) else first), value.get("text", "")
