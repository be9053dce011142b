"""A scripted loopback HTTP server for testing the client against faults real servers produce."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Reply = Callable[[BaseHTTPRequestHandler], None]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def reply(status: int, body: bytes | str = b"", *, content_type: str = "application/json",
          headers: dict[str, str] | None = None) -> Reply:
    """A plain response with a fixed body."""
    data = body.encode() if isinstance(body, str) else body

    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    return send


def json_reply(status: int, obj, *, headers: dict[str, str] | None = None,
               content_type: str = "application/json") -> Reply:
    return reply(status, json.dumps(obj), content_type=content_type, headers=headers)


def problem(status: int, *, headers: dict[str, str] | None = None, **fields) -> Reply:
    """An RFC 7807 problem+json error like the API's."""
    return json_reply(status, {"status": status, **fields}, headers=headers,
                      content_type="application/problem+json")


def sse(*parts: bytes | str) -> Reply:
    """An event stream written part by part, flushed each time; the connection then closes."""
    def send(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        for part in parts:
            handler.wfile.write(part.encode() if isinstance(part, str) else part)
            handler.wfile.flush()
    return send


class FaultServer:
    """Answers each (method, path) with its scripted replies in order, repeating the last one."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[Request] = []
        self.release = threading.Event()  # ends every stalled reply
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def script(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, path)] = list(replies)

    def stall(self, handler: BaseHTTPRequestHandler) -> None:
        """A reply that never comes (until the server closes)."""
        self.release.wait(10)

    def seen(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def start(self) -> "FaultServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                server.requests.append(Request(self.command, self.path, dict(self.headers), body))
                replies = server.routes.get((self.command, self.path))
                if not replies:
                    reply(599, f"no script for {self.command} {self.path}", content_type="text/plain")(self)
                    return
                (replies.pop(0) if len(replies) > 1 else replies[0])(self)

            def log_message(self, *args) -> None:
                pass

        return Handler
