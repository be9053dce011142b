"""SQLite persistence of predictions, uploaded files and server settings; newest-first pagination."""

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
        # Bounded as text: SQLite integers are 64-bit, and int() refuses thousands of digits.
        if direction in ("older", "newer") and row.isdigit() and len(row) <= 18:
            return direction, int(row)
    except ValueError:  # bad base64, bad UTF-8 or a non-integer row
        pass
    raise CursorError(f"invalid cursor {cursor!r}")


class Store:
    """Prediction objects by id in one SQLite database (`:memory:`, gone when closed, or a file that
    survives restarts).

    The stored object never holds `urls`: those depend on the address the server answers on.
    """

    def __init__(self, path: str = ":memory:"):
        self._lock = threading.Lock()
        # ":memory:" becomes SQLite's private temporary database (file name ""), which lives in a
        # bounded page cache and spills to an unlinked file: in a true in-memory database every
        # uploaded file stayed in the process's memory after it was deleted (50 MB: +61 MB).
        self._db = sqlite3.connect("" if path == ":memory:" else path, check_same_thread=False,
                                   isolation_level=None)
        # Before the first table, or it has no effect: deleting files can then shrink the file.
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if path != ":memory:":
            # WAL without a sync per write: a chunk update must not wait on the disk.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS predictions ("
            " row INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS files ("
            " row INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,"
            " expires_at TEXT NOT NULL, content BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def meta(self, key: str, default: str) -> str:
        """A persistent setting; the first call stores `default` and later ones return it."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, default))
            return self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    def insert_file(self, file: dict, content: bytes) -> None:
        """Add an uploaded file (its object and its bytes); it becomes the newest."""
        with self._lock:
            self._db.execute("INSERT INTO files (id, body, expires_at, content) VALUES (?, ?, ?, ?)",
                             (file["id"], json.dumps(file), file["expires_at"], content))

    def get_file(self, file_id: str, *, now: str) -> dict | None:
        """The file object, or None if unknown or expired at `now` (RFC 3339)."""
        with self._lock:
            row = self._db.execute("SELECT body FROM files WHERE id = ? AND expires_at > ?",
                                   (file_id, now)).fetchone()
        return json.loads(row[0]) if row else None

    def file_content(self, file_id: str, *, now: str) -> bytes | None:
        """A file's bytes, or None if unknown or expired."""
        with self._lock:
            row = self._db.execute("SELECT content FROM files WHERE id = ? AND expires_at > ?",
                                   (file_id, now)).fetchone()
        return bytes(row[0]) if row else None

    def delete_file(self, file_id: str, *, now: str) -> bool:
        """Delete a file; False if it was unknown or already expired."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM files WHERE id = ? AND expires_at > ?",
                                      (file_id, now))
            self._db.executescript("PRAGMA incremental_vacuum")
        return cursor.rowcount > 0

    def purge_files(self, *, now: str) -> None:
        """Forget every file that expired before `now`."""
        with self._lock:
            if self._db.execute("DELETE FROM files WHERE expires_at <= ?", (now,)).rowcount:
                self._db.executescript("PRAGMA incremental_vacuum")

    def file_page(self, *, cursor: str | None, size: int) -> Page:
        """A page of file objects, newest first (call purge_files first to hide expired ones)."""
        return self._page("files", cursor=cursor, size=size)

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
        return self._page("predictions", cursor=cursor, size=size)

    def _page(self, table: str, *, cursor: str | None, size: int) -> Page:
        direction, edge = _parse_cursor(cursor) if cursor else ("older", None)
        with self._lock:
            if direction == "older":
                rows = self._db.execute(
                    f"SELECT row, body FROM {table} WHERE ? IS NULL OR row < ?"
                    " ORDER BY row DESC LIMIT ?", (edge, edge, size + 1)).fetchall()
                more_older, more_newer = len(rows) > size, edge is not None
                rows = rows[:size]
            else:
                rows = self._db.execute(
                    f"SELECT row, body FROM {table} WHERE row > ? ORDER BY row ASC LIMIT ?",
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
