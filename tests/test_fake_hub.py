"""tests/fake_hub.py against the installed huggingface_hub: what it asks, resumes, and reports.

huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE when it is imported, so each scenario runs in
a fresh `python -c` with `hub.env(hf_home)`.
"""

from __future__ import annotations

import json
import queue
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.fake_hub import FakeHub

REPO = "owner/tiny-model"
ONNX_SIZE = 300_000
ALLOW = ["*.json", "onnx/a.onnx"]
WANTED = ["config.json", "onnx/a.onnx", "tokenizer.json"]


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    rng = random.Random(4)
    (root / "onnx").mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "tiny"}))
    (root / "tokenizer.json").write_text(json.dumps({"vocab": [f"tok{i}" for i in range(300)]}))
    (root / "README.md").write_text("# tiny\n")
    (root / "onnx" / "a.onnx").write_bytes(rng.randbytes(ONNX_SIZE))
    (root / "onnx" / "b.onnx").write_bytes(rng.randbytes(200_000))
    return root


@pytest.fixture
def hub(repo_dir):
    with FakeHub({REPO: repo_dir}) as running:
        yield running


PRELUDE = """\
import json, sys, types
import huggingface_hub.constants as constants
import huggingface_hub.file_download as file_download
ARGS = json.loads(sys.argv[1])
if ARGS.get("chunk"):
    constants.DOWNLOAD_CHUNK_SIZE = ARGS["chunk"]  # read at call time by http_get
if ARGS.get("no_sleep"):
    file_download.time = types.SimpleNamespace(sleep=lambda s: None)  # http_get's 1 s pause before a retry
from huggingface_hub import snapshot_download, hf_hub_download
def done(**result):
    sys.stdout.write("RESULT " + json.dumps(result) + "\\n")
    sys.stdout.flush()
"""


def run_child(hub: FakeHub, home: Path, body: str, args: dict | None = None, **env) -> dict:
    code = PRELUDE + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args or {})], env=hub.env(home, **env),
                          capture_output=True, text=True, timeout=60)
    results = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and results, f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(results[-1])


SNAPSHOT = """\
try:
    path = snapshot_download(%r, allow_patterns=%r)
    done(path=path)
except Exception as e:
    done(error=type(e).__name__, message=str(e))
""" % (REPO, ALLOW)


def test_snapshot_download_fetches_matching_files_and_offline_finds_them(hub, repo_dir, tmp_path):
    sha = hub.commit(REPO)
    out = run_child(hub, tmp_path, SNAPSHOT)
    snapshot = tmp_path / "hub" / "models--owner--tiny-model" / "snapshots" / sha
    assert out == {"path": str(snapshot)}

    resolve = f"/{REPO}/resolve/{sha}/"
    assert hub.requests[:2] == [f"GET /api/models/{REPO}/revision/main",
                                f"GET /api/models/{REPO}/tree/{sha}?recursive=true&expand=false"]
    assert sorted(hub.requests[2:]) == sorted(
        [f"HEAD {resolve}{f}" for f in WANTED] + [f"GET {resolve}{f}" for f in WANTED])

    files = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    assert files == WANTED
    for f in WANTED:
        assert (snapshot / f).is_symlink()
        assert (snapshot / f).read_bytes() == (repo_dir / f).read_bytes()
    storage = snapshot.parent.parent
    assert (storage / "refs" / "main").read_text() == sha
    assert (storage / "trees" / f"{sha}.json").is_file()
    blobs = sorted(p.name for p in (storage / "blobs").iterdir())
    assert blobs == sorted(hub.file(REPO, f).etag for f in WANTED)  # sha256 for the LFS-sized onnx
    assert hub.file(REPO, "onnx/a.onnx").sha256 in blobs

    # offline: not one request, same folder
    n = len(hub.requests)
    assert run_child(hub, tmp_path, SNAPSHOT, HF_HUB_OFFLINE="1") == {"path": str(snapshot)}
    assert hub.requests[n:] == []

    # online again with a complete cache: only the revision is asked (the tree listing is cached)
    assert run_child(hub, tmp_path, SNAPSHOT) == {"path": str(snapshot)}
    assert hub.requests[n:] == [f"GET /api/models/{REPO}/revision/main"]


def test_hf_hub_download_asks_head_then_get_on_main(hub, repo_dir, tmp_path):
    out = run_child(hub, tmp_path, f"done(path=hf_hub_download({REPO!r}, 'onnx/b.onnx'))")
    sha = hub.commit(REPO)
    assert out["path"].endswith(f"snapshots/{sha}/onnx/b.onnx")
    assert Path(out["path"]).read_bytes() == (repo_dir / "onnx" / "b.onnx").read_bytes()
    assert hub.requests == [f"HEAD /{REPO}/resolve/main/onnx/b.onnx", f"GET /{REPO}/resolve/main/onnx/b.onnx"]
    head = hub.calls[0].headers
    assert head.get("Accept-Encoding") == "identity"
    assert (tmp_path / "hub" / "models--owner--tiny-model" / "refs" / "main").read_text() == sha


def onnx_gets(hub: FakeHub) -> list[tuple[int, str | None]]:
    return [(c.status, c.headers.get("Range")) for c in hub.calls
            if c.method == "GET" and c.path.endswith("/onnx/a.onnx")]


def test_cut_download_is_resumed_with_a_range_request_within_the_same_call(hub, repo_dir, tmp_path):
    hub.cut_after("onnx/a.onnx", 1000)
    # 256-byte writes, so 768 of the 1000 bytes received reach the file before the cut
    out = run_child(hub, tmp_path, SNAPSHOT, {"chunk": 256})
    assert "error" not in out, out  # huggingface_hub retried by itself
    assert onnx_gets(hub) == [(200, None), (206, "bytes=768-")]
    assert (Path(out["path"]) / "onnx" / "a.onnx").read_bytes() == (repo_dir / "onnx" / "a.onnx").read_bytes()
    assert not list(tmp_path.rglob("*.incomplete"))


def test_a_call_that_gives_up_keeps_nothing_and_the_next_starts_over(hub, repo_dir, tmp_path):
    # 100 bytes < one 256-byte write: no try makes progress, so it gives up after 1 + 5 tries
    hub.cut_after("onnx/a.onnx", 100, times=6)
    out = run_child(hub, tmp_path, SNAPSHOT, {"chunk": 256, "no_sleep": True})
    assert out["error"] == "RemoteProtocolError", out
    assert onnx_gets(hub) == [(200, None)] * 6
    assert not list(tmp_path.rglob("*.incomplete"))  # the partial file is deleted, not kept for later

    out = run_child(hub, tmp_path, SNAPSHOT, {"chunk": 256})
    assert "error" not in out, out
    assert onnx_gets(hub)[6:] == [(200, None)]  # whole file again, no Range
    assert (Path(out["path"]) / "onnx" / "a.onnx").read_bytes() == (repo_dir / "onnx" / "a.onnx").read_bytes()


def test_failed_get_raises_at_once_but_failed_head_is_asked_again(hub, tmp_path):
    download = f"""\
try:
    done(path=hf_hub_download({REPO!r}, 'config.json'))
except Exception as e:
    done(error=type(e).__name__)
"""
    hub.fail("config.json", 503)
    assert run_child(hub, tmp_path / "a", download) == {"error": "HfHubHTTPError"}
    assert [(c.method, c.status) for c in hub.calls] == [("HEAD", 200), ("GET", 503)]

    hub.fail("config.json", 500, method="HEAD")
    assert "path" in run_child(hub, tmp_path / "b", download)
    assert [(c.method, c.status) for c in hub.calls[2:]] == [("HEAD", 500), ("HEAD", 200), ("GET", 200)]


def test_api_routes_list_the_repo(hub, tmp_path):
    out = run_child(hub, tmp_path, f"""\
from huggingface_hub import HfApi
api = HfApi()
info = api.model_info({REPO!r})
done(sha=info.sha, siblings=sorted(s.rfilename for s in info.siblings),
     files=sorted(api.list_repo_files({REPO!r})),
     top=sorted(e.path for e in api.list_repo_tree({REPO!r})),
     paths=sorted((p.path, p.size) for p in api.get_paths_info({REPO!r}, ["config.json", "onnx/b.onnx"])))
""")
    every = ["README.md", "config.json", "onnx/a.onnx", "onnx/b.onnx", "tokenizer.json"]
    assert out["sha"] == hub.commit(REPO)
    assert out["siblings"] == out["files"] == every
    assert out["top"] == ["README.md", "config.json", "onnx", "tokenizer.json"]
    assert out["paths"] == [["config.json", len(hub.file(REPO, "config.json").data)], ["onnx/b.onnx", 200_000]]


PROGRESS = """\
import threading
from tqdm.auto import tqdm
LOCK = threading.Lock()
def emit(kind, obj):  # whole lines: the bars are updated from several download threads
    with LOCK:
        sys.stdout.write(kind + " " + json.dumps(obj) + "\\n")
        sys.stdout.flush()
class Recorder(tqdm):
    def __init__(self, *args, **kwargs):
        self.seen = {k: v for k, v in kwargs.items() if k in ("desc", "unit", "total", "initial", "unit_scale")}
        emit("BAR", self.seen)
        super().__init__(*args, **kwargs)
    def update(self, n=1):
        emit("UPDATE", {"desc": self.seen.get("desc"), "n": n})
        return super().update(n)
path = snapshot_download(%r, allow_patterns=%r, tqdm_class=Recorder)
done(path=path)
""" % (REPO, ALLOW)


def test_byte_progress_reaches_tqdm_class_while_a_throttled_file_downloads(hub, tmp_path):
    chunk = 16 * 1024
    hub.bytes_per_second = 100_000  # the onnx would take 3 s
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + PROGRESS, json.dumps({"chunk": chunk})],
                            env=hub.env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)],
                     daemon=True).start()
    events, sent_at_first_chunk = [], None
    deadline = time.monotonic() + 30
    try:
        while True:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                break
            kind, _, payload = line.strip().partition(" ")
            events.append((kind, json.loads(payload)))
            if kind == "UPDATE" and events[-1][1]["n"] == chunk and sent_at_first_chunk is None:
                # a full 16 KiB piece can only be the onnx: the child reports it mid-download
                sent_at_first_chunk = hub.bytes_sent.get("onnx/a.onnx", 0)
                hub.bytes_per_second = None  # let the rest go at full speed
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()

    assert sent_at_first_chunk is not None and chunk <= sent_at_first_chunk < ONNX_SIZE
    bars = [e for k, e in events if k == "BAR"]
    assert bars == [
        {"desc": "Downloading bytes", "total": 0, "initial": 0, "unit": "B", "unit_scale": True},
        {"desc": "Reconstructing (incomplete total...)", "total": 0, "initial": 0, "unit": "B", "unit_scale": True},
        {"desc": "Fetching 3 files", "total": 3},
    ]
    sizes = sum(len(hub.file(REPO, f).data) for f in WANTED)
    updates = {}
    for k, e in events:
        if k == "UPDATE":
            updates.setdefault(e["desc"], []).append(e["n"])
    # both byte bars get every written piece: summing all unit="B" bars counts each byte twice
    assert sum(updates["Reconstructing (incomplete total...)"]) == sizes
    assert sum(updates["Downloading bytes"]) == sizes
    assert updates["Reconstructing (incomplete total...)"].count(chunk) == ONNX_SIZE // chunk
    assert updates["Fetching 3 files"] == [1, 1, 1]
