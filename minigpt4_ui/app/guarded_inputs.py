"""Patches on the page's image and chat components, so that what they receive reaches the handlers
checked by the app's own rules rather than Gradio's."""

from __future__ import annotations

import functools

import anyio
import gradio as gr

from . import chat_messages, images


def unopened(image: gr.Image, *, allow_private_urls: bool) -> gr.Image:
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
            fetched = await anyio.to_thread.run_sync(fetch, limiter=url_fetches())
        except images.ImageError as exc:
            raise gr.Error(f"That image URL didn't work: {exc}", print_exception=False) from None
        return await cache(str(fetched))

    image.preprocess = preprocess
    image.async_move_resource_to_block_cache = move_to_cache
    return image


@functools.lru_cache(maxsize=1)
def url_fetches() -> anyio.CapacityLimiter:
    """Image URLs given to the API fetched at once (made on the event loop, where it is used)."""
    return anyio.CapacityLimiter(images.MAX_CONCURRENT_FETCHES)


def bounded(chatbot: gr.Chatbot) -> gr.Chatbot:
    """Refuse a chat longer than any the app makes, whichever event sends it: every handler of the
    chat would otherwise work through a forged history of any length, once per streamed word."""
    whole = chatbot.preprocess

    def preprocess(payload):
        if payload is not None and len(payload.root) > chat_messages.MAX_MESSAGES:
            raise gr.Error(chat_messages.TOO_LONG, print_exception=False)
        return whole(payload)

    chatbot.preprocess = preprocess
    return chatbot
