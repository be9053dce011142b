"""Start `python app.py` on a free loopback port, as a user would, and stop it afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningApp:
    """`python app.py` in a subprocess; its output is kept so tests can search it."""

    def __init__(self, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REPLICATE_", "MINIGPT4_"))}
        # A cache folder of its own: Gradio names cached files by content, and an app that exits
        # deletes the files it cached, which would pull them from under another app sharing the folder.
        full_env.update({"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(self.port),
                         "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1",
                         "GRADIO_TEMP_DIR": str(log_path.parent / f"gradio-{self.port}"), **env})
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "app.py", *args], cwd=ROOT, env=full_env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_until_ready(timeout=90)

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "gradio_api/info", timeout=2).ok:
                    return
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or a loaded machine
                pass
            time.sleep(0.2)  # polling for readiness, bounded by the deadline
        self.close()
        raise TimeoutError(f"app.py did not answer within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
