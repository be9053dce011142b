"""What each UI event does, as plain functions of component values; `ui.py` wires them.

The chat history is the Chatbot's own value (messages). Each answer is preceded by a status
message whose metadata carries the prediction id; notes and status messages are never folded
into the next prompt.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Iterator, Sequence

import gradio as gr

from . import answer_text, chat, images, schema, snippets
from .backend import Backend
from .conversation import Turn, fold
from .guard import Guard, LimitError, visitor_address
from .replicate_api import ReplicateError
from .settings import Settings

log = logging.getLogger(__name__)

# Past this many seconds in "starting", the model is most likely being loaded onto a GPU.
COLD_BOOT_AFTER = 5.0
ACCOUNT_LIST_LIMIT = 50
HISTORY_HEADERS = ["Time", "Status", "Seconds", "Prompt", "Prediction"]


def _error(message: str, title: str = "Error") -> gr.Error:
    """A message for the user; expected problems are not server errors, so no traceback is logged."""
    return gr.Error(message, title=title, print_exception=False)


def input_message(exc: Exception) -> str:
    """A user-facing sentence for a schema or image problem."""
    if isinstance(exc, schema.InputError):
        return "Please fix: " + "; ".join(
            f"{p.field or 'input'}: {p.description}" for p in exc.problems)
    return str(exc)


def status_line(progress: chat.Progress) -> str:
    """One line of real backend state: status, elapsed seconds, predict time."""
    if progress.status == "succeeded":
        predict = f", predict time {progress.predict_time:.1f} s" if progress.predict_time else ""
        return f"✅ Done in {progress.elapsed:.1f} s{predict}"
    if progress.status == "failed":
        return f"❌ The model failed: {answer_text.markdown(progress.error or 'it gave no reason')}"
    if progress.status in ("canceled", "aborted"):
        return f"⏹ Stopped after {progress.elapsed:.1f} s"
    if progress.status == "starting" and progress.elapsed >= COLD_BOOT_AFTER:
        return (f"⏳ Starting · {progress.elapsed:.0f} s · cold boot: the model is being loaded, "
                "which can take a few minutes")
    return f"⏳ {progress.status.capitalize()} · {progress.elapsed:.0f} s"


def _link(progress: chat.Progress) -> str:
    ident = f"`{progress.prediction_id}`" if progress.prediction_id else ""
    return f"{ident} · [open on Replicate]({progress.web_url})" if progress.web_url else ident


def _text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text")


def _is_note(message: dict) -> bool:
    return bool((message.get("metadata") or {}).get("title"))


def turns(history: Sequence[dict]) -> list[Turn]:
    """The finished question/answer pairs of a chat, oldest first."""
    pairs: list[Turn] = []
    question = None
    for message in history:
        if _is_note(message):
            continue
        if message["role"] == "user":
            question = _text(message)
        elif question is not None:
            pairs.append(Turn(question, _text(message)))
            question = None
    return pairs


def _last_question(history: list[dict]) -> int | None:
    indices = [i for i, m in enumerate(history) if m["role"] == "user"]
    return indices[-1] if indices else None


def history_table(records: list[dict]) -> list[list]:
    """This session's predictions, newest first, as rows under HISTORY_HEADERS."""
    return [[r["time"], r["status"], r["seconds"], r["prompt"], r["id"]] for r in reversed(records)]


class Studio:
    """The event handlers of one app, bound to its backend."""

    def __init__(self, backend: Backend, settings: Settings):
        self.backend = backend
        self.settings = settings
        self.guard = Guard(per_hour=settings.visitor_limit_per_hour)

    def _slot(self, request: gr.Request | None, visitor_token: str | None):
        """The session's one answer slot; host-paid predictions also count against the visitor."""
        session = getattr(request, "session_hash", None) or "anonymous"
        if (visitor_token and visitor_token.strip()) or self.backend.embedded or request is None:
            return self.guard.slot(session, None)
        peer = request.client.host if request.client else "unknown"
        return self.guard.slot(session, visitor_address(peer, request.headers.get("x-forwarded-for", ""),
                                                        hops=self.settings.proxy_hops))

    def load_url(self, url: str) -> str:
        """Fetch and check an image URL, returning a local file for the image component."""
        if not url or not url.strip():
            raise _error("Paste an image URL first.", title="No URL")
        try:
            return str(images.fetch(url, allow_private=self.settings.allow_private_urls))
        except images.ImageError as exc:
            raise _error(str(exc), title="That URL didn't work") from None

    def new_image(self, image: str | None, history: list) -> tuple[list, str]:
        """A different image starts a different conversation."""
        if not history:
            return history, "Ready." if image else "Add an image to start."
        return [], "🆕 New image, new conversation." if image else "Image removed; the chat was cleared."

    def submit(self, image: str | None, prompt: str, history: list, *values: Any) -> tuple:
        """Check the question (before the queue) and put it in the chat."""
        params = dict(zip((f.name for f in schema.PARAMETERS), values))
        try:
            chat.build_input(image, prompt, params)
        except (schema.InputError, images.ImageError) as exc:
            raise _error(input_message(exc), title="Can't send yet") from None
        content = prompt if history else [{"path": image}, prompt]
        return history + [{"role": "user", "content": content}], prompt, "⏳ Queued…", ""

    def retry(self, history: list) -> tuple[list, str, str]:
        """Drop the last answer and ask its question again."""
        last = _last_question(history)
        if last is None:
            raise _error("There is no question to ask again.")
        return history[: last + 1], _text(history[last]), "⏳ Queued…"

    def undo(self, history: list) -> tuple[list, str, str]:
        """Remove the last question and its answer, and put the question back in the prompt box."""
        last = _last_question(history)
        if last is None:
            return history, "", "Nothing to undo."
        return history[:last], _text(history[last]), "↩ Last turn removed."

    def respond(self, image: str, question: str, history: list, records: list, visitor_token: str,
                *values: Any, request: gr.Request = None) -> Iterator[tuple]:
        """Stream one answer; closing this generator (Stop, a closed tab) cancels the prediction.

        Yields (chat, status, records, history table, request JSON, curl, python, prompt box).
        """
        try:
            with self._slot(request, visitor_token):
                yield from self._respond(image, question, history, records, visitor_token, values)
        except LimitError as exc:
            # The question leaves the chat and goes back into the prompt box, to be sent later.
            yield (history[:-1], f"⚠️ {exc}", records, history_table(records), gr.update(), gr.update(),
                   gr.update(), question)

    def _respond(self, image: str, question: str, history: list, records: list, visitor_token: str,
                 values: tuple) -> Iterator[tuple]:
        try:  # the retry path reaches here unchecked
            params = chat.check_params(dict(zip((f.name for f in schema.PARAMETERS), values)))
        except schema.InputError as exc:
            raise _error(input_message(exc), title="Can't send") from None
        earlier = turns(history[:-1])
        folded = fold(earlier, question, max_length=int(params["max_length"]),
                      max_new_tokens=int(params["max_new_tokens"]), max_chars=chat.MAX_PROMPT_CHARS)
        history = list(history)
        if folded.dropped:
            history.append({"role": "assistant", "content": "", "metadata": {
                "title": f"ℹ️ {folded.dropped} earlier turn{'s' * (folded.dropped > 1)} left out "
                         f"to fit max_length ({params['max_length']} tokens with {params['max_new_tokens']} "
                         "for the answer)."}})
        try:
            inputs = chat.build_input(image, folded.prompt, params)
        except (schema.InputError, images.ImageError) as exc:
            raise _error(input_message(exc), title="Can't send") from None
        client = self.backend.client_for(visitor_token)
        request = (snippets.request_json(inputs, client.version),
                   snippets.curl(inputs, base_url=client.base_url, version=client.version),
                   snippets.python(inputs, base_url=client.base_url, model=client.model,
                                   version=client.version))
        status_note = {"role": "assistant", "content": "", "metadata": {"title": "⏳ Sending…", "status": "pending"}}
        answer = {"role": "assistant", "content": ""}
        history += [status_note, answer]
        record = {"time": time.strftime("%H:%M:%S"), "status": "sending", "seconds": 0.0,
                  "prompt": question[:80], "id": "", "own_token": bool(visitor_token and visitor_token.strip())}
        records = records + [record]
        yield history, "⏳ Sending…", records, history_table(records), *request, gr.update()
        progress = None
        try:
            for progress in chat.ask(client, inputs):
                answer["content"] = answer_text.markdown(progress.text)
                status_note["metadata"] = {
                    "title": f"{status_line(progress)} · {_link(progress)}", "id": progress.prediction_id,
                    "status": "done" if progress.finished else "pending"}
                status_note["content"] = answer_text.code_block(progress.logs.strip()) if progress.logs.strip() else ""
                record.update(status=progress.status, seconds=round(progress.elapsed, 1),
                              id=progress.prediction_id or "")
                if progress.status == "failed" and not answer["content"]:
                    answer["content"] = f"_The model failed: {answer_text.markdown(progress.error or 'no reason given')}_"
                yield history, f"{status_line(progress)} · {_link(progress)}", records, history_table(records), *request, ""
        except ReplicateError as exc:
            # Gradio rejects a null id, and there is none when the prediction was never created.
            status_note["metadata"] = {"title": f"❌ {exc}", "status": "done",
                                       **({"id": record["id"]} if record["id"] else {})}
            record["status"] = "error"
            if not answer["content"]:
                history.remove(answer)
            # The question goes back into the prompt box if nothing was answered, so it can be resent.
            keep = question if progress is None else ""
            yield history, f"❌ {exc}", records, history_table(records), *request, keep

    @staticmethod
    def clear() -> tuple[None, str, str, list, str]:
        """Empty image, URL, prompt and chat (the session's history stays)."""
        return None, "", "", [], "Add an image to start."

    def stopped(self, history: list) -> tuple[list, str]:
        """After Stop: the partial answer stays; the pending status says it was stopped."""
        for message in history:
            metadata = message.get("metadata") or {}
            if metadata.get("status") == "pending":
                ident = f" · `{metadata['id']}`" if metadata.get("id") else ""
                message["metadata"] = {**metadata, "status": "done", "title": f"⏹ Stopped by you{ident}"}
        return history, "⏹ Stopped. The partial answer is kept; the prediction was cancelled."

    def like(self, history: list, records: list, event: gr.LikeData) -> list:
        """Remember a like or dislike on the record of the answer's prediction."""
        prediction_id = None
        for message in reversed(history[: event.index + 1] if isinstance(event.index, int) else history):
            prediction_id = (message.get("metadata") or {}).get("id")
            if prediction_id:
                break
        verdict = "like" if event.liked else "dislike"
        for record in records:
            if record["id"] and record["id"] == prediction_id:
                record["feedback"] = verdict
        log.info("feedback %s on prediction %s", verdict, prediction_id)
        return records

    def show_record(self, records: list, visitor_token: str, event: gr.SelectData) -> dict:
        """The full, current prediction behind a row of the history table."""
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        if not isinstance(row, int) or not 0 <= row < len(records):
            raise _error("That row is not in this session's history.", title="No such prediction")
        chosen = list(reversed(records))[row]
        if not chosen["id"]:
            return {"status": chosen["status"], "detail": "This request never reached the API."}
        client = self.backend.client_for(visitor_token if chosen["own_token"] else None)
        try:
            prediction = client.get(chosen["id"])
        except ReplicateError as exc:
            raise _error(str(exc), title="Could not load that prediction") from None
        return {**prediction, "input": snippets.displayed_input(prediction.get("input") or {}),
                **({"feedback": chosen["feedback"]} if "feedback" in chosen else {})}

    def account_predictions(self, visitor_token: str) -> list[list]:
        """The visitor's own account-wide list; never the host's, which would expose other visitors."""
        if not visitor_token or not visitor_token.strip():
            raise _error("Enter your own Replicate token above to list your account's predictions. "
                           "The host's predictions are never shown.", title="Your token is needed")
        try:
            found = list(itertools.islice(self.backend.client_for(visitor_token).list(), ACCOUNT_LIST_LIMIT))
        except ReplicateError as exc:
            raise _error(str(exc), title="Could not list predictions") from None
        return [[p.get("created_at", ""), p.get("status", ""), (p.get("metrics") or {}).get("predict_time"),
                 str((p.get("input") or {}).get("prompt", ""))[:80], p.get("id", "")] for p in found]

    def ask(self, image: str, prompt: str, max_length: int, max_new_tokens: int, num_beams: int,
            repetition_penalty: float, temperature: float, top_p: float,
            request: gr.Request = None) -> Iterator[str]:
        """Answer `prompt` about `image`, streaming the growing answer text (the public API)."""
        params = dict(max_length=max_length, max_new_tokens=max_new_tokens, num_beams=num_beams,
                      repetition_penalty=repetition_penalty, temperature=temperature, top_p=top_p)
        params = {name: value for name, value in params.items() if value is not None}  # None: default
        try:
            inputs = chat.build_input(image, prompt, params)
            with self._slot(request, None):
                for progress in chat.ask(self.backend.client, inputs):
                    if progress.status == "failed":
                        raise _error(f"The model failed: {progress.error or 'it gave no reason'}")
                    yield progress.text
        except (schema.InputError, images.ImageError) as exc:
            raise _error(input_message(exc)) from None
        except (ReplicateError, LimitError) as exc:
            raise _error(str(exc)) from None
