"""The Gradio Blocks app: the page's parts top to bottom (`chat_tab`, `compare_tab`, `side_panel`),
then each part's event wiring and the API (`api_endpoints`). Handlers live in `chat_handlers` (the
chat), `handlers` (`Studio`: the rest) and `compare` (the Compare tab).

Chat first: the conversation, with the examples in it while it is empty, then the image and the
question right under it. Settings, the visitor's token, the request and the history sit in a
side panel.
"""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from . import api_endpoints, chat_tab, compare_tab, fair_queue, images, side_panel
from ..shared import schema
from .backend import Backend
from .compare import Comparer
from .guard import request_visitor
from .handlers import Studio
from .settings import Settings
from .wiring import CONCURRENCY_LIMIT, QUIET, SessionState

TITLE = "MiniGPT-4 Studio"
EXAMPLES = chat_tab.EXAMPLES  # the empty chat's examples (image file in assets/, question)
PACKAGE = Path(__file__).resolve().parent
# The image + prompt models the embedded server hosts (also on Replicate); any other can be typed.
MODELS = ["daanelson/minigpt-4", "yorickvp/llava-13b", "yorickvp/llava-v1.6-vicuna-13b",
          "andreasjansson/blip-2", "lucataco/moondream2", "salesforce/blip"]
CONTENDERS = ["daanelson/minigpt-4", "yorickvp/llava-13b", "andreasjansson/blip-2", "lucataco/moondream2"]
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


def build(backend: Backend, settings: Settings) -> gr.Blocks:
    """Build the app around a connected backend."""
    studio = Studio(backend, settings)
    comparer = Comparer(studio)
    models, contender_models, contender_params = model_choices(backend)
    private_urls = settings.allow_private_urls
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
            chat = chat_tab.layout(models, allow_private_urls=private_urls)
            compare = compare_tab.layout(models, contender_models, contender_params, allow_private_urls=private_urls)
        panel = side_panel.layout()
        state = SessionState(question=gr.State(None), records=gr.State([]), spec=gr.State(schema.SPEC),
                             comparison=gr.State(None))
        _wire_banner(demo, backend, banner, banner_timer, panel.visitor_token)
        # In the order the page has always wired them, so each event keeps its number and its name.
        chat_tab.wire_asking(chat, panel, state, studio)
        side_panel.wire_settings(panel, state, studio, open_settings)
        chat_tab.wire_changes(chat, state, studio)
        side_panel.wire_history(panel, state, studio)
        compare_tab.wire(compare, chat, panel, state, tabs, studio, comparer)
        api_endpoints.add(chat.image, chat.prompt, studio, backend, models)
    _queue(demo, settings)
    return demo


def _wire_banner(demo: gr.Blocks, backend: Backend, banner: gr.Markdown, banner_timer: gr.Timer,
                 visitor_token: gr.Textbox) -> None:
    """Keep the banner saying what answers now."""
    def refresh_banner(token: str) -> tuple[str, gr.Timer]:
        text, done = backend.current_notice(token)
        return text, gr.Timer(active=not done)

    # What answers now, for this visitor: a pasted token changes it at once.
    for event in (demo.load, banner_timer.tick, visitor_token.change):
        event(refresh_banner, inputs=visitor_token, outputs=[banner, banner_timer], queue=False, **QUIET)


def _queue(demo: gr.Blocks, settings: Settings) -> None:
    """Queue the app's events, with a fair share of the queue per visitor."""
    # api_open=False: queued events only through the queue, never around it by a direct POST.
    demo.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=settings.max_queue or None, api_open=False)
    share = settings.max_queue_per_visitor
    if share is None:
        share = fair_queue.per_visitor(settings.max_queue)
    fair_queue.share_queue(demo._queue, limit=share,
                           visitor_of=functools.partial(request_visitor, hops=settings.proxy_hops))
