"""Start a real Cog server (coglet, from `cog==0.23.1`) with a MiniGPT-4 stand-in, no Docker.

Like `docker run r8.im/…`, it serves the Cog HTTP API on a loopback port, validating inputs
against the OpenAPI document at `.cog/openapi_schema.json` (written here from MiniGPT-4's schema,
as `cog build` would) and running `tests/cog_predictors/minigpt4.py` in a worker process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

from minigpt4_ui.shared import schema

from .apprunner import free_port

STAND_INS = Path(__file__).resolve().parent / "cog_predictors" / "minigpt4.py"
OUTPUTS = {
    "string": {"type": "string", "title": "Output"},
    "iterator": {"type": "array", "items": {"type": "string"}, "title": "Output",
                 "x-cog-array-type": "iterator", "x-cog-array-display": "concatenate"},
}
CLASSES = {"string": "StringPredictor", "iterator": "IteratorPredictor"}


def openapi_document(kind: str, input_schema: dict | None = None) -> dict:
    """The document `cog build` writes for a MiniGPT-4 predictor with this kind of output."""
    return {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": {},
            "components": {"schemas": {"Input": input_schema or schema.openapi_input(),
                                       "Output": OUTPUTS[kind]}}}


class CogServer:
    """`python -m cog.server.http` in a subprocess, with its working folder and log."""

    def __init__(self, kind: str, folder: Path, *, env: dict[str, str] | None = None,
                 input_schema: dict | None = None, port: int | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".cog").mkdir(exist_ok=True)
        (folder / ".cog" / "openapi_schema.json").write_text(
            json.dumps(openapi_document(kind, input_schema)))
        shutil.copy(STAND_INS, folder / "predict.py")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.record_file = folder / "record.jsonl"
        self.log_path = folder / "cog.log"
        # The worker finds coglet through PATH, so this interpreter's bin comes first.
        bin_dir = os.path.dirname(sys.executable)
        full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    "PORT": str(self.port), "COG_PREDICT_TYPE_STUB": f"predict.py:{CLASSES[kind]}",
                    "RECORD_FILE": str(self.record_file), **(env or {})}
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "cog.server.http", "--host", "127.0.0.1"],
                                        cwd=folder, env=full_env, stdout=self._log,
                                        stderr=subprocess.STDOUT)

    def health(self) -> dict:
        """The server's /health-check answer ({} while it is not listening yet)."""
        try:
            return requests.get(f"{self.url}/health-check", timeout=2).json()
        except requests.ConnectionError:
            return {}

    def wait_for(self, *statuses: str, timeout: float = 30) -> dict:
        """Poll /health-check until its status is one of `statuses`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Cog server exited:\n{self.log_path.read_text()}")
            health = self.health()
            if health.get("status") in statuses:
                return health
            time.sleep(0.05)  # polling the server's own status, bounded by the deadline
        raise TimeoutError(f"the Cog server never reached {statuses}:\n{self.log_path.read_text()}")

    def cancellations(self) -> list[str]:
        """Prompts of the predictions that saw their own cancellation inside the container."""
        if not self.record_file.exists():
            return []
        return [json.loads(line)["canceled"] for line in self.record_file.read_text().splitlines()]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def __enter__(self) -> "CogServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
