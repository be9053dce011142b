"""What every part of the page shares in its event wiring: the session's state and the event settings."""

from __future__ import annotations

from typing import NamedTuple

import gradio as gr

# Paced predictions mostly wait on the network, so many chats can share one worker process.
CONCURRENCY_LIMIT = 64

# Every step of a question is private, never raises, and draws no progress overlay: the
# chat's own status block says what is happening, and Stop is a flag, not a cancellation.
QUIET = dict(api_visibility="private", show_progress="hidden")

# One click on Export: the export's HTML page downloads at once (its JSON is listed beside it).
DOWNLOAD_FIRST = """(files) => {
  const file = Array.isArray(files) ? files[0] : files;
  if (!file || !file.url) return;
  const link = Object.assign(document.createElement("a"), {href: file.url, download: file.orig_name || ""});
  document.body.appendChild(link);
  link.click();
  link.remove();
}"""


class SessionState(NamedTuple):
    """A visitor's state between events, shared by the chat, Compare and the side panel."""

    question: gr.State  # what Send took (chat_handlers.Asked), for the answer step
    records: gr.State  # this session's predictions
    spec: gr.State  # the picked model's inputs
    comparison: gr.State  # the last finished comparison: votes, continue, export
