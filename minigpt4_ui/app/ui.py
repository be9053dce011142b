"""The Gradio Blocks app: the layout top to bottom, then the event wiring. Handlers live in
`handlers` (the chat) and `compare` (the Compare tab).

Chat first: the conversation, with the examples in it while it is empty, then the image and the
question right under it. Settings, the visitor's token, the request and the history sit in a
side panel.
"""

from __future__ import annotations

import functools
from pathlib import Path

import anyio
import gradio as gr

from . import chat_messages, fair_queue, images, model_controls
from ..shared import schema
from .ask_model import ModelAsker
from .backend import Backend
from .compare import MAX_CONTENDERS, STOP as STOP_COMPARING, Comparer
from .guard import request_visitor
from .handlers import HISTORY_HEADERS, NO_MESSAGE, STOP as STOP_ANSWERING, Studio
from .settings import Settings

TITLE = "MiniGPT-4 Studio"
PACKAGE = Path(__file__).resolve().parent
ASSETS = PACKAGE.parent.parent / "assets"
EXAMPLES = [
    ("coffee.jpg", "What drink is this, and how would I make it at home?"),
    ("chelsea.jpg", "Write a funny caption for this photo."),
    ("astronaut.jpg", "Describe this photo in one sentence."),
    ("rocket.jpg", "What is happening in this picture?"),
    ("text.png", "What kind of notes are these?"),
]
# The image + prompt models the embedded server hosts (also on Replicate); any other can be typed.
MODELS = ["daanelson/minigpt-4", "yorickvp/llava-13b", "yorickvp/llava-v1.6-vicuna-13b",
          "andreasjansson/blip-2", "lucataco/moondream2", "salesforce/blip"]
CONTENDERS = ["daanelson/minigpt-4", "yorickvp/llava-13b", "andreasjansson/blip-2", "lucataco/moondream2"]
MODEL_INFO = "From the list, or any image + prompt model as owner/name[:version]"
# Offline, one open model side by side with itself: its defaults (three beams) and greedy, streamed.
LOCAL_CONTENDER_PARAMS = ["", '{"num_beams": 1, "temperature": 0.01}', "", ""]


def model_choices(backend: Backend) -> tuple[list[str], list[str], list[str]]:
    """The picker's models, Compare's default contenders and their parameters: what really answers
    here comes first (the local open models, offline)."""
    local = backend.local_models
    if not local:
        return MODELS, CONTENDERS, [""] * len(CONTENDERS)
    others = [model for model in MODELS if model not in local]
    return [*local, *others], [local[0], local[0], *local[1:2], others[1]], LOCAL_CONTENDER_PARAMS

# Soft's helper text, label tags and selected tab fall below WCAG AA (2.5:1, 3.6:1 and 4.47:1); these
# reach 4.5:1 or more.
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="slate").set(
    color_accent="*primary_600",
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
# The page's own script and look, beyond Gradio's components (keyboard, phone, target sizes).
HEAD = f"<script>\n{(PACKAGE / 'page.js').read_text(encoding='utf-8')}</script>"
CSS = (PACKAGE / "page.css").read_text(encoding="utf-8")

# One click on Export: the export's HTML page downloads at once (its JSON is listed beside it).
DOWNLOAD_FIRST = """(files) => {
  const file = Array.isArray(files) ? files[0] : files;
  if (!file || !file.url) return;
  const link = Object.assign(document.createElement("a"), {href: file.url, download: file.orig_name || ""});
  document.body.appendChild(link);
  link.click();
  link.remove();
}"""

# Paced predictions mostly wait on the network, so many chats can share one worker process.
CONCURRENCY_LIMIT = 64
LIST_MODELS_AT_ONCE = 4


def _unopened(image: gr.Image, *, allow_private_urls: bool) -> gr.Image:
    """Let images reach the handlers unopened, so `images` checks them and explains problems; an
    image given by URL is fetched by the app, under its URL policy.

    gr.Image opens every upload with Pillow first and answers a broken file with a generic error;
    a `data:` URI it would decode whole, however many pixels it holds, so that is saved unopened too.
    An API caller (gradio_client's handle_file, an MCP tool call) may give an http(s) URL, which
    Gradio would download itself with rules of its own (no deadline, no size cap, its own words).
    (Patched on the instance: a gr.Image subclass would make Gradio write a .pyi stub beside this file.)
    """
    def preprocess(payload):
        if payload is None:
            return None
        if (payload.url or "").startswith("data:"):
            return images.save_data_uri(payload.url)
        return payload.path

    cache = image.async_move_resource_to_block_cache

    async def move_to_cache(url_or_path):
        if not (isinstance(url_or_path, str) and images.is_url(url_or_path)):
            return await cache(url_or_path)
        fetch = functools.partial(images.fetch, url_or_path, allow_private=allow_private_urls)
        try:
            fetched = await anyio.to_thread.run_sync(fetch, limiter=_url_fetches())
        except images.ImageError as exc:
            raise gr.Error(f"That image URL didn't work: {exc}", print_exception=False) from None
        return await cache(str(fetched))

    image.preprocess = preprocess
    image.async_move_resource_to_block_cache = move_to_cache
    return image


@functools.lru_cache(maxsize=1)
def _url_fetches() -> anyio.CapacityLimiter:
    """Image URLs given to the API fetched at once (made on the event loop, where it is used)."""
    return anyio.CapacityLimiter(images.MAX_CONCURRENT_FETCHES)


def _bounded(chatbot: gr.Chatbot) -> gr.Chatbot:
    """Refuse a chat longer than any the app makes, whichever event sends it: every handler of the
    chat would otherwise work through a forged history of any length, once per streamed word."""
    whole = chatbot.preprocess

    def preprocess(payload):
        if payload is not None and len(payload.root) > chat_messages.MAX_MESSAGES:
            raise gr.Error(chat_messages.TOO_LONG, print_exception=False)
        return whole(payload)

    chatbot.preprocess = preprocess
    return chatbot


def build(backend: Backend, settings: Settings) -> gr.Blocks:
    """Build the app around a connected backend."""
    studio = Studio(backend, settings)
    comparer = Comparer(studio)
    models, contender_models, contender_params = model_choices(backend)
    with gr.Blocks(title=TITLE, delete_cache=images.GRADIO_CACHE_CLEANUP) as demo:
        with gr.Row(elem_id="header"):
            gr.Markdown(f"# {TITLE}")
            open_settings = gr.Button(value="Settings and history", size="sm", scale=0, min_width=170,
                                      elem_id="open-settings")
        notice, settled = backend.current_notice()
        banner = gr.Markdown(notice, elem_id="backend-notice")
        # While the default model downloads, the banner shows its progress every second.
        banner_timer = gr.Timer(1.0, active=not settled)
        with gr.Tabs() as tabs:
            with gr.Tab(label="Chat", id="chat"):
                chatbot = _bounded(gr.Chatbot(
                    label="Conversation", show_label=False, elem_id="chat", height="55vh", min_height=300,
                    buttons=["copy", "copy_all"],
                    placeholder="**Add an image and ask about it**, or start with an example:",
                    examples=[{"text": text, "files": [str(ASSETS / name)]} for name, text in EXAMPLES]))
                message = gr.Markdown("", elem_id="message")
                with gr.Row(elem_id="composer", equal_height=False):
                    # The picker under the image keeps the question box right under the answer.
                    with gr.Column(scale=1, min_width=200):
                        image = _unopened(gr.Image(label="Image", type="filepath", image_mode=None, height=170,
                                                   sources=["upload", "webcam", "clipboard"], elem_id="image",
                                                   buttons=[]), allow_private_urls=settings.allow_private_urls)
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
            with gr.Tab(label="Compare", id="compare"):
                with gr.Row(equal_height=False):
                    # Taller than the chat's: its longer label would cover the upload icon.
                    compare_image = _unopened(gr.Image(label="Image to compare on", type="filepath",
                                                       image_mode=None, height=230, buttons=[],
                                                       sources=["upload", "webcam", "clipboard"],
                                                       elem_id="compare-image", scale=1, min_width=200),
                                             allow_private_urls=settings.allow_private_urls)
                    with gr.Column(scale=3, min_width=260):
                        compare_prompt = gr.Textbox(label="Question for every contender", lines=1, max_lines=8,
                                                    elem_id="compare-prompt")
                        count = gr.Radio(label="Contenders", choices=[2, 3, 4], value=2, elem_id="contenders")
                        with gr.Row():
                            compare = gr.Button(value="Compare", variant="primary", elem_id="compare")
                            compare_stop = gr.Button(value=STOP_COMPARING, variant="stop", visible=False,
                                                     elem_id="compare-stop")
                            export_compare = gr.Button(value="Export comparison", elem_id="export-compare")
                        compare_files = gr.File(label="Comparison (HTML and JSON)", visible=False, interactive=False,
                                                elem_id="compare-files")
                compare_message = gr.Markdown("", elem_id="compare-message")
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
        question = gr.State(None)  # what Send took (handlers.Asked), for the answer step
        records = gr.State([])
        spec = gr.State(schema.SPEC)  # the picked model's inputs
        comparison = gr.State(None)  # the last finished comparison: votes, continue, export
        # The API's own inputs carry no bounds, so out-of-range values reach schema validation
        # and get its messages, which name the parameter and the limit.
        api_params = [gr.Number(value=field.default, visible=False) for field in schema.PARAMETERS]
        answer = gr.Textbox(visible=False)
        api_trigger = gr.Button(visible=False)

        # Every step of a question is private, never raises, and draws no progress overlay: the
        # chat's own status block says what is happening, and Stop is a flag, not a cancellation.
        quiet = dict(api_visibility="private", show_progress="hidden")

        def refresh_banner(token: str) -> tuple[str, gr.Timer]:
            text, done = backend.current_notice(token)
            return text, gr.Timer(active=not done)

        # What answers now, for this visitor: a pasted token changes it at once.
        for event in (demo.load, banner_timer.tick, visitor_token.change):
            event(refresh_banner, inputs=visitor_token, outputs=[banner, banner_timer], queue=False, **quiet)
        sent = dict(outputs=[chatbot, prompt, question, message, send, stop, new_chat], queue=False, **quiet)
        # The stream updates only the chat (see handlers.Answer); the rest changes once, after it.
        respond = dict(fn=studio.respond, inputs=[image, question, chatbot, records, visitor_token, spec],
                       outputs=[chatbot, records], concurrency_limit=CONCURRENCY_LIMIT, **quiet)
        answered = dict(fn=studio.answered, inputs=records,
                        outputs=[history, request_json, request_curl, request_python, send, stop, new_chat],
                        queue=False, **quiet)
        ask = dict(fn=studio.send, inputs=[image, prompt, chatbot, spec, *controls], **sent)
        # "multiple": a question sent while an answer runs reaches `send`, which says so.
        send.click(trigger_mode="multiple", **ask).success(**respond).then(**answered)
        prompt.submit(trigger_mode="multiple", **ask).success(**respond).then(**answered)
        chatbot.example_select(_example, outputs=[image, prompt], **quiet, queue=False).success(**ask).success(
            **respond).then(**answered)
        chatbot.retry(studio.retry, inputs=[chatbot, spec, *controls], **sent).success(**respond).then(**answered)
        stop.click(studio.stop, outputs=stop, queue=False, **quiet)
        picker.change(studio.pick_model, inputs=[picker, spec], outputs=[spec, picker, message, *controls], **quiet)
        export_chat.click(studio.export_conversation, inputs=[chatbot, records], outputs=[chat_files, message],
                          **quiet).then(None, inputs=chat_files, js=DOWNLOAD_FIRST, **quiet)
        open_settings.click(lambda: gr.Sidebar(open=True), outputs=sidebar, queue=False, **quiet)
        reset.click(studio.reset, inputs=spec, outputs=controls, queue=False, **quiet)
        for slot in range(model_controls.SLOTS):
            slider = controls[slot * len(model_controls.KINDS) + model_controls.KINDS.index("slider")]
            slider.release(functools.partial(model_controls.settle_slider, slot), inputs=[spec, slider],
                           outputs=slider, queue=False, **quiet)
        chatbot.undo(studio.undo, inputs=chatbot, outputs=[chatbot, prompt, message], queue=False, **quiet)
        chatbot.like(studio.like, inputs=[chatbot, records], outputs=records, queue=False, **quiet)
        new_chat.click(studio.clear, outputs=[image, url, prompt, chatbot, message], queue=False, **quiet)
        chatbot.clear(lambda: NO_MESSAGE, outputs=message, queue=False, **quiet)  # the chat's own trash button
        # Queued: it decodes the image.
        image.change(studio.new_image, inputs=[image, chatbot], outputs=message, **quiet)
        for trigger in (load_url.click, url.submit):
            # One shared limit for both triggers: slow URLs wait in the queue, not on worker threads.
            trigger(studio.load_url, inputs=url, outputs=[image, message], concurrency_id="load-url",
                    concurrency_limit=images.MAX_CONCURRENT_FETCHES, **quiet)
        history.select(studio.show_record, inputs=[records, visitor_token], outputs=[chosen, history_message],
                       **quiet)
        account_button.click(studio.account_predictions, inputs=visitor_token,
                             outputs=[account, history_message], **quiet)

        # Compare: one streaming event runs every contender; Stop is the same session flag as the chat's.
        count.change(comparer.show_contenders, inputs=count, outputs=columns, queue=False, **quiet)
        start = dict(fn=comparer.start, inputs=[compare_image, compare_prompt, count, *contenders],
                     outputs=[compare_message, compare, compare_stop], queue=False, **quiet)
        run = dict(fn=comparer.run, inputs=[compare_image, compare_prompt, count, visitor_token, records, *contenders],
                   outputs=[comparison, records, history, compare_message, compare, compare_stop,
                            *(part for index in range(MAX_CONTENDERS)
                              for part in (*panes[2 * index: 2 * index + 2], better[index], carry_on[index]))],
                   concurrency_limit=CONCURRENCY_LIMIT, **quiet)
        compare.click(**start).success(**run)
        compare_prompt.submit(**start).success(**run)
        compare_stop.click(studio.stop, outputs=compare_stop, queue=False, **quiet)
        for index in range(MAX_CONTENDERS):
            better[index].click(functools.partial(comparer.mark_better, index), inputs=comparison,
                                outputs=[comparison, *better], queue=False, **quiet)
            carry_on[index].click(functools.partial(comparer.continue_in_chat, index), inputs=comparison,
                                  outputs=[tabs, chatbot, image, picker, spec, compare_message, *controls],
                                  queue=False, **quiet)
        export_compare.click(comparer.export, inputs=comparison, outputs=[compare_files, compare_message],
                             **quiet).then(None, inputs=compare_files, js=DOWNLOAD_FIRST, **quiet)

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
    # api_open=False: queued events only through the queue, never around it by a direct POST.
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=settings.max_queue or None, api_open=False)
    share = settings.max_queue_per_visitor
    if share is None:
        share = fair_queue.per_visitor(settings.max_queue)
    fair_queue.share_queue(demo._queue, limit=share,
                           visitor_of=functools.partial(request_visitor, hops=settings.proxy_hops))
    return demo


def _example(event: gr.SelectData) -> tuple[str, str]:
    """An example from the empty chat: its image and question, then sent as if typed."""
    value = event.value or {}
    files = value.get("files") or []
    first = files[0] if files else None
    return (first.get("path") if isinstance(first, dict) else first), value.get("text", "")
