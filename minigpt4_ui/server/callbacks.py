"""Receives a Cog container's webhooks: the only way it reports an async prediction's progress.

The receiver listens where the container can reach it (a container cannot call its host's
loopback), under a random path, so only the container we gave the URL to can post to it. Each
prediction gets its own URL and an inbox of the payloads that arrived for it.

Anyone who can reach the port can connect, so the path is checked before a byte of the body is
read, a body is read only up to what its prediction's webhook can legitimately carry, every read
waits at most READ_TIMEOUT_S, and at most MAX_CONNECTIONS connections are served at once (one
thread each); more are closed as they arrive.
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import secrets
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A webhook carries the whole output and logs so far and, from Cog's older Python server, the
# prediction's input echoed back, image data URI included. So a body may be as large as the
# request we sent plus this: a MiniGPT-4 answer (a few thousand tokens, even as a JSON list of
# \u-escaped chunks) stays under 1 MB, and the rest is room for its logs.
ANSWER_BYTES = 4_000_000
READ_TIMEOUT_S = 10.0  # the container sends a webhook at once; a silent connection is not it
MAX_CONNECTIONS = 32  # a container sends one webhook at a time per running prediction
logger = logging.getLogger(__name__)


class CallbackReceiver:
    """An HTTP server for webhooks, bound to the host and port of `callback_url`.

    Port 0 picks a free port. A host that is not an address of this machine (a NAT or proxy
    address the container calls) makes the receiver listen on all interfaces at that port.
    """

    def __init__(self, callback_url: str, *, read_timeout_s: float = READ_TIMEOUT_S):
        parts = urllib.parse.urlsplit(callback_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the callback URL must look like http://HOST:PORT, got {callback_url!r}")
        self._secret = secrets.token_urlsafe(24)
        self._inboxes: dict[str, tuple[queue.Queue, int]] = {}
        self._lock = threading.Lock()
        handler = _handler(self, read_timeout_s)
        try:
            self._server = _BoundedServer((parts.hostname, parts.port or 0), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                raise
            logger.info("%s is not an address of this machine; listening on all interfaces",
                        parts.hostname)
            self._server = _BoundedServer(("", parts.port or 0), handler)
        port = self._server.server_address[1]
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        self.base_url = f"http://{host}:{port}/{self._secret}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="cog-callbacks")
        self._thread.start()

    def open(self, prediction_id: str, *, sent_bytes: int) -> tuple[str, queue.Queue]:
        """The webhook URL for one container prediction, and the inbox its payloads arrive in.

        `sent_bytes`: the size of the request that started it, which a webhook may echo.
        """
        inbox: queue.Queue = queue.Queue()
        with self._lock:
            self._inboxes[prediction_id] = (inbox, sent_bytes + ANSWER_BYTES)
        return f"{self.base_url}/{urllib.parse.quote(prediction_id)}", inbox

    def discard(self, prediction_id: str) -> None:
        """Stop collecting payloads for a prediction (late ones are acknowledged and dropped)."""
        with self._lock:
            self._inboxes.pop(prediction_id, None)

    def ours(self, path: str) -> bool:
        """Whether `path` is under this receiver's secret path."""
        # As bytes: compare_digest refuses str with non-ASCII characters, which a path may have.
        return secrets.compare_digest(path.lstrip("/").partition("/")[0].encode(),
                                      self._secret.encode())

    def inbox(self, path: str) -> tuple[queue.Queue, int] | None:
        """The inbox of the prediction one of our paths names, and the largest body it takes;
        None once that prediction is no longer collected."""
        prediction_id = path.lstrip("/").partition("/")[2]
        with self._lock:
            return self._inboxes.get(urllib.parse.unquote(prediction_id))

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS at once; others are closed unserved."""

    daemon_threads = True
    # socketserver's backlog of 5 left a flood's connections in SYN retries for seconds, and the
    # container's webhook with them; accepted, those over the limit are closed at once.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started, so none will give the slot back
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        # A caller that hangs up before its answer is no reason for a traceback on the console.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _handler(receiver: CallbackReceiver, read_timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = read_timeout_s  # http.server sets it on the socket: every read waits this long

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            # Answers end the connection (HTTP/1.0), so an unread body is never parsed as a request.
            if not receiver.ours(self.path):
                self._answer(404)
                return
            length = self.headers.get("content-length", "")
            # Checked as text: int() refuses thousands of digits and takes non-ASCII ones.
            if not (length.isascii() and length.isdigit() and len(length) <= 12):
                self._answer(411)
                return
            route = receiver.inbox(self.path)
            if route is None:
                self._answer(200)  # a late webhook: acknowledged, not read
                return
            inbox, limit = route
            if int(length) > limit:
                self._answer(413)
                return
            # A read that times out raises, which ends the connection (handle_error keeps quiet).
            body = self.rfile.read(int(length))
            if len(body) < int(length):  # the sender hung up
                return
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):
                payload = None
            if isinstance(payload, dict):
                inbox.put(payload)
            else:
                logger.warning("ignored a webhook that is not a JSON object")
            self._answer(200)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass  # a line per webhook is noise

    return Handler
