"""The chat's handlers: a question from Send (or Retry, or an example) to its streamed answer, Stop,
Undo, New chat, and the image arriving by upload or URL.

No handler here raises: a problem is said in words, in the message line under the chat or in the
chat itself, so Gradio never paints its "Error" badge over them. The chat history is the
Chatbot's own value (messages, see `chat_messages`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Generator, Iterator, NamedTuple

import gradio as gr

from . import answer_text, chat, chat_messages, export, images, model_controls, snippets, wording
from ..replicate_api import ReplicateError
from ..shared import schema
from ..shared.model_schema import ModelSpec
from .answer_slots import AnswerSlot, AnswerSlots, session_of
from .answer_status import status_details, status_title_by
from .backend import Backend, normalise_token
from .chat_updates import BUSY, NO_MESSAGE, STOPPING, answering, info, problem
from .conversation import model_inputs
from .guard import Guard, LimitError
from .records import Record, history_table
from .settings import Settings

log = logging.getLogger(__name__)


class Asked(NamedTuple):
    """A question Send or Retry took, with the settings it was checked with: what the answer step
    answers, so that the answer needs none of the settings' controls (40) as its inputs."""

    text: str
    params: dict[str, Any]


class Sent(NamedTuple):
    """What Send (or Retry, or an example) updates."""

    chat: Any
    prompt: Any
    question: Asked | None  # None: nothing for the answer step to answer
    message: Any
    send: Any
    stop: Any
    new_chat: Any


class Answer(NamedTuple):
    """What each update of the answer stream changes: the chat, and the session's records (at the
    start and the end only).

    Nothing else: Gradio rebuilds a component for every output of every update, gr.skip() too,
    and with nine outputs that was most of the app's work per streamed word.
    """

    chat: Any
    records: Any


class Answered(NamedTuple):
    """What changes once an answer has ended (ui.py chains it after the stream)."""

    history: Any
    request_json: Any
    request_curl: Any
    request_python: Any
    send: Any
    stop: Any
    new_chat: Any


class ChatHandlers:
    """The chat's event handlers, bound to the app's backend, its guard and its answer slots;
    `visitor` says who pays for a request (see `Studio.visitor`)."""

    def __init__(self, backend: Backend, settings: Settings, guard: Guard, slots: AnswerSlots,
                 visitor: Callable[[gr.Request | None, str | None], str | None]):
        self.backend = backend
        self.settings = settings
        self.guard = guard
        self.slots = slots
        self.visitor = visitor

    def load_url(self, url: str) -> tuple[Any, Any]:
        """Fetch and check an image URL; a refused URL keeps the current image and says why."""
        if not url or not url.strip():
            return gr.skip(), problem("Paste an image URL first.")
        try:
            return str(images.fetch(url, allow_private=self.settings.allow_private_urls)), NO_MESSAGE
        except images.ImageError as exc:
            return gr.skip(), problem(f"That URL didn't work: {exc} The current image is kept.")

    @staticmethod
    def new_image(image: str | None, history: list) -> Any:
        """Say what is wrong with an image as soon as it arrives, else what a different image does
        to the conversation. (Preparing it here is not wasted: Send reuses the prepared image.)"""
        if not image:
            return NO_MESSAGE
        try:
            images.to_input(image)
        except images.ImageError as exc:
            return problem(str(exc))
        if history and chat_messages.is_new_image(history, image):
            return info("New image: your next question starts a new topic; the conversation so far stays.")
        return NO_MESSAGE

    def send(self, request: gr.Request | None, image: str | None, prompt: str, history: list,
             spec: ModelSpec, *values: Any) -> Sent:
        """Check the question and `spec`'s controls (`values`, see `model_controls`), and put the
        question in the chat; the box is cleared here and only here.

        (`request` comes first: Gradio puts it at its parameter's position, which after
        `*values` would make it one of the values.)
        """
        keep = Sent(*(gr.skip() for _ in Sent._fields))._replace(question=None)
        if chat_messages.questions(history) >= chat_messages.MAX_QUESTIONS:
            return keep._replace(message=problem(chat_messages.TOO_LONG))
        # Some models' question has a default, but a chat needs one; every problem is said at once.
        no_question = "" if (prompt or "").strip() else wording.NO_QUESTION
        params = model_controls.params(spec, values)
        try:
            chat.build_model_input(spec, image, {spec.question: prompt, **params})
        except (schema.InputError, images.ImageError) as exc:
            said = wording.input_problem(exc, spec)
            return keep._replace(message=problem(said if no_question in said else f"{no_question}. {said}"))
        if no_question:
            return keep._replace(message=problem(f"{no_question}."))
        if self.slots.take(session_of(request)) is None:
            return keep._replace(message=problem(BUSY))
        history = list(history)
        if chat_messages.is_new_image(history, image):
            if history:
                history.append(chat_messages.note(chat_messages.NEW_IMAGE))
            history.append(chat_messages.question(prompt, image))
        else:
            history.append(chat_messages.question(prompt))
        return Sent(history, "", Asked(prompt, params), NO_MESSAGE, *answering(True))

    def retry(self, request: gr.Request | None, history: list, spec: ModelSpec, *values: Any) -> Sent:
        """Drop the last answer and ask its question again, with the settings as they are now
        (the answer step checks them)."""
        keep = Sent(*(gr.skip() for _ in Sent._fields))._replace(question=None)
        last = chat_messages.last_question(history)
        if last is None:
            return keep._replace(message=problem("There is no question to ask again."))
        if self.slots.take(session_of(request)) is None:
            return keep._replace(message=problem(BUSY))
        asked = Asked(chat_messages.text(history[last]), model_controls.params(spec, values))
        return Sent(history[: last + 1], gr.skip(), asked, NO_MESSAGE, *answering(True))

    def stop(self, request: gr.Request = None) -> Any:
        """Ask the running answer to stop; it cancels its prediction and keeps what it wrote.

        The pressed button (the chat's or Compare's) reads "Stopping…" until the answer ends and
        hides it: a word in the message line would outlive the answer.
        """
        if self.slots.stop(session_of(request)):
            return gr.update(value=STOPPING, interactive=False)
        return gr.skip()

    @staticmethod
    def undo(history: list) -> tuple[list, Any, Any]:
        """Remove the last question, its answer and any note before it; the question returns to the box."""
        last = chat_messages.last_question(history)
        if last is None:
            return history, gr.skip(), info("Nothing to undo.")
        kept = history[:last]
        if kept and chat_messages.is_new_image_note(kept[-1]):
            kept.pop()  # the note belongs to the question it introduced
        return kept, chat_messages.text(history[last]), info("Last question removed.")

    def respond(self, request: gr.Request | None, image: str, asked: Asked | None, history: list, records: list,
                visitor_token: str, spec: ModelSpec) -> Iterator[Answer]:
        """Stream the answer to what Send took; Stop, or closing this generator (a closed tab),
        cancels the prediction."""
        session = session_of(request)
        slot = self.slots.current(session)
        if asked is None or slot is None:  # Send refused this question, and said why
            yield Answer(*(gr.skip() for _ in Answer._fields))
            return
        slot.started = True
        try:
            with self.guard.slot(session, self.visitor(request, visitor_token)):
                last = yield from self._respond(image, asked.text, history, records, visitor_token, spec,
                                                asked.params, slot)
        except LimitError as exc:
            last = Answer(history + [chat_messages.status(str(exc), done=True)], records)
        finally:
            self.slots.free(session, slot)
        yield last

    def answered(self, records: list, request: gr.Request = None) -> Answered:
        """After an answer: History with its row, View request with its request, and Send instead of
        Stop, unless another question of this session holds the slot by now (sent since, or this
        chain's question was refused because one was running): its buttons stand."""
        last = records[-1].request if records and records[-1].request else None
        views = last or (gr.skip(),) * len(snippets.Request._fields)
        free = self.slots.current(session_of(request)) is None
        return Answered(history_table(records), *views, *(answering(False) if free else (gr.skip(),) * 3))

    def _respond(self, image: str, question: str, history: list, records: list, visitor_token: str,
                 spec: ModelSpec, params: dict, slot: AnswerSlot) -> Generator[Answer, None, Answer]:
        """Yield the answer's progress; return its last update (given once the slot is free)."""
        history = list(history)
        records = list(records)
        record = Record(time=time.strftime("%H:%M:%S"), prompt=question[:80],
                        own_token=normalise_token(visitor_token) is not None, question=question,
                        model=spec.model, version=spec.version)
        reply = chat_messages.answer()

        def show(title: str, *, done: bool, details: str = "") -> None:
            history[at] = chat_messages.status(title, done=done, details=details, prediction_id=record.id or None)

        earlier = chat_messages.turns(history)  # the new question has no answer yet, so it is not a turn
        at = len(history)
        history.append(chat_messages.status("Sending…", done=False))
        try:
            params = chat.check_params(params, spec)  # Retry reaches here without Send's check
            turn = model_inputs(spec, earlier, question, params, max_chars=chat.MAX_PROMPT_CHARS)
            if turn.dropped:
                history.insert(at, chat_messages.note(_dropped_note(turn.dropped, params, spec)))
                at += 1
            if slot.stop.is_set():
                show("Stopped by you before the answer started", done=True)
                return Answer(history, records)
            inputs = chat.build_model_input(spec, image, turn.inputs)
            client = self.backend.client_for(visitor_token)
            # MiniGPT-4 runs the version the host configured; other models the version picked.
            model, version = target(spec)
            shown_model, shown_version = model or client.model, version or client.version
            record.request = snippets.request(inputs, model=shown_model, version=shown_version,
                                              image_file=os.path.basename(image))
            record.version = shown_version
            record.inputs = {**inputs, spec.image: export.describe_image(inputs[spec.image])}
            records.append(record)
            history.append(reply)
            yield Answer(history, records)
            for progress in chat.ask(client, inputs, stop=slot.stop, model=model, version=version):
                record.status, record.seconds = progress.status, round(progress.elapsed, 1)
                record.id = progress.prediction_id or ""
                record.answer, record.predict_time = progress.text, progress.predict_time
                reply["content"] = answer_text.markdown(progress.text)
                if progress.status == "failed" and not reply["content"]:
                    reply["content"] = f"_{answer_text.markdown(wording.model_failed(progress.error))}_"
                # Asked afresh: who answers can change while a question waits (a failed download).
                answered_by = self.backend.answered_by(spec.model, visitor_token, version=version)
                show(status_title_by(progress, answered_by), done=progress.finished,
                     details=status_details(progress))
                yield Answer(history, gr.skip())
        except (schema.InputError, images.ImageError, ReplicateError) as exc:
            record.status = "error"
            show(str(exc) if isinstance(exc, ReplicateError) else wording.input_problem(exc, spec), done=True)
        except Exception as exc:  # noqa: BLE001 - the chat must end in words, whatever broke
            log.exception("answer failed")
            record.status = "error"
            show(f"The app could not finish this answer ({type(exc).__name__}: {exc})", done=True)
        if not reply["content"]:
            history = [m for m in history if m is not reply]
        return Answer(history, records)

    @staticmethod
    def clear() -> tuple[None, str, str, list, str]:
        """A new chat: empty image, URL, question box and chat (the session's history stays)."""
        return None, "", "", [], NO_MESSAGE


def target(spec: ModelSpec) -> tuple[str | None, str | None]:
    """The model and version `chat.ask` runs for a spec: None, None for the host's MiniGPT-4."""
    return (None, None) if spec == schema.SPEC else (spec.model, spec.version)


def _dropped_note(dropped: int, params: dict, spec: ModelSpec) -> str:
    turns = "turn" if dropped == 1 else "turns"
    if spec.model != schema.MODEL:
        return f"{dropped} earlier {turns} left out to fit the prompt"
    answer = params["max_new_tokens"]
    return (f"{dropped} earlier {turns} left out to fit Max length ({params['max_length']} tokens, "
            f"{answer} of them for the answer)")
