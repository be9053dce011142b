"""A loopback stand-in for the Hugging Face Hub, so huggingface_hub downloads run offline in tests.

    with FakeHub({"HuggingFaceTB/SmolVLM-256M-Instruct": folder}) as hub:
        subprocess.run([...], env=hub.env(hf_home=tmp))   # HF_ENDPOINT=hub.url, fresh HF_HOME

Every file under `folder` (recursively) is a file of the repo, at one fixed fake commit
(`hub.commit(repo_id)`, 40 hex digits) that both `main` and the sha itself resolve to.
`HF_ENDPOINT` and `HF_HUB_OFFLINE` are read once, when `huggingface_hub.constants` is imported,
so point a *fresh process* at the hub (see `env()`); setting os.environ after the import does nothing.

What huggingface_hub 2.4.0 asks (checked against its source and by tests/test_fake_hub.py)
------------------------------------------------------------------------------------------
`snapshot_download(repo, allow_patterns=[...])` (revision "main"):
  1. GET  /api/models/{repo}/revision/main           -> JSON; only `sha` is used (the fake also
     sends `id` and `siblings: [{"rfilename": ...}]`). Sent without retries and with *no timeout*.
  2. GET  /api/models/{repo}/tree/{sha}?recursive=true&expand=false -> JSON list of
     {"type": "file", "path", "size", "oid", "lfs"?: {"oid": sha256, "size", "pointerSize"}}
     (+ "directory" entries, which it skips); pagination by `Link: <...>; rel="next"` (not used
     here). Written to the cache as `trees/{sha}.json`; allow/ignore patterns filter this list.
     This one goes through http_backoff: 5xx/429/network errors are retried 5 times, sleeping
     1, 2, 4, 8, 8 s. The 2.x snapshot_download does not use `siblings` nor paths-info.
  3. per matching file, hf_hub_download(revision=sha), on up to 8 threads:
     HEAD /{repo}/resolve/{sha}/{path}  (Accept-Encoding: identity; same-origin redirects followed)
        needs `X-Repo-Commit` (else FileMetadataError), `ETag` or `X-Linked-Etag` (the blob's
        name in the cache; quotes and a W/ prefix are stripped), and the size from `X-Linked-Size`
        or else `Content-Length`. A `Location` only matters on a redirect to another origin (a CDN);
        the fake answers 200 directly, like the Hub does for small non-LFS files. Any `X-Xet-Hash`
        header would switch the download to hf_xet: the fake never sends one, nor `xetHash`.
     GET  /{repo}/resolve/{sha}/{path}  -> the body, streamed into
        blobs/{etag}.<8 hex>.incomplete, then renamed to blobs/{etag} and symlinked from
        snapshots/{sha}/{path}. A file already in snapshots/{sha}/ costs no request at all.
`hf_hub_download(repo, filename)` (revision "main") is step 3 against /resolve/main/, and writes
refs/main from the HEAD's X-Repo-Commit. With `HF_HUB_OFFLINE=1` neither function sends anything:
they read refs/main, then snapshots/{sha}/ (snapshot_download checks it against trees/{sha}.json
and raises IncompleteSnapshotError if a wanted file is missing).

Errors: a HEAD answered 5xx/429 (or a network error) is asked again once more with retries
(1, 2, 4... s sleeps, 60 s etag timeout) when the file is not cached; a GET answered with any
status other than 408/429 raises at once (HfHubHTTPError); 404 + `X-Error-Code: EntryNotFound` /
`RepoNotFound` / `RevisionNotFound` become the matching huggingface_hub errors.

Interrupted downloads (`cut_after`): huggingface_hub retries *by itself*, inside the same call.
When the body stops short (httpx2.RemoteProtocolError; also ConnectError/timeouts), http_get sleeps
1 s and sends the GET again with `Range: bytes={bytes written}-`, reusing the same progress bar; a
206 with `Content-Range: bytes N-M/total` is appended, a 200 makes it start the file over. Up to 5
such retries, the count reset whenever a try wrote some bytes, so a download that keeps making
progress is never given up. Two catches:
  - bytes are written in `huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE` (10 MiB) pieces
    (httpx's iter_bytes buffers that much), so a cut inside the first 10 MiB resumes from 0 with
    no Range header, and a resume re-fetches the partial chunk. Tests with small files lower it.
  - nothing carries over between calls: the `.incomplete` name is unique per call and is deleted
    when the call fails, so after a failed call the next one downloads the whole file again.

Byte progress and `tqdm_class`
------------------------------
`snapshot_download(..., tqdm_class=C)` makes three instances of C (through
`_create_progress_bar`, which adds `disable=`/`name=` only when C subclasses huggingface_hub's
own tqdm; a plain `tqdm.auto.tqdm` subclass gets exactly these kwargs):
  - C(desc="Downloading bytes", total=0, initial=0, unit="B", unit_scale=True, bar_format=...)
    - the "transfer" bar: network bytes;
  - C(desc="Reconstructing (incomplete total...)", total=0, initial=0, unit="B",
    unit_scale=True, bar_format=...) - the bytes written to disk;
  - C(desc="Fetching {n} files", total=n) - the files bar (unit "it"), update(1) per finished file
    (also per file that was already cached).
It is not handed to each file: every file's http_get gets an internal `_AggregatedTqdm` that adds
the file's size (from the HEAD) to `.total` of *both* byte bars when the file starts (set as an
attribute, no update call), then for every chunk written calls `update(len)` on the
reconstruction bar and `update(len)` on the transfer bar (whose `.total` it raises to n*1.25 when
n would pass it). At the end the transfer bar gets `total = n` and both get a new description
("Download complete" / "Reconstruction complete"). So: sum `update(n)` of ONE bar (pick the one
whose desc starts with "Reconstructing"; counting every unit="B" bar counts each byte twice),
and read its `.total` for the size of the files started so far (it grows while files start;
cached files add nothing). A restarted file (a 200 to a Range request) sends a negative update.
Updates come once per DOWNLOAD_CHUNK_SIZE (10 MiB) of a file and at its end, whatever the
network speed. The two byte bars are never closed by snapshot_download (only the files bar is,
as a context manager), so don't wait for their close(). `hf_hub_download(..., tqdm_class=C)`
passes C straight to http_get: one C(desc=filename (…last 40 chars), total=size,
initial=resume, unit="B", unit_scale=True), updated per chunk, closed at the end.

Timeouts and dead endpoints (measured with huggingface_hub 2.4.0)
-----------------------------------------------------------------
- Port closed (connection refused): snapshot_download gives up in ~0.03 s
  (LocalEntryNotFoundError, or the cached snapshot if complete), but hf_hub_download takes ~23 s:
  its HEAD is asked again with backoff sleeps of 1+2+4+8+8 s before LocalEntryNotFoundError.
- Port open but silent: snapshot_download's GET /api/models/.../revision/main has no timeout at
  all and hangs for good; hf_hub_download's first HEAD waits HF_HUB_ETAG_TIMEOUT (10 s), the
  retries then wait a fixed 60 s each. Put your own deadline (a thread) around the first call.
- HF_HUB_DOWNLOAD_TIMEOUT (10 s) is the GET's read timeout, between two pieces of the body; a
  throttled fake sends a piece every 1/20 s at most, so it never trips.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, unquote, urlsplit

LFS_MIN_SIZE = 64 * 1024  # files this big are described as LFS files (sha256 etag, `lfs` in the tree)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class RepoFile:
    path: str  # "/"-separated, relative to the repo root
    data: bytes
    git_sha1: str
    sha256: str

    @property
    def lfs(self) -> bool:
        return len(self.data) >= LFS_MIN_SIZE

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1


@dataclass(frozen=True)
class Call:
    """One request as the hub saw it; `status` is what it answered."""

    method: str
    path: str  # with the query string, as sent
    headers: dict[str, str]
    status: int


@dataclass
class _Repo:
    repo_id: str
    sha: str
    files: dict[str, RepoFile] = field(default_factory=dict)


def _load(repo_id: str, folder: Path) -> _Repo:
    repo = _Repo(repo_id, hashlib.sha1(f"fake-hub:{repo_id}".encode()).hexdigest())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        data = path.read_bytes()
        git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        repo.files[rel] = RepoFile(rel, data, git_sha1, hashlib.sha256(data).hexdigest())
    return repo


class FakeHub:
    """The Hub's download routes for a few local folders, on http://127.0.0.1:<free port>."""

    def __init__(self, repos: dict[str, str | Path], *, bytes_per_second: float | None = None):
        self._repos = {repo_id: _load(repo_id, Path(folder)) for repo_id, folder in repos.items()}
        self.bytes_per_second = bytes_per_second  # may be changed while running; None = full speed
        self.requests: list[str] = []
        self.calls: list[Call] = []
        self.bytes_sent: dict[str, int] = {}  # file path -> body bytes written (or being written), all GETs
        self._cuts: dict[str, list[int]] = {}
        self._fails: dict[str, list[tuple[int, str | None]]] = {}
        self._cond = threading.Condition()
        self._closed = threading.Event()
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hub", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ test controls
    def commit(self, repo_id: str) -> str:
        return self._repos[repo_id].sha

    def file(self, repo_id: str, path: str) -> RepoFile:
        return self._repos[repo_id].files[path]

    def cut_after(self, filename: str, nbytes: int, times: int = 1) -> None:
        """The next `times` GETs of `filename` send only `nbytes` of their body, then hang up."""
        with self._cond:
            self._cuts.setdefault(filename, []).extend([nbytes] * times)

    def fail(self, filename: str, status: int = 500, times: int = 1, *, method: str | None = "GET") -> None:
        """The next `times` requests for `filename` (GETs only by default; method=None: HEADs too)
        are answered `status`. huggingface_hub retries a failed HEAD, not a failed GET."""
        with self._cond:
            self._fails.setdefault(filename, []).extend([(status, method)] * times)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait, without polling, until `predicate()` holds (re-checked after every request and body
        chunk); False when `timeout` passes first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
            return True

    def env(self, hf_home: str | Path | None = None, **extra: str) -> dict[str, str]:
        """os.environ for a child process that downloads from this hub into `hf_home`'s cache:
        HF_ENDPOINT set; offline mode, tokens, proxies and any HF_HUB_CACHE/HF_HOME removed."""
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith(("HF_", "HUGGING_FACE_")) or k.lower().endswith("_proxy")
                       or k in ("TRANSFORMERS_OFFLINE", "TRANSFORMERS_CACHE"))}
        env.update(HF_ENDPOINT=self.url, HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1,localhost")
        if hf_home is not None:
            env["HF_HOME"] = str(hf_home)
        env.update(extra)
        return env

    def close(self) -> None:
        self._closed.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeHub":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _note(self, method: str, path: str, headers: dict[str, str], status: int) -> None:
        with self._cond:
            self.requests.append(f"{method} {path}")
            self.calls.append(Call(method, path, headers, status))
            self._cond.notify_all()

    def _take(self, table: dict, filename: str, method: str):
        with self._cond:
            pending = table.get(filename)
            if not pending:
                return None
            if table is self._fails:
                for i, (status, only) in enumerate(pending):
                    if only is None or only == method:
                        return pending.pop(i)[0]
                return None
            if method != "GET":
                return None
            return pending.pop(0)

    def _sent(self, filename: str, n: int) -> None:
        with self._cond:
            self.bytes_sent[filename] = self.bytes_sent.get(filename, 0) + n
            self._cond.notify_all()

    def _find(self, path: str) -> tuple[_Repo | None, str, str]:
        """(repo, route, rest) for /api/models/{repo}/{route}/... or /{repo}/{route}/..."""
        api = path.startswith("/api/models/")
        tail = path[len("/api/models/"):] if api else path[1:]
        for repo_id in sorted(self._repos, key=len, reverse=True):
            if tail == repo_id or tail.startswith(repo_id + "/"):
                route, _, rest = tail[len(repo_id) + 1:].partition("/")
                return self._repos[repo_id], route, rest
        parts = tail.split("/")
        return None, parts[2] if len(parts) > 2 else "", "/".join(parts[3:])


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer has a Content-Length

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    # ---------------------------------------------------------------- answers
    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                content_type: str = "application/json") -> None:
        self.fake._note(self.command, self.path, dict(self.headers.items()), status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._answer(status, json.dumps(obj).encode())

    def _error(self, status: int, code: str | None = None, message: str = "", commit: str | None = None) -> None:
        headers = {}
        if code:
            headers["X-Error-Code"] = code
        if message:
            headers["X-Error-Message"] = message
        if commit:
            headers["X-Repo-Commit"] = commit
        self._answer(status, json.dumps({"error": message or code or "error"}).encode(), headers)

    # ---------------------------------------------------------------- routing
    def _route(self, method: str) -> None:
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
            url = urlsplit(self.path)
            path = unquote(url.path)
            repo, route, rest = self.fake._find(path)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            if path.startswith("/api/models/"):
                rev, _, sub = rest.partition("/")
                if route in ("", "revision") and method == "GET":
                    return self._repo_info(repo, rev or "main")
                if not self._known_rev(rev):
                    return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                if route == "tree" and method == "GET":
                    recursive = parse_qs(url.query).get("recursive", ["false"])[0].lower() == "true"
                    return self._json(self._tree(repo, sub.strip("/"), recursive))
                if route == "paths-info" and method == "POST":
                    paths = parse_qs(body.decode()).get("paths", [])
                    return self._json([e for e in self._tree(repo, "", True) if e["path"] in paths])
                return self._error(404, message="Not found")
            if route == "resolve" and method in ("GET", "HEAD"):
                rev, _, filename = rest.partition("/")
                return self._resolve(repo, rev, filename)
            return self._error(404, message="Not found")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _known_rev(self, rev: str) -> bool:
        return rev in ("main", "") or bool(re.fullmatch(r"[0-9a-f]{40}", rev))

    def _repo_info(self, repo: _Repo, rev: str) -> None:
        if rev not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        self._json({
            "_id": repo.sha[:24], "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.sha,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "private": False, "gated": False, "disabled": False, "tags": [],
            "lastModified": "2025-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": p} for p in repo.files],
        })

    def _tree(self, repo: _Repo, under: str, recursive: bool) -> list[dict]:
        prefix = under + "/" if under else ""
        entries, folders = [], set()
        for p, f in repo.files.items():
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entry = {"type": "file", "oid": f.git_sha1, "size": len(f.data), "path": p}
                if f.lfs:
                    entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
                entries.append(entry)
        dirs = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                for d in sorted(folders)]
        return dirs + entries

    def _resolve(self, repo: _Repo, rev: str, filename: str) -> None:
        if rev not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        f = repo.files.get(filename)
        if f is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist", commit=repo.sha)
        status = self.fake._take(self.fake._fails, filename, self.command)
        if status is not None:
            return self._error(status, message=f"fake failure of {filename}")

        size = len(f.data)
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            m = _RANGE.match(rng.strip())
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:  # bytes=-N: the last N bytes
                    start = max(size - int(m.group(2)), 0)
                if start >= size or start > end:
                    return self._answer(416, b"", {"Content-Range": f"bytes */{size}"})
                status = 206
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes"}
        if f.lfs:
            headers.update({"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(size)})
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        body = f.data[start:end + 1]

        cut = self.fake._take(self.fake._cuts, filename, self.command)
        self.fake._note(self.command, self.path, dict(self.headers.items()), status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        if cut is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut is not None:
            body = body[:cut]
        self._send_body(filename, body)
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True  # the client sees the body end short of Content-Length

    def _send_body(self, filename: str, body: bytes) -> None:
        sent = 0
        while sent < len(body):
            if self.fake._closed.is_set():
                self.close_connection = True
                return
            bps = self.fake.bytes_per_second
            step = len(body) - sent if not bps else max(1, min(16 * 1024, int(bps / 20)))
            piece = body[sent:sent + step]
            self.fake._sent(filename, len(piece))  # counted before the write: never below what arrived
            self.wfile.write(piece)
            sent += len(piece)
            if bps:
                self.fake._closed.wait(len(piece) / bps)
