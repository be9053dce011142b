"""Getting a SmolVLM's ONNX files: from a folder, the Hugging Face cache, or a download.

`ModelWeights(repo, precision).start()` finds out on a thread where the files are and, when they
are neither in a folder nor in the cache, downloads only those this precision needs (about 265 MB
for SmolVLM-256M int8) into the standard Hugging Face cache, with tqdm's bar in the terminal.
`status()` says at any moment what is happening in words and bytes, for the app's banner and the
logs of a question that waits.

- Later starts find the files in the cache and touch no network (`HF_HUB_OFFLINE=1` is honoured,
  and a complete cache is used without asking the Hub anything).
- No cache and no network: the Hub is asked once with a 5 s deadline, and the state becomes
  `unavailable` with the reason, so the built-in stand-in answers instead.
- A download that breaks resumes: huggingface_hub asks again for the rest of a file (a Range
  request) by itself, and a failed call is tried again here, keeping the files already complete.
  If it still fails, the state says so; the next start tries again.
- `downloads=False` (the host's `--no-download`) never contacts the Hub.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from ...shared.facts import PRECISIONS, SMOLVLM as DEFAULT_REPO
from .onnx_engine import DEFAULT_PRECISION, onnx_files

log = logging.getLogger(__name__)

# Besides the sessions: config, generation config, processor, tokenizer and chat template.
SMALL_FILES = ("*.json", "*.jinja")
PROBE_TIMEOUT_S = 5.0  # how long the Hub gets to answer before the stand-in takes over
DOWNLOAD_TRIES = 3

CHECKING, DOWNLOADING, READY, UNAVAILABLE = "checking", "downloading", "ready", "unavailable"


@dataclass(frozen=True)
class WeightsStatus:
    """Where the model's files are: `state` is one of checking, downloading, ready, unavailable."""

    state: str
    detail: str = ""  # why it is unavailable, or what is being downloaded
    done_bytes: int = 0
    total_bytes: int = 0
    folder: str | None = None

    @property
    def settled(self) -> bool:
        return self.state in (READY, UNAVAILABLE)

    def progress(self) -> str:
        """"120 of 265 MB" while downloading, else ""."""
        if self.state != DOWNLOADING or not self.total_bytes:
            return ""
        digits = 1 if self.total_bytes < 10e6 else 0
        return f"{self.done_bytes / 1e6:.{digits}f} of {self.total_bytes / 1e6:.{digits}f} MB"


class ModelWeights:
    """One SmolVLM repository (or folder) at one precision; see the module docstring."""

    def __init__(self, repo: str = DEFAULT_REPO, precision: str = DEFAULT_PRECISION, *,
                 downloads: bool = True, revision: str | None = None):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.repo = repo
        self.precision = precision
        self.downloads = downloads
        self.revision = revision
        self.files = onnx_files(precision)
        self._status = WeightsStatus(CHECKING, f"looking for {repo}")
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        """The model's short name, e.g. SmolVLM-256M-Instruct."""
        return Path(self.repo.rstrip("/")).name

    def start(self) -> "ModelWeights":
        """Begin finding (or downloading) the files on a daemon thread; returns at once."""
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="model-weights", daemon=True)
                self._thread.start()
        return self

    def status(self) -> WeightsStatus:
        with self._changed:
            return self._status

    def wait(self, timeout: float | None = None) -> WeightsStatus:
        """The status once it changes (or is settled), or after `timeout` seconds."""
        with self._changed:
            if not self._status.settled:
                self._changed.wait(timeout)
            return self._status

    def _set(self, status: WeightsStatus) -> None:
        with self._changed:
            self._status = status
            self._changed.notify_all()

    def _run(self) -> None:
        try:
            status = self._find()
        except Exception as exc:  # noqa: BLE001 - the stand-in must answer, whatever went wrong
            log.exception("could not get %s", self.repo)
            status = WeightsStatus(UNAVAILABLE, f"{type(exc).__name__}: {exc}")
        if status.state == UNAVAILABLE:  # the host reads why in the terminal; visitors never see it
            log.warning("%s; the built-in stand-in answers instead", status.detail)
        self._set(status)

    def _find(self) -> WeightsStatus:
        folder = Path(self.repo).expanduser()
        if folder.is_dir():
            missing = [f for f in ("config.json", *self.files) if not (folder / f).is_file()]
            if missing:
                return WeightsStatus(UNAVAILABLE, f"the folder {folder} has no {', '.join(missing)}")
            return WeightsStatus(READY, folder=str(folder.resolve()))
        cached = self._cached()
        if cached:
            return WeightsStatus(READY, folder=cached)
        from huggingface_hub import constants

        if not self.downloads:
            return WeightsStatus(UNAVAILABLE, f"{self.repo} ({self.precision}) is not in the Hugging "
                                 f"Face cache ({constants.HF_HUB_CACHE}) and downloads are off")
        if constants.HF_HUB_OFFLINE:
            return WeightsStatus(UNAVAILABLE, f"{self.repo} ({self.precision}) is not in the Hugging "
                                 f"Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set")
        return self._download()

    def _patterns(self) -> list[str]:
        return [*SMALL_FILES, *self.files]

    def _cached(self) -> str | None:
        """The snapshot folder if every needed file is in the cache, else None (no network)."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            folder = snapshot_download(self.repo, revision=self.revision, allow_patterns=self._patterns(),
                                       local_files_only=True)
        except (LocalEntryNotFoundError, OSError, ValueError):
            return None
        # A snapshot can exist with a file missing (an earlier, other precision): check each.
        needed = ("config.json", *self.files)
        return folder if all((Path(folder) / f).is_file() for f in needed) else None

    def _download(self) -> WeightsStatus:
        from huggingface_hub import snapshot_download

        # huggingface_hub's first request has no timeout (a silent network would hang it for
        # good), so the plan is asked for on a thread of its own with our deadline.
        asked: dict = {}

        def ask() -> None:
            try:
                asked["plan"] = snapshot_download(self.repo, revision=self.revision, dry_run=True,
                                                  allow_patterns=self._patterns(),
                                                  etag_timeout=PROBE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - offline, DNS, refused, 404: "not here"
                asked["error"] = exc

        probe = threading.Thread(target=ask, name="model-weights-probe", daemon=True)
        probe.start()
        probe.join(PROBE_TIMEOUT_S)
        if "plan" not in asked:
            why = _short(asked["error"]) if "error" in asked else f"no answer within {PROBE_TIMEOUT_S:g} s"
            return WeightsStatus(UNAVAILABLE, f"{self.repo} is not in the Hugging Face cache and "
                                 f"the Hub could not be reached ({why})")
        plan = asked["plan"]
        total = sum(getattr(f, "file_size", 0) or 0 for f in plan)
        fetched = sum(getattr(f, "file_size", 0) or 0 for f in plan if not getattr(f, "will_download", True))
        counter = _ByteCounter(lambda done: self._set(WeightsStatus(
            DOWNLOADING, f"downloading {self.repo} ({self.precision})",
            done_bytes=min(total, fetched + done), total_bytes=total)))
        counter.report(0)
        error: Exception | None = None
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            try:
                folder = snapshot_download(self.repo, revision=self.revision,
                                           allow_patterns=self._patterns(),
                                           tqdm_class=counter.tqdm_class())
                return WeightsStatus(READY, folder=folder, done_bytes=total, total_bytes=total)
            except Exception as exc:  # noqa: BLE001 - retried, then said in words
                error = exc
                log.warning("downloading %s failed (try %d of %d): %s", self.repo, attempt,
                            DOWNLOAD_TRIES, _short(exc))
        return WeightsStatus(UNAVAILABLE, f"downloading {self.repo} failed {DOWNLOAD_TRIES} times "
                             f"({_short(error)}); the next start tries again, keeping the files "
                             "that were complete")


class _ByteCounter:
    """Adds up the bytes written to the cache, across files.

    snapshot_download makes two byte bars, one for bytes received ("Downloading bytes") and one
    for bytes written ("Reconstructing …"), and updates both per 10 MiB piece: counting one of
    them counts each byte once (tests/fake_hub.py has the details).
    """

    def __init__(self, report):
        self.report_to = report
        self._lock = threading.Lock()
        self._done = 0

    def report(self, delta: int) -> None:
        with self._lock:
            self._done += delta
            done = self._done
        self.report_to(done)

    def tqdm_class(self):
        from tqdm.auto import tqdm

        counter = self

        class CountingBar(tqdm):
            """tqdm's own bar (so the terminal shows it), which also counts downloaded bytes."""

            def __init__(self, *args, **kwargs):
                self.counts = str(kwargs.get("desc", "")).startswith("Reconstructing")
                super().__init__(*args, **kwargs)

            def update(self, n=1):
                if self.counts and n:
                    counter.report(int(n))
                return super().update(n)

        return CountingBar


def _short(exc: BaseException | None) -> str:
    text = f"{type(exc).__name__}: {exc}" if exc else "unknown error"
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."

