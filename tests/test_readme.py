"""The README's and the docs' shell commands run as written.

Every ```bash block in README.md and docs/*.md says, in the comment line above it, how it is
checked: `<!-- check: serves -->` runs its commands in order, each either ending with exit status 0
or serving HTTP on its port (`--port N`, else the app's `GRADIO_SERVER_PORT`), then stops them;
`<!-- check: no, WHY -->` is not run, for the reason given (Docker, a GPU, the test command itself).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from .apprunner import free_port

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- check: (?P<check>[^>]*?) -->\n)?```bash\n(?P<body>.*?)```", re.S)
START_S = 120  # a server's first answer, on a busy machine


def blocks() -> list[tuple[str, str, str]]:
    """Every bash block: (where, how it is checked, its text)."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", match["check"] or "", match["body"]))
    return found


def commands(body: str) -> list[str]:
    """A block's commands: its lines, with `\\` continuations joined and a trailing `&` (a server
    left running while the next line starts) dropped, since each runs on its own here anyway."""
    joined = body.replace("\\\n", " ")
    return [line.strip().removesuffix("&").strip() for line in joined.splitlines() if line.strip()]


def test_every_block_says_how_it_is_checked():
    unmarked = [where for where, check, _ in blocks() if check != "serves" and not check.startswith("no, ")]
    assert not unmarked, f"bash blocks without <!-- check: serves --> or <!-- check: no, WHY -->: {unmarked}"


@pytest.mark.parametrize("where, body", [(where, body) for where, check, body in blocks() if check == "serves"],
                         ids=lambda value: value if ":" in value else "")
def test_the_commands_run_as_written(where, body, tmp_path):
    env = {**os.environ, "GRADIO_SERVER_PORT": str(free_port()), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "GRADIO_TEMP_DIR": str(tmp_path / "gradio")}
    started = []
    try:
        for command in commands(body):
            log = tmp_path / f"{len(started)}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(["bash", "-c", command], cwd=ROOT, env=env, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            started.append(process)
            port = re.search(r"--port (\d+)", command)
            url = f"http://127.0.0.1:{port[1] if port else env['GRADIO_SERVER_PORT']}/"
            _ends_well_or_serves(process, url, serves_page="app.py" in command, log=log, where=where)
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


def _ends_well_or_serves(process: subprocess.Popen, url: str, *, serves_page: bool, log: Path, where: str) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            assert process.returncode == 0, f"{where}: {process.args[-1]!r} failed:\n{log.read_text()[-3000:]}"
            return
        try:
            answer = requests.get(url, timeout=5)
        except requests.ConnectionError:
            time.sleep(0.2)  # not listening yet: polled, not slept on blindly
            continue
        if serves_page:
            assert answer.status_code == 200 and "MiniGPT-4 Studio" in answer.text, f"{where}: {url}"
        return
    raise AssertionError(f"{where}: {process.args[-1]!r} neither ended nor served {url} in {START_S} s:\n"
                         f"{log.read_text()[-3000:]}")
