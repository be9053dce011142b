"""What the handlers put in the message line under the chat and on the chat's buttons."""

from __future__ import annotations

import gradio as gr

BUSY = ("An answer is still being written: wait for it, or press Stop. "
        "Your new question is still in the box.")
STOP = "Stop answering"
STOPPING = "Stopping…"

NO_MESSAGE = ""  # clears the message line under the chat


def problem(text: str) -> dict:
    """The message line under the chat saying what is wrong, in the style for problems."""
    return gr.update(value=text, elem_classes=["problem"])


def info(text: str) -> dict:
    """The message line under the chat saying what happened, in the quiet style for information."""
    return gr.update(value=text, elem_classes=["info"])


def stop_button(active: bool, label: str = STOP) -> dict:
    """Stop, shown while an answer runs; it reads `label` again after any "Stopping…"."""
    return gr.update(visible=active, value=label, interactive=True)


def answering(active: bool) -> tuple[dict, dict, dict]:
    """Send, Stop and New chat: Stop takes Send's place while an answer is being written, and
    New chat stays where it is, unavailable, so no button moves."""
    return gr.update(visible=not active), stop_button(active), gr.update(interactive=not active)
