"""The embedded Replicate-compatible predictions server (`python -m minigpt4_ui.server`).

The app talks HTTP to it exactly as to api.replicate.com; see reference/replicate-api.md.
"""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from typing import AsyncIterator

import uvicorn
from fastapi import FastAPI

from .predictors import Predictor
from .predictors.builtin import BuiltinPredictor
from .routes import build_app
from .runner import Runner
from .store import Store

__all__ = ["RunningServer", "create_app", "start_background"]


def create_app(*, token: str | None = None, db_path: str = ":memory:",
               tokens_per_second: float | None = None, page_size: int = 100,
               heartbeat_seconds: float = 15.0, predictor: Predictor | None = None) -> FastAPI:
    """A ready app with its own store and runner; both close when the app's lifespan ends."""
    store = Store(db_path)
    runner = Runner(store=store, predictor=predictor or BuiltinPredictor(),
                    tokens_per_second=tokens_per_second)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runner.close()
        store.close()

    app = build_app(store=store, runner=runner, token=token, page_size=page_size,
                    heartbeat_seconds=heartbeat_seconds, lifespan=lifespan)
    app.state.runner = runner
    return app


def _uvicorn_config(app: FastAPI, *, host: str, port: int) -> uvicorn.Config:
    """Quiet uvicorn settings shared by the background server and the command line."""
    # No access log: request lines are noise here, and nothing sensitive should reach logs.
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          timeout_graceful_shutdown=3)


class RunningServer:
    """A server running on a daemon thread; `url` is where it listens; `close()` stops it."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, runner: Runner):
        self._server = server
        self._thread = thread
        self._runner = runner
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"

    def close(self) -> None:
        """Cancel running predictions (so open streams end), stop uvicorn, join its thread."""
        self._runner.close()
        self._server.should_exit = True
        self._thread.join()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_background(host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                     db_path: str = ":memory:", tokens_per_second: float | None = None,
                     page_size: int = 100, heartbeat_seconds: float = 15.0,
                     predictor: Predictor | None = None, start_timeout: float = 10.0) -> RunningServer:
    """Start the server on a daemon thread and return once it accepts connections."""
    app = create_app(token=token, db_path=db_path, tokens_per_second=tokens_per_second,
                     page_size=page_size, heartbeat_seconds=heartbeat_seconds, predictor=predictor)
    server = uvicorn.Server(_uvicorn_config(app, host=host, port=port))
    thread = threading.Thread(target=server.run, name="minigpt4-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the predictions server could not start on {host}:{port}")
        thread.join(0.02)
        start_timeout -= 0.02
        if start_timeout <= 0:
            server.should_exit = True
            raise RuntimeError("the predictions server did not start within the timeout")
    return RunningServer(server, thread, app.state.runner)
