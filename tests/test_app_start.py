"""`python app.py` at start: its options, and settings that cannot work refused in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from .apprunner import ROOT


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    """app.py as a person runs it, without this machine's REPLICATE_/MINIGPT4_/GRADIO_ settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REPLICATE_", "MINIGPT4_", "GRADIO_"))}
    return subprocess.run([sys.executable, "app.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**clean, "MINIGPT4_DOWNLOADS": "0", **env})


def test_help_lists_where_the_app_listens():
    result = _run("--help")
    assert result.returncode == 0
    for option in ("--host ADDRESS", "--port PORT", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        assert option in result.stdout


@pytest.mark.parametrize("args, env, expected", [
    (("--cog", "notaurl"), {},
     "error: --cog (MINIGPT4_COG_URL) must be an http:// or https:// address such as http://127.0.0.1:5000, "
     "got 'notaurl'"),
    (("--cog", "http://127.0.0.1:99999"), {},
     "error: --cog (MINIGPT4_COG_URL): the port of 'http://127.0.0.1:99999' is not a number from 0 to 65535"),
    (("--cog-callback-url", "http://127.0.0.1:0"), {},
     "error: --cog-callback-url (MINIGPT4_COG_CALLBACK_URL) is where a Cog container sends progress: "
     "it needs --cog (MINIGPT4_COG_URL)"),
    ((), {"MINIGPT4_COG_CALLBACK_URL": "http://172.17.0.1:5001"},
     "error: --cog-callback-url (MINIGPT4_COG_CALLBACK_URL) is where a Cog container sends progress: "
     "it needs --cog (MINIGPT4_COG_URL)"),
    (("--cog", "http://127.0.0.1:5000", "--cog-callback-url", "127.0.0.1:5001"), {},
     "error: --cog-callback-url (MINIGPT4_COG_CALLBACK_URL) must be an http:// address such as "
     "http://172.17.0.1:5001, got '127.0.0.1:5001'"),
    ((), {"MINIGPT4_MAX_QUEUE": "lots"}, "error: MINIGPT4_MAX_QUEUE must be a whole number of 0 or more, got 'lots'"),
], ids=["not-a-url", "bad-port", "callback-without-cog", "callback-env-without-cog", "callback-without-scheme",
        "bad-number"])
def test_a_setting_that_cannot_work_is_one_line_and_exit_2(args, env, expected):
    result = _run(*args, **env)
    assert result.returncode == 2
    assert result.stderr.strip() == expected


@pytest.mark.parametrize("how", ["env", "flag"])
def test_a_taken_port_is_said_not_moved(how):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _run("--port", port) if how == "flag" else _run(GRADIO_SERVER_PORT=port)
    named = "--port" if how == "flag" else "GRADIO_SERVER_PORT"
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: cannot listen on 127.0.0.1 port {port} ({named}): Address already in "
                                     "use. Stop what uses it, or choose another port with --port.")
    assert "Running on" not in result.stdout
