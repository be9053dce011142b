"""A conversation or a comparison as one self-contained HTML file and as JSON.

The HTML embeds the image as a small JPEG thumbnail and shows answers as escaped text with a few
Markdown marks (bold, italics, inline code); model output never becomes markup, and a Content
Security Policy forbids every fetch but the embedded image, so the file can be opened anywhere.
The JSON keeps what reproduces each answer: model, version, every input (the image described,
not inlined) and each prediction's id, status and timings.
"""

from __future__ import annotations

import atexit
import base64
import functools
import html
import io
import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

THUMBNAIL_SIDE = 320
# Gradio copies a download into its own cache when it is returned, so the file written here is
# needed only for a moment.
KEEP_SECONDS = 600.0
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #1f2937; }
header img { max-width: 320px; border-radius: 6px; }
.turns article, .panes article { border: 1px solid #d1d5db; border-radius: 8px; padding: 0.75em 1em; }
.turns article { margin: 1em 0; }
.panes { display: grid; grid-template-columns: repeat(auto-fit, minmax(18em, 1fr)); gap: 1em; }
.question { font-weight: 600; }
.answer { white-space: pre-wrap; overflow-wrap: anywhere; }
.meta { color: #6b7280; font-size: 0.85em; }
.vote { color: #047857; font-weight: 600; }
"""


@dataclass(frozen=True)
class Entry:
    """One answer: the question, who answered with which inputs, and the prediction behind it."""

    question: str
    model: str
    version: str | None
    inputs: dict
    answer: str
    prediction_id: str | None = None
    status: str = "succeeded"
    predict_time: float | None = None
    total_time: float | None = None
    vote: str | None = None  # the audience's mark, e.g. "better"


@dataclass(frozen=True)
class Report:
    """A conversation (entries in turn order) or a comparison (one question, entries side by side)."""

    kind: str  # "conversation" or "comparison"
    image: str | None  # a local file path or a data URI
    entries: tuple[Entry, ...]
    title: str = "MiniGPT-4 Studio"
    exported_at: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def thumbnail(image: str | None, side: int = THUMBNAIL_SIDE) -> str | None:
    """A JPEG data URI at most `side` pixels across, or None if there is no readable image."""
    picture = _open(image)
    if picture is None:
        return None
    picture = picture.convert("RGB")
    picture.thumbnail((side, side))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=80, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def describe_image(value: Any) -> Any:
    """A data URI as a short description (type, size, length); anything else as it is."""
    if not (isinstance(value, str) and value.startswith("data:")):
        return value
    kind = value[5:].split(";", 1)[0].split(",", 1)[0] or "data"
    picture = _open(value)
    size = f"{picture.width}×{picture.height}, " if picture is not None else ""
    return f"{kind} data URI ({size}{len(value):,} characters)"


def describe_picture(image: str | None) -> str | None:
    """The report's image as the JSON names it. A local file's path is the server's own (Gradio's
    cache of an upload), so only the file's name and size are kept; a data URI is described."""
    if not image or image.startswith(("data:", "http://", "https://")):
        return describe_image(image)
    picture = _open(image)
    return f"{Path(image).name} ({picture.width}×{picture.height})" if picture is not None else Path(image).name


def to_json(report: Report) -> str:
    """The report as JSON: every input (the image described), each prediction's id and timings."""
    entries = []
    for entry in report.entries:
        data = asdict(entry)
        data["inputs"] = {name: describe_image(value) for name, value in entry.inputs.items()}
        data["prediction"] = {"id": data.pop("prediction_id"), "status": data.pop("status"),
                              "predict_time": data.pop("predict_time"),
                              "total_time": data.pop("total_time")}
        entries.append(data)
    return json.dumps({"kind": report.kind, "title": report.title,
                       "exported_at": report.exported_at, "image": describe_picture(report.image),
                       "notes": list(report.notes), "entries": entries},
                      ensure_ascii=False, indent=2)


def to_html(report: Report) -> str:
    """The report as one HTML file that fetches nothing."""
    picture = thumbnail(report.image)
    image = f'<img src="{picture}" alt="The image asked about">' if picture else "<p>(no image)</p>"
    if report.kind == "comparison":
        question = report.entries[0].question if report.entries else ""
        body = (f'<p class="question">{_inline(question)}</p>\n<section class="panes">\n'
                + "\n".join(_article(entry, with_question=False) for entry in report.entries)
                + "\n</section>")
    else:
        body = ('<section class="turns">\n'
                + "\n".join(_article(entry, with_question=True) for entry in report.entries)
                + "\n</section>")
    notes = "".join(f'<p class="meta">{_inline(note)}</p>\n' for note in report.notes)
    exported = f'<p class="meta">Exported {html.escape(report.exported_at)}</p>' if report.exported_at else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="referrer" content="no-referrer">\n'
            f"<title>{html.escape(report.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<header>\n<h1>{html.escape(report.title)}</h1>\n{exported}\n{image}\n</header>\n"
            f"{notes}{body}\n</body>\n</html>\n")


def save(report: Report, stem: str) -> list[str]:
    """Write the report as `stem`.html and `stem`.json in a new folder; return both paths."""
    root = _exports()
    for old in root.iterdir():
        if time.time() - old.stat().st_mtime > KEEP_SECONDS:
            shutil.rmtree(old, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(dir=root))
    page, data = folder / f"{stem}.html", folder / f"{stem}.json"
    page.write_text(to_html(report), encoding="utf-8")
    data.write_text(to_json(report), encoding="utf-8")
    return [str(page), str(data)]


@functools.lru_cache(maxsize=1)
def _exports() -> Path:
    """This process's folder of exports, removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="minigpt4-exports-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _article(entry: Entry, *, with_question: bool) -> str:
    timings = [f"predict time {entry.predict_time:.2f} s" if entry.predict_time is not None else "",
               f"total {entry.total_time:.2f} s" if entry.total_time is not None else ""]
    meta = " · ".join(part for part in [
        f"<code>{html.escape(entry.model)}</code>",
        f"version <code>{html.escape(entry.version[:12])}</code>" if entry.version else "",
        html.escape(entry.status), *timings,
        f"prediction <code>{html.escape(entry.prediction_id)}</code>" if entry.prediction_id else "",
    ] if part)
    parameters = ", ".join(f"{html.escape(name)}={html.escape(json.dumps(value, ensure_ascii=False))}"
                           for name, value in entry.inputs.items()
                           if not (isinstance(value, str) and (value.startswith("data:")
                                                                or value == entry.question)))
    question = f'<p class="question">{_inline(entry.question)}</p>\n' if with_question else ""
    vote = f'<p class="vote">✔ {html.escape(entry.vote)}</p>\n' if entry.vote else ""
    return (f"<article>\n{question}<p class=\"meta\">{meta}</p>\n"
            + (f'<p class="meta">{parameters}</p>\n' if parameters else "")
            + f'<div class="answer">{_inline(entry.answer)}</div>\n{vote}</article>')


# Applied to already-escaped text, so they can only add these tags, never anything from the text.
_MARKS = ((re.compile(r"`([^`\n]+)`"), r"<code>\1</code>"),
          (re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*"), r"<strong>\1</strong>"),
          (re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])"), r"<em>\1</em>"))


def _inline(text: str) -> str:
    """Escaped text with bold, italics and inline code; links and images stay plain text."""
    escaped = html.escape(text, quote=True)
    for pattern, replacement in _MARKS:
        escaped = pattern.sub(replacement, escaped)
    return escaped


def _open(image: str | None) -> Image.Image | None:
    if not image:
        return None
    try:
        if image.startswith("data:"):
            payload = base64.b64decode(image.partition(",")[2], validate=True)
            source: Any = io.BytesIO(payload)
        elif Path(image).is_file():
            source = image
        else:
            return None
        with Image.open(source) as opened:
            opened.load()
            return opened.copy()
    except (OSError, ValueError):  # unreadable or not an image: nothing to show
        return None
