"""SQLite persistence of prediction objects, newest-first pagination, safe across threads."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from dataclasses import dataclass


class CursorError(ValueError):
    """A `cursor` query parameter this store did not issue."""


@dataclass(frozen=True)
class Page:
    """One page of predictions, newest first, with opaque cursors to its neighbours."""

    results: list[dict]
    next: str | None
    previous: str | None


def _cursor(direction: str, row: int) -> str:
    return base64.urlsafe_b64encode(f"{direction}:{row}".encode()).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[str, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        direction, _, row = base64.urlsafe_b64decode(padded).decode().partition(":")
        if direction in ("older", "newer"):
            return direction, int(row)
    except ValueError:  # bad base64, bad UTF-8 or a non-integer row
        pass
    raise CursorError(f"invalid cursor {cursor!r}")


class Store:
    """Prediction objects by id in one SQLite database (`:memory:` or a file that survives restarts).

    The stored object never holds `urls`: those depend on the address the server answers on.
    """

    def __init__(self, path: str = ":memory:"):
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        if path != ":memory:":
            # WAL without a sync per write: a chunk update must not wait on the disk.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS predictions ("
            " row INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL)")

    def insert(self, prediction: dict) -> None:
        """Add a new prediction; it becomes the newest."""
        with self._lock:
            self._db.execute("INSERT INTO predictions (id, body) VALUES (?, ?)",
                             (prediction["id"], json.dumps(prediction)))

    def update(self, prediction: dict) -> None:
        """Replace the stored object of an existing prediction."""
        with self._lock:
            self._db.execute("UPDATE predictions SET body = ? WHERE id = ?",
                             (json.dumps(prediction), prediction["id"]))

    def get(self, prediction_id: str) -> dict | None:
        """The prediction with this id, or None."""
        with self._lock:
            row = self._db.execute("SELECT body FROM predictions WHERE id = ?",
                                   (prediction_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def unfinished(self) -> list[dict]:
        """Predictions left `starting` or `processing`, e.g. by a server that was stopped."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM predictions WHERE json_extract(body, '$.status')"
                " IN ('starting', 'processing') ORDER BY row").fetchall()
        return [json.loads(body) for (body,) in rows]

    def page(self, *, cursor: str | None, size: int) -> Page:
        """A page of `size` predictions, newest first; raises CursorError on a foreign cursor."""
        direction, edge = _parse_cursor(cursor) if cursor else ("older", None)
        with self._lock:
            if direction == "older":
                rows = self._db.execute(
                    "SELECT row, body FROM predictions WHERE ? IS NULL OR row < ?"
                    " ORDER BY row DESC LIMIT ?", (edge, edge, size + 1)).fetchall()
                more_older, more_newer = len(rows) > size, edge is not None
                rows = rows[:size]
            else:
                rows = self._db.execute(
                    "SELECT row, body FROM predictions WHERE row > ? ORDER BY row ASC LIMIT ?",
                    (edge, size + 1)).fetchall()
                more_older, more_newer = True, len(rows) > size
                rows = rows[:size][::-1]
        if not rows:
            return Page(results=[], next=None, previous=None)
        return Page(results=[json.loads(body) for _, body in rows],
                    next=_cursor("older", rows[-1][0]) if more_older else None,
                    previous=_cursor("newer", rows[0][0]) if more_newer else None)

    def close(self) -> None:
        with self._lock:
            self._db.close()
