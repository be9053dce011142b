"""A loopback reverse proxy that injects faults between the app and a real predictions server.

Requests are forwarded to `upstream` unchanged (the Host header too, so the server's `urls` point
back at the proxy) and responses are streamed back chunk by chunk, so SSE streams arrive live.
A test sets `proxy.faults[(method, path_regex)] = reply` to answer a request itself instead
(the regex must match the whole path; the first matching entry wins):
any `fault_server` reply (`reply`, `problem`, `json_reply`, `sse`), or one of the faults below.
`refuse()` stops listening on the port (connections are refused) until `listen()`.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

Reply = Callable[[BaseHTTPRequestHandler], None]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer",
              "upgrade", "proxy-authorization", "proxy-authenticate"}


@dataclass
class Seen:
    method: str
    path: str
    status: int | None = None
    faulted: bool = False
    body: bytes = field(default=b"", repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)


class FaultProxy:
    """Forwards to `upstream`, except where a fault is set; records every request it saw."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.faults: dict[tuple[str, str], Reply] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()  # ends every stall early (on close)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.listen()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def listen(self) -> None:
        """(Re)open the listening socket on the same port."""
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)
        self._thread.start()

    def refuse(self) -> None:
        """Close the listening socket: new connections to the port are refused."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def close(self) -> None:
        self.release.set()
        self.refuse()

    def reset(self) -> None:
        self.faults.clear()
        with self._lock:
            self.seen.clear()

    def requests(self, method: str, pattern: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and re.fullmatch(pattern, s.path.split("?")[0])]

    # ------------------------------------------------------------------ faults

    def stall(self, seconds: float = 10.0) -> Reply:
        """Accept the request and send nothing for `seconds` (or until close)."""
        def send(handler: BaseHTTPRequestHandler) -> None:
            self.release.wait(seconds)
            handler.close_connection = True
        return send

    def drop_stream_after(self, events: int) -> Reply:
        """Forward the SSE stream, but cut the connection after `events` complete events."""
        def send(handler: BaseHTTPRequestHandler) -> None:
            self._forward(handler, handler._body, cut_after_events=events)
        return send

    def stall_stream_after(self, events: int, seconds: float) -> Reply:
        """Forward `events` SSE events, then go silent (connection open) for `seconds`."""
        def send(handler: BaseHTTPRequestHandler) -> None:
            self._forward(handler, handler._body, cut_after_events=events, stall=seconds)
        return send

    def forward_then(self, after: Callable[[], None]) -> Reply:
        """Forward normally, then run `after` (e.g. to switch on the next fault)."""
        def send(handler: BaseHTTPRequestHandler) -> None:
            self._forward(handler, handler._body)
            after()
        return send

    # ------------------------------------------------------------------ forwarding

    def _fault_for(self, method: str, path: str) -> Reply | None:
        for (m, pattern), reply in list(self.faults.items()):
            if m == method and re.fullmatch(pattern, path.split("?")[0]):
                return reply
        return None

    def once(self, method: str, pattern: str, reply: Reply) -> None:
        """A fault for the next matching request only; later ones are forwarded."""
        def send(handler: BaseHTTPRequestHandler) -> None:
            self.faults.pop((method, pattern), None)
            reply(handler)
        self.faults[(method, pattern)] = send

    def _forward(self, handler: BaseHTTPRequestHandler, body: bytes, *, cut_after_events: int | None = None,
                 stall: float = 0.0) -> None:
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(handler.command, handler.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            handler._status = response.status
            handler.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() not in ("date", "server"):
                    handler.send_header(name, value)
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            events = 0
            while chunk := response.read1(65536):
                if cut_after_events is not None:
                    # Pass complete events only, then cut (or stall) after the requested number.
                    handler._pending = getattr(handler, "_pending", b"") + chunk
                    while b"\n\n" in handler._pending and events < cut_after_events:
                        event, handler._pending = handler._pending.split(b"\n\n", 1)
                        handler.wfile.write(event + b"\n\n")
                        handler.wfile.flush()
                        if not event.startswith(b":"):  # heartbeats are not events
                            events += 1
                    if events >= cut_after_events:
                        if stall:
                            self.release.wait(stall)
                        _abort(handler)
                        return
                    continue
                handler.wfile.write(chunk)
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True
        finally:
            upstream.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: a fault never leaks into the next

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_DELETE(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._body = self.rfile.read(length) if length else b""
                self._status = None
                fault = proxy._fault_for(self.command, self.path)
                seen = Seen(self.command, self.path, faulted=fault is not None, body=self._body,
                            headers=dict(self.headers))
                with proxy._lock:
                    proxy.seen.append(seen)
                if fault is None:
                    proxy._forward(self, self._body)
                else:
                    fault(self)
                    self.close_connection = True
                seen.status = self._status

            def send_response(self, code, message=None):  # noqa: D401 - records the status
                self._status = code
                super().send_response(code, message)

            def log_message(self, *args) -> None:
                pass

        return Handler


def _abort(handler: BaseHTTPRequestHandler) -> None:
    """End the connection mid-stream (no `done` event), as a proxy or network hiccup would."""
    handler.close_connection = True
    try:
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
