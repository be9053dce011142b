"""What the page hands the handlers (the picked model and its controls, the session, the chat as
the browser sends it back), and a Studio on a loopback predictions server."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import gradio as gr

from minigpt4_ui.app import model_controls
from minigpt4_ui.app.backend import Backend
from minigpt4_ui.app.chat_handlers import Answer
from minigpt4_ui.app.handlers import Studio
from minigpt4_ui.app.settings import DEFAULT_VERSION, Settings
from minigpt4_ui.replicate_api import Client
from minigpt4_ui.shared import schema

from .conftest import SERVER_TOKEN


def controls(**params) -> list:
    """MiniGPT-4 and its settings (defaults, overridden by `params`), as the control pool holds them."""
    return [schema.SPEC, *model_controls.pool_values(schema.SPEC, {**schema.defaults(), **params})]


def visitor(session: str = "tab-1", host: str = "203.0.113.7") -> SimpleNamespace:
    """What Gradio passes as gr.Request: the browser session and the visitor's address."""
    return SimpleNamespace(session_hash=session, client=SimpleNamespace(host=host), headers={})


def through_the_browser(history: list[dict]) -> list[dict]:
    """The chat as the page sends it back to the next handler (Gradio's normalised messages)."""
    chatbot = gr.Chatbot()
    return chatbot.preprocess(chatbot.postprocess(history))


def ask(studio: Studio, image: str, question: str, history=(), *, records=(), token="", request=None,
        **params) -> list[Answer]:
    """Send, then the answer stream, as the page chains them."""
    values = controls(**params)
    sent = studio.chat.send(request, image, question, list(history), *values)
    assert sent.message == "", sent.message
    stream = studio.chat.respond(request, image, sent.question, through_the_browser(sent.chat), list(records),
                            token, schema.SPEC)
    return [copy.deepcopy(answer) for answer in stream]  # as the page saw each one (the handler reuses its lists)


def studio_on(server, **settings) -> Studio:
    client = Client(token=SERVER_TOKEN, base_url=server.url, version=DEFAULT_VERSION, poll_interval=0.05)
    return Studio(Backend(client=client, embedded=False, notice=""), Settings(**settings))
