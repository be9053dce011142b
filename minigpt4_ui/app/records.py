"""This session's predictions as the History table lists them (`Record`), and as an export's entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from . import export, snippets

HISTORY_HEADERS = ["Time", "Status", "Seconds", "Prompt", "Prediction"]


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


def export_entry(record: Record) -> export.Entry:
    """What an export says of one answered prediction."""
    return export.Entry(question=record.question, model=record.model, version=record.version,
                        inputs=record.inputs, answer=record.answer, prediction_id=record.id or None,
                        status=record.status, predict_time=record.predict_time, vote=record.feedback)
