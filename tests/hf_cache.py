"""Lay out a model folder as the Hugging Face cache holds a downloaded repository, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny-smolvlm"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache: str | Path, repo: str, folder: str | Path = FIXTURE, *,
               skip: tuple[str, ...] = ()) -> Path:
    """Copy `folder`'s files into `cache` (an HF_HUB_CACHE) as `repo` at one commit; return the
    snapshot folder. Files named in `skip` are left out, like a download of other precisions."""
    base = Path(cache) / f"models--{repo.replace('/', '--')}"
    snapshot = base / "snapshots" / COMMIT
    for source in Path(folder).rglob("*"):
        relative = source.relative_to(folder).as_posix()
        if source.is_file() and relative not in skip:
            target = snapshot / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(COMMIT)
    return snapshot
