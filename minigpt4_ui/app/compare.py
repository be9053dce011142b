"""Compare side by side: one image and one question to 2–4 contenders at once.

A contender is a model and its parameters (a JSON object), so the same model may run twice with
different settings. All contenders run in threads inside one streaming event that yields every
pane; Stop is the session's answer flag (as in the chat), which every contender's stream reads,
so one press cancels them all. The audience may mark the better answer, continue any answer as
a chat, or export the comparison.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Generator, Iterator

import gradio as gr

from . import answer_text, chat, chat_messages, export, images, model_controls, wording
from ..shared import schema
from .ask_model import parse_parameters
from .backend import normalise_token
from .conversation import model_inputs
from .guard import LimitError
from .model_refs import ModelRefError, UnknownModel
from ..shared.model_schema import NOT_TEXT, InputError, ModelSpec, UnmappableSchema, is_text
from ..replicate_api import Client, ReplicateError
from .answer_slots import session_of
from .answer_status import status_details, status_title_by
from .chat_handlers import target
from .chat_updates import stop_button
from .handlers import Studio
from .records import Record, history_table

log = logging.getLogger(__name__)

MAX_CONTENDERS = 4
STOP = "Stop comparing"
# Panes are redrawn at most this often, whatever the number of contenders streaming at once.
REDRAW_SECONDS = 0.05


@dataclass
class Pane:
    """One contender's run, as far as it has got."""

    model: str
    spec: ModelSpec
    params: dict
    inputs: dict
    progress: chat.Progress | None = None
    error: str = ""
    done: bool = False
    answered_by: str = ""  # who writes this answer, in words


@dataclass
class Comparison:
    """A finished comparison: what its panes showed, and the audience's choice."""

    image: str
    question: str
    panes: list[Pane] = field(default_factory=list)
    better: int | None = None

    def entries(self) -> tuple[export.Entry, ...]:
        return tuple(_entry(self, index) for index in range(len(self.panes)))


def _entry(comparison: Comparison, index: int) -> export.Entry:
    pane = comparison.panes[index]
    progress = pane.progress or chat.Progress(status="error")
    inputs = {**pane.inputs, pane.spec.image: export.describe_image(pane.inputs[pane.spec.image])}
    return export.Entry(question=comparison.question, model=pane.spec.model,
                        version=target(pane.spec)[1] or pane.spec.version, inputs=inputs,
                        answer=progress.text or pane.error, prediction_id=progress.prediction_id,
                        status="error" if pane.error else progress.status, predict_time=progress.predict_time,
                        total_time=round(progress.elapsed, 2), vote="better" if comparison.better == index else None)


def _pane_status(pane: Pane) -> str:
    if pane.error:
        return f"**{answer_text.markdown(pane.error)}**"  # it may be an API's error text
    if pane.progress is None:
        return "Sending…"
    details = status_details(replace(pane.progress, logs=""))
    return f"**{status_title_by(pane.progress, pane.answered_by)}**" + (f"  \n{details}" if details else "")


def _running(active: bool) -> tuple[dict, dict]:
    """Compare and Stop: Stop takes Compare's place while the contenders answer."""
    return gr.update(visible=not active), stop_button(active, STOP)


class Comparer:
    """The Compare view's handlers; they share the chat's session slots, guard and schemas."""

    def __init__(self, studio: Studio):
        self.studio = studio

    @staticmethod
    def show_contenders(count: int) -> list[dict]:
        """The contender columns: the first `count` shown."""
        return [gr.update(visible=index < int(count)) for index in range(MAX_CONTENDERS)]

    def _plan(self, image: str | None, question: str, count: int, contenders: tuple) -> list[Pane]:
        """Every contender's inputs, checked; raises ValueError naming the contender and the problem."""
        if not (question or "").strip():
            raise ValueError("Type a question first.")
        if not is_text(question):
            raise ValueError(f"The question {NOT_TEXT}.")
        if not image:
            raise ValueError("Add an image first (upload, paste or webcam).")
        panes = []
        for index in range(int(count)):
            model, parameters = contenders[2 * index], contenders[2 * index + 1]
            if not is_text(model):  # before it is named in a message
                raise ValueError(f"Contender {index + 1}: the model {NOT_TEXT}.")
            where = f"Contender {index + 1} ({(model or '').strip() or 'no model'})"
            spec = None
            try:
                spec = self.studio.spec_of(model or "")
                params = parse_parameters(parameters)
                inputs = model_inputs(spec, [], question, params).inputs
                panes.append(Pane(model=model.strip(), spec=spec, params=params,
                                  inputs=chat.build_model_input(spec, image, inputs)))
            except (InputError, images.ImageError) as exc:
                raise ValueError(f"{where}: {wording.input_problem(exc, spec or schema.SPEC)}") from None
            except (ModelRefError, UnknownModel, UnmappableSchema, ReplicateError) as exc:
                raise ValueError(f"{where}: {exc}.") from None
        return panes

    def start(self, request: gr.Request | None, image: str | None, question: str, count: int,
              *contenders: Any) -> tuple:
        """Check the question and every contender, and take the session's answer slot (outputs:
        message, Compare, Stop). A problem is said in words and nothing starts."""
        try:
            self._plan(image, question, count, contenders)
        except ValueError as exc:
            return str(exc), gr.skip(), gr.skip()
        if self.studio.slots.take(session_of(request)) is None:
            return "An answer is still being written: wait for it, or press Stop.", gr.skip(), gr.skip()
        return "", *_running(True)

    def run(self, request: gr.Request | None, image: str, question: str, count: int, visitor_token: str,
            records: list, *contenders: Any) -> Iterator[list]:
        """Stream every contender's answer into its pane (outputs: comparison, records, history,
        message, Compare, Stop, then each pane's status, answer, Better and Continue)."""
        session = session_of(request)
        slot = self.studio.slots.current(session)
        if slot is None or slot.started:  # Start refused, and said why
            yield [gr.skip()] * (6 + 4 * MAX_CONTENDERS)
            return
        slot.started = True
        try:
            panes = self._plan(image, question, count, contenders)
            visitor = self.studio.visitor(request, visitor_token)
            with self.studio.guard.slot(session, visitor, predictions=len(panes)):
                last = yield from self._run(Comparison(image, question, panes), records, visitor_token, slot.stop)
        except (ValueError, LimitError) as exc:
            last = [gr.skip(), gr.skip(), gr.skip(), str(exc), *_running(False)] + [gr.skip()] * (4 * MAX_CONTENDERS)
        finally:
            self.studio.slots.free(session, slot)
        yield last  # once the slot is free (see ChatHandlers.respond)

    def _run(self, comparison: Comparison, records: list, visitor_token: str,
             stop: threading.Event) -> Generator[list, None, list]:
        """Yield the panes as they change; return the last update (the one that shows Compare)."""
        client = self.studio.backend.client_for(visitor_token)
        changed: queue.Queue = queue.Queue()
        for pane in comparison.panes:
            pane.answered_by = self.studio.backend.answered_by(pane.spec.model, visitor_token,
                                                               version=target(pane.spec)[1])
            if stop.is_set():  # pressed while the comparison waited to start: nothing is created
                pane.error, pane.done = "Stopped by you before the answer started", True
            else:
                threading.Thread(target=_follow, args=(client, pane, stop, changed), daemon=True).start()
        try:
            while not all(pane.done for pane in comparison.panes):
                changed.get()
                deadline = time.monotonic() + REDRAW_SECONDS
                while time.monotonic() < deadline:  # gather what else arrives before redrawing
                    try:
                        changed.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                yield self._render(comparison, gr.skip(), gr.skip(), gr.skip(), running=True)
            records = list(records) + [_record(comparison, index, visitor_token)
                                       for index in range(len(comparison.panes))]
            return self._render(comparison, comparison, records, history_table(records), running=False)
        finally:
            stop.set()  # a closed tab ends this generator early: every contender cancels its prediction

    @staticmethod
    def _render(comparison: Comparison, state: Any, records: Any, history: Any, *, running: bool) -> list:
        # Start already showed Stop; while the contenders stream it is left alone (see ChatHandlers.respond).
        out = [state, records, history, "", *(_running(False) if not running else (gr.skip(),) * 2)]
        for index in range(MAX_CONTENDERS):
            pane = comparison.panes[index] if index < len(comparison.panes) else None
            if pane is None:
                out += ["", "", gr.update(visible=False), gr.update(visible=False)]
                continue
            answered = not running and pane.progress is not None and bool(pane.progress.text)
            out += [_pane_status(pane), answer_text.markdown(pane.progress.text if pane.progress else ""),
                    _better_button(index, False, visible=answered), gr.update(visible=answered)]
        return out

    @staticmethod
    def mark_better(index: int, comparison: Comparison | None) -> list:
        """Record the audience's choice (outputs: comparison, then each pane's Better button)."""
        if comparison is None or index >= len(comparison.panes):
            return [gr.skip()] * (1 + MAX_CONTENDERS)
        comparison.better = index
        pane = comparison.panes[index]
        log.info("comparison vote: answer %d (%s, prediction %s) is better", index + 1, pane.model,
                 pane.progress.prediction_id if pane.progress else None)
        return [comparison, *(_better_button(i, i == index, visible=i < len(comparison.panes))
                              for i in range(MAX_CONTENDERS))]

    def continue_in_chat(self, index: int, comparison: Comparison | None) -> list:
        """Move one answer into the chat and pick its model with its parameters (outputs: tabs,
        chat, image, picker, spec, compare message, then the control pool)."""
        if comparison is None or index >= len(comparison.panes):
            return [gr.skip()] * 5 + ["Compare first."] + [gr.skip()] * model_controls.SLOTS * len(model_controls.KINDS)
        pane = comparison.panes[index]
        progress = pane.progress or chat.Progress(status="error")
        history = [chat_messages.question(comparison.question, comparison.image),
                   chat_messages.status(f"Answered by {pane.model} in a comparison", done=True,
                                        prediction_id=progress.prediction_id),
                   chat_messages.answer(answer_text.markdown(progress.text))]
        shown = {name: value for name, value in pane.params.items()
                 if name in {f.name for f in model_controls.shown(pane.spec)}}
        return [gr.Tabs(selected="chat"), history, comparison.image, pane.model, pane.spec, "",
                *model_controls.updates(pane.spec, {**pane.spec.defaults(), **shown})]

    @staticmethod
    def export(comparison: Comparison | None) -> tuple[Any, str]:
        """The comparison as one HTML file and JSON, for download (outputs: files, message)."""
        if comparison is None:
            return gr.update(value=None, visible=False), "Nothing to export yet: compare first."
        report = export.Report(kind="comparison", image=comparison.image, entries=comparison.entries(),
                               title="MiniGPT-4 Studio: a comparison",
                               exported_at=time.strftime("%Y-%m-%d %H:%M:%S"))
        return gr.update(value=export.save(report, "comparison"), visible=True), ""


def _better_button(index: int, chosen: bool, *, visible: bool) -> dict:
    return gr.update(value="Marked better" if chosen else f"Answer {index + 1} is better",
                     variant="primary" if chosen else "secondary", visible=visible)


def _follow(client: Client, pane: Pane, stop: threading.Event, changed: queue.Queue) -> None:
    """Run one contender's prediction, keeping its latest progress on the pane."""
    model, version = target(pane.spec)
    try:
        for progress in chat.ask(client, pane.inputs, stop=stop, model=model, version=version):
            pane.progress = progress
            changed.put(None)
    except ReplicateError as exc:
        pane.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - the pane must end in words, whatever broke
        log.exception("contender failed")
        pane.error = f"The app could not finish this answer ({type(exc).__name__}: {exc})"
    finally:
        pane.done = True
        changed.put(None)


def _record(comparison: Comparison, index: int, visitor_token: str) -> Record:
    """A History row for one contender's prediction (and what the conversation export reads)."""
    entry = _entry(comparison, index)
    progress = comparison.panes[index].progress
    return Record(time=time.strftime("%H:%M:%S"), prompt=comparison.question[:80],
                  own_token=normalise_token(visitor_token) is not None, status=entry.status,
                  seconds=round(progress.elapsed, 1) if progress else 0.0, id=entry.prediction_id or "",
                  question=comparison.question, model=entry.model, version=entry.version, inputs=entry.inputs,
                  answer=entry.answer, predict_time=entry.predict_time)

