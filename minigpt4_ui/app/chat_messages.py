"""The chat pane's messages: what each kind looks like, and reading the conversation back.

Besides questions and answers the chat holds two kinds of titled messages that are never folded
into a prompt: an answer's status (one collapsible block: state, then prediction id, predict
time, link and logs inside) and notes (a new image, turns left out).
"""

from __future__ import annotations

import filecmp
import os
from typing import Sequence

from . import answer_text
from .conversation import Turn

NEW_IMAGE = "New image"
# A chat is sent whole with every event and re-drawn with every streamed word, so its length is
# bounded: this many questions, each with its answer, status and at most one note.
MAX_QUESTIONS = 100
MAX_MESSAGES = 4 * MAX_QUESTIONS
TOO_LONG = (f"This chat has reached its limit of {MAX_QUESTIONS} questions: press New chat to go on "
            "(the image stays; the History panel keeps every answer).")


def questions(history: Sequence[dict]) -> int:
    return sum(1 for message in history if message.get("role") == "user")


def question(text: str, image: str | None = None) -> dict:
    """The visitor's question; `image` is shown with it when the conversation turns to a new image."""
    return {"role": "user", "content": [{"path": image}, text] if image else text}


def answer(text: str = "") -> dict:
    return {"role": "assistant", "content": text}


def status(title: str, *, done: bool, details: str = "", prediction_id: str | None = None) -> dict:
    """An answer's status block; Gradio shows a spinner while it is not done. The title may hold
    an API's error text, so it is made safe to render."""
    metadata = {"title": answer_text.markdown(title), "status": "done" if done else "pending"}
    if prediction_id:  # Gradio rejects a null id
        metadata["id"] = prediction_id
    return {"role": "assistant", "content": details, "metadata": metadata}


def note(text: str) -> dict:
    """A line between turns, e.g. "New image"; it carries no answer."""
    return {"role": "assistant", "content": "", "metadata": {"title": text, "status": "done"}}


def is_new_image_note(message: dict) -> bool:
    return message.get("role") == "assistant" and (message.get("metadata") or {}).get("title") == NEW_IMAGE


def is_titled(message: dict) -> bool:
    """Status blocks and notes: shown in the chat, never part of a prompt."""
    return bool((message.get("metadata") or {}).get("title"))


def text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")


def image_of(message: dict) -> str | None:
    """The file shown in a (normalised) question, if any."""
    content = message.get("content")
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, dict) and part.get("type") == "file":
            return (part.get("file") or {}).get("path")
    return None


def current_image(history: Sequence[dict]) -> str | None:
    """The image the conversation is about now: the newest one shown with a question."""
    for message in reversed(history):
        if message["role"] == "user" and image_of(message):
            return image_of(message)
    return None


def is_new_image(history: Sequence[dict], image: str) -> bool:
    """Whether `image` differs (by content) from the one the conversation is about."""
    current = current_image(history)
    if current is None or not os.path.exists(current) or not os.path.exists(image):
        return True
    return not filecmp.cmp(current, image, shallow=False)


def turns(history: Sequence[dict]) -> list[Turn]:
    """The finished question/answer pairs about the current image, oldest first."""
    pairs: list[Turn] = []
    asked = None
    for message in history:
        if is_titled(message):
            continue
        if message["role"] == "user":
            if image_of(message):
                pairs = []  # a new image starts a new topic: earlier turns were about another picture
            asked = text(message)
        elif asked is not None:
            pairs.append(Turn(asked, text(message)))
            asked = None
    return pairs


def last_question(history: Sequence[dict]) -> int | None:
    indices = [i for i, m in enumerate(history) if m["role"] == "user"]
    return indices[-1] if indices else None
