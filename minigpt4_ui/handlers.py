"""What each UI event does, as plain functions of component values; `ui.py` wires them.

The chat history is the Chatbot's own value (messages, see `chat_messages`). No handler of the
chat, the question box or the image raises: a problem is said in words, in the message line under
the chat or in the chat itself, so Gradio never paints its "Error" badge over them.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Generator, Iterator, NamedTuple, Sequence

import gradio as gr

from . import (answer_text, chat, chat_messages, export, images, mcp_calls, model_controls, schema, snippets,
               tool_docs, wording)
from .answer_slots import AnswerSlot, AnswerSlots
from .backend import Backend, normalise_token
from .conversation import model_inputs
from .guard import Guard, LimitError, request_visitor
from .model_refs import ModelRefError, Resolver, UnknownModel
from .model_schema import ModelSpec, UnmappableSchema
from .replicate_api import ReplicateError, shown_prediction
from .settings import Settings

log = logging.getLogger(__name__)

# Past this many seconds in "starting", the model is most likely being loaded onto a GPU.
COLD_BOOT_AFTER = 5.0
ACCOUNT_LIST_LIMIT = 50
HISTORY_HEADERS = ["Time", "Status", "Seconds", "Prompt", "Prediction"]
BUSY = ("An answer is still being written: wait for it, or press Stop. "
        "Your new question is still in the box.")
STOP = "Stop answering"
STOPPING = "Stopping…"


@dataclass
class Record:
    """One prediction of this session, as the History table lists it."""

    time: str
    prompt: str
    own_token: bool
    status: str = "sending"
    seconds: float = 0.0
    id: str = ""
    feedback: str | None = None
    # What reproduces the answer, for the export: the model, its inputs (image described) and output.
    question: str = ""
    model: str = ""
    version: str | None = None
    inputs: dict = field(default_factory=dict)
    answer: str = ""
    predict_time: float | None = None
    request: snippets.Request | None = None  # what View request shows for it


    def row(self) -> list:
        return [self.time, self.status, self.seconds, self.prompt, self.id]


def history_table(records: Sequence[Record]) -> list[list]:
    """This session's predictions, newest first, as rows under HISTORY_HEADERS."""
    return [record.row() for record in reversed(records)]


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


def _answering(active: bool) -> tuple[dict, dict, dict]:
    """Send, Stop and New chat: Stop takes Send's place while an answer is being written, and
    New chat stays where it is, unavailable, so no button moves."""
    return gr.update(visible=not active), stop_button(active), gr.update(interactive=not active)


def status_title(progress: chat.Progress) -> str:
    """The state of an answer in words (no emoji carries meaning): status, elapsed seconds."""
    if progress.status == "succeeded":
        return f"Done in {progress.elapsed:.1f} s"
    if progress.status == "failed":
        return answer_text.markdown(wording.model_failed(progress.error))
    if progress.status in ("canceled", "aborted"):
        return f"Stopped by you after {progress.elapsed:.1f} s"
    if progress.status == "starting" and progress.elapsed >= COLD_BOOT_AFTER:
        return (f"Starting · {progress.elapsed:.0f} s · cold boot: the model is being loaded, "
                "which can take a few minutes")
    return f"{progress.status.capitalize()} · {progress.elapsed:.0f} s"


def status_title_by(progress: chat.Progress, answered_by: str) -> str:
    """The status title, naming who writes the answer once it is being written or has ended."""
    title = status_title(progress)
    if answered_by and progress.status in ("processing", "succeeded", "canceled"):
        title += f" · {answered_by}"
    return title


def status_details(progress: chat.Progress) -> str:
    """What opens under the status: prediction id, predict time, link and logs, once."""
    facts = []
    if progress.prediction_id:
        facts.append(f"Prediction `{progress.prediction_id}`")
    if progress.predict_time is not None:
        facts.append(f"predict time {progress.predict_time:.1f} s")
    if progress.web_url:
        facts.append(f"[open on Replicate]({progress.web_url})")
    details = " · ".join(facts)
    if progress.logs.strip():
        details += f"\n\nLogs:\n{answer_text.code_block(progress.logs.strip())}"
    return details


class Studio:
    """The event handlers of one app, bound to its backend."""

    def __init__(self, backend: Backend, settings: Settings):
        self.backend = backend
        self.settings = settings
        self.guard = Guard(per_hour=settings.visitor_limit_per_hour)
        self.slots = AnswerSlots()
        self.resolver = Resolver()

    def visitor(self, request: gr.Request | None, visitor_token: str | None) -> str | None:
        """Who pays: None when not the host's token (own token, embedded backend), else the visitor."""
        if request is None or normalise_token(visitor_token) or self.backend.embedded:
            return None
        return request_visitor(request, hops=self.settings.proxy_hops)

    def api_slot(self, request: gr.Request | None):
        """The guard's slot for an API call (host-paid ones count against the visitor's hour)."""
        return self.guard.slot(_session(request), self.visitor(request, None))

    def load_url(self, url: str) -> tuple[Any, Any]:
        """Fetch and check an image URL; a refused URL keeps the current image and says why."""
        if not url or not url.strip():
            return gr.skip(), problem("Paste an image URL first.")
        try:
            return str(images.fetch(url, allow_private=self.settings.allow_private_urls)), NO_MESSAGE
        except images.ImageError as exc:
            return gr.skip(), problem(f"That URL didn't work: {exc} The current image is kept.")

    def spec_of(self, text: str) -> ModelSpec:
        """The spec of a picked or typed model; MiniGPT-4 without a version is the host's own.

        Raises ModelRefError, UnknownModel, UnmappableSchema or ReplicateError.
        """
        if text.strip() == schema.MODEL:
            return schema.SPEC  # its labels ("Max length") and the version the host configured
        return self.resolver.resolve(self.backend.client, text)

    def pick_model(self, choice: str, current: ModelSpec) -> list:
        """Read the picked model's schema and build the settings from it (outputs: the spec, the
        picker, the message, then the control pool). A model the app cannot use is said in words
        and the current one stays picked."""
        unchanged = [gr.skip()] * (3 + model_controls.SLOTS * len(model_controls.KINDS))
        text = (choice or "").strip()
        if not text or text in (current.model, current.ref):
            return unchanged  # e.g. the picker set back to the current model
        try:
            spec = self.spec_of(text)
        except (ModelRefError, UnknownModel, UnmappableSchema, ReplicateError) as exc:
            unchanged[1:3] = [current.model, problem(f"{exc}. {current.model} stays selected.")]
            return unchanged
        return [spec, gr.skip(), info(_left_out_note(spec)), *model_controls.updates(spec)]

    @staticmethod
    def reset(spec: ModelSpec) -> list:
        """The model's controls back at its defaults."""
        return model_controls.updates(spec)

    @staticmethod
    def export_conversation(history: list, records: list) -> tuple[Any, Any]:
        """The chat's answers as one HTML file and JSON, for download (outputs: files, message)."""
        by_id = {record.id: record for record in records if record.id}
        answered = [by_id[m["metadata"]["id"]] for m in history
                    if (m.get("metadata") or {}).get("id") in by_id]
        if not answered:
            return gr.update(value=None, visible=False), problem("Nothing to export yet: ask a question first.")
        pictures = [chat_messages.image_of(m) for m in history if m["role"] == "user"]
        pictures = [picture for picture in pictures if picture]
        notes = ((f"The conversation is about {len(pictures)} images; the newest is shown.",)
                 if len(pictures) > 1 else ())
        report = export.Report(kind="conversation", image=pictures[-1] if pictures else None,
                               entries=tuple(_entry(record) for record in answered),
                               exported_at=time.strftime("%Y-%m-%d %H:%M:%S"), notes=notes)
        return gr.update(value=export.save(report, "conversation"), visible=True), NO_MESSAGE

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
        if self.slots.take(_session(request)) is None:
            return keep._replace(message=problem(BUSY))
        history = list(history)
        if chat_messages.is_new_image(history, image):
            if history:
                history.append(chat_messages.note(chat_messages.NEW_IMAGE))
            history.append(chat_messages.question(prompt, image))
        else:
            history.append(chat_messages.question(prompt))
        return Sent(history, "", Asked(prompt, params), NO_MESSAGE, *_answering(True))

    def retry(self, request: gr.Request | None, history: list, spec: ModelSpec, *values: Any) -> Sent:
        """Drop the last answer and ask its question again, with the settings as they are now
        (the answer step checks them)."""
        keep = Sent(*(gr.skip() for _ in Sent._fields))._replace(question=None)
        last = chat_messages.last_question(history)
        if last is None:
            return keep._replace(message=problem("There is no question to ask again."))
        if self.slots.take(_session(request)) is None:
            return keep._replace(message=problem(BUSY))
        asked = Asked(chat_messages.text(history[last]), model_controls.params(spec, values))
        return Sent(history[: last + 1], gr.skip(), asked, NO_MESSAGE, *_answering(True))

    def stop(self, request: gr.Request = None) -> Any:
        """Ask the running answer to stop; it cancels its prediction and keeps what it wrote.

        The pressed button (the chat's or Compare's) reads "Stopping…" until the answer ends and
        hides it: a word in the message line would outlive the answer.
        """
        if self.slots.stop(_session(request)):
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
        session = _session(request)
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
        free = self.slots.current(_session(request)) is None
        return Answered(history_table(records), *views, *(_answering(False) if free else (gr.skip(),) * 3))

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

    def like(self, history: list, records: list, event: gr.LikeData) -> list:
        """Remember a like or dislike on the record of the answer's prediction."""
        prediction_id = None
        for message in reversed(history[: event.index + 1] if isinstance(event.index, int) else history):
            prediction_id = (message.get("metadata") or {}).get("id")
            if prediction_id:
                break
        verdict = "like" if event.liked else "dislike"
        for record in records:
            if record.id and record.id == prediction_id:
                record.feedback = verdict
        log.info("feedback %s on prediction %s", verdict, prediction_id)
        return records

    def show_record(self, records: list, visitor_token: str, event: gr.SelectData) -> tuple[Any, str]:
        """The full, current prediction behind a row of the history table."""
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        newest_first = list(reversed(records))
        if not isinstance(row, int) or not 0 <= row < len(newest_first):
            return gr.skip(), "That row is not in this session's history."
        chosen = newest_first[row]
        if not chosen.id:
            return {"status": chosen.status, "detail": "This request never reached the API."}, ""
        client = self.backend.client_for(visitor_token if chosen.own_token else None)
        try:
            prediction = client.get(chosen.id)
        except ReplicateError as exc:
            return gr.skip(), f"Could not load that prediction: {exc}"
        shown = {**shown_prediction(prediction), "input": snippets.displayed_input(prediction.get("input") or {})}
        if chosen.feedback:
            shown["feedback"] = chosen.feedback
        return shown, ""

    def account_predictions(self, visitor_token: str) -> tuple[Any, str]:
        """The visitor's own account-wide list; never the host's, which would expose other visitors."""
        if normalise_token(visitor_token) is None:
            return gr.skip(), ("Enter your own Replicate token above to list your account's predictions. "
                               "The host's predictions are never shown.")
        try:
            found = list(itertools.islice(self.backend.client_for(visitor_token).list(), ACCOUNT_LIST_LIMIT))
        except ReplicateError as exc:
            return gr.skip(), f"Could not list predictions: {exc}"
        return [[p.get("created_at", ""), p.get("status", ""), (p.get("metrics") or {}).get("predict_time"),
                 str((p.get("input") or {}).get("prompt", ""))[:80], p.get("id", "")] for p in found], ""

    @tool_docs.documented(tool_docs.ASK)
    def ask(self, image: str, prompt: str, max_length: int, max_new_tokens: int, num_beams: int,
            repetition_penalty: float, temperature: float, top_p: float,
            request: gr.Request = None) -> Iterator[str]:
        # The public API: the growing answer text. Its docstring, for the API page and MCP, is
        # built from MiniGPT-4's schema (tool_docs).
        params = dict(max_length=max_length, max_new_tokens=max_new_tokens, num_beams=num_beams,
                      repetition_penalty=repetition_penalty, temperature=temperature, top_p=top_p)
        # Over the API a null setting means the model's default, as on Replicate.
        params = {name: value for name, value in params.items() if value is not None}
        try:
            inputs = chat.build_input(image, prompt, params)
            with self.api_slot(request):
                for progress in chat.ask(self.backend.client, inputs):
                    if progress.status == "failed":
                        raise _error(wording.model_failed(progress.error))
                    yield progress.text
        except (schema.InputError, images.ImageError) as exc:
            raise _error(wording.input_problem(exc)) from None
        except (ReplicateError, LimitError) as exc:
            raise _error(str(exc)) from None


def target(spec: ModelSpec) -> tuple[str | None, str | None]:
    """The model and version `chat.ask` runs for a spec: None, None for the host's MiniGPT-4."""
    return (None, None) if spec == schema.SPEC else (spec.model, spec.version)


def _session(request: gr.Request | None) -> str:
    """Whose one answer at a time: the browser session's, or an MCP tool call's own (every call
    comes back through one gradio_client session)."""
    call = mcp_calls.of(request)
    if call is not None:
        return f"mcp-{call.call_id}"
    return getattr(request, "session_hash", None) or "anonymous"


def _error(message: str) -> gr.Error:
    """An API caller's error; expected problems are not server errors, so no traceback is logged."""
    return gr.Error(message, print_exception=False)


def _left_out_note(spec: ModelSpec) -> str:
    extra = model_controls.left_out(spec)
    if not extra:
        return ""
    return f"{len(extra)} more settings of {spec.model} keep their defaults: {', '.join(f.label for f in extra)}."


def _entry(record: Record) -> export.Entry:
    return export.Entry(question=record.question, model=record.model, version=record.version,
                        inputs=record.inputs, answer=record.answer, prediction_id=record.id or None,
                        status=record.status, predict_time=record.predict_time, vote=record.feedback)


def _dropped_note(dropped: int, params: dict, spec: ModelSpec) -> str:
    turns = "turn" if dropped == 1 else "turns"
    if spec.model != schema.MODEL:
        return f"{dropped} earlier {turns} left out to fit the prompt"
    answer = params["max_new_tokens"]
    return (f"{dropped} earlier {turns} left out to fit Max length ({params['max_length']} tokens, "
            f"{answer} of them for the answer)")
