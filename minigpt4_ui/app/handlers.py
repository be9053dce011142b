"""The app's event handlers, as plain functions of component values; `ui.py` wires them.

`Studio` binds them to one backend: the chat's (`chat_handlers`, as `studio.chat`), the model
picker's, the history's and the export's, and the public API's `/ask`. Compare's are in `compare`.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Iterator

import gradio as gr

from . import chat, chat_messages, export, images, model_controls, snippets, tool_docs, wording
from ..replicate_api import ReplicateError, shown_prediction
from ..shared import schema
from ..shared.model_schema import ModelSpec, UnmappableSchema
from .answer_slots import AnswerSlots, session_of
from .backend import Backend, normalise_token
from .chat_handlers import ChatHandlers
from .chat_updates import NO_MESSAGE, info, problem
from .guard import Guard, LimitError, request_visitor
from .model_refs import ModelRefError, Resolver, UnknownModel
from .records import export_entry
from .settings import Settings

log = logging.getLogger(__name__)

ACCOUNT_LIST_LIMIT = 50


class Studio:
    """The event handlers of one app, bound to its backend."""

    def __init__(self, backend: Backend, settings: Settings):
        self.backend = backend
        self.settings = settings
        self.guard = Guard(per_hour=settings.visitor_limit_per_hour)
        self.slots = AnswerSlots()
        self.resolver = Resolver()
        self.chat = ChatHandlers(backend, settings, self.guard, self.slots, self.visitor)

    def visitor(self, request: gr.Request | None, visitor_token: str | None) -> str | None:
        """Who pays: None when not the host's token (own token, embedded backend), else the visitor."""
        if request is None or normalise_token(visitor_token) or self.backend.embedded:
            return None
        return request_visitor(request, hops=self.settings.proxy_hops)

    def api_slot(self, request: gr.Request | None):
        """The guard's slot for an API call (host-paid ones count against the visitor's hour)."""
        return self.guard.slot(session_of(request), self.visitor(request, None))

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
                               entries=tuple(export_entry(record) for record in answered),
                               exported_at=time.strftime("%Y-%m-%d %H:%M:%S"), notes=notes)
        return gr.update(value=export.save(report, "conversation"), visible=True), NO_MESSAGE

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


def _error(message: str) -> gr.Error:
    """An API caller's error; expected problems are not server errors, so no traceback is logged."""
    return gr.Error(message, print_exception=False)


def _left_out_note(spec: ModelSpec) -> str:
    extra = model_controls.left_out(spec)
    if not extra:
        return ""
    return f"{len(extra)} more settings of {spec.model} keep their defaults: {', '.join(f.label for f in extra)}."
