"""Receives a Cog container's webhooks: the only way it reports an async prediction's progress.

The receiver listens where the container can reach it (a container cannot call its host's
loopback), under a random path, so only the container we gave the URL to can post to it. Each
prediction gets its own URL and an inbox of the payloads that arrived for it.
"""

from __future__ import annotations

import errno
import json
import logging
import queue
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY_BYTES = 64_000_000  # a webhook carries the whole output so far
logger = logging.getLogger(__name__)


class CallbackReceiver:
    """An HTTP server for webhooks, bound to the host and port of `callback_url`.

    Port 0 picks a free port. A host that is not an address of this machine (a NAT or proxy
    address the container calls) makes the receiver listen on all interfaces at that port.
    """

    def __init__(self, callback_url: str):
        parts = urllib.parse.urlsplit(callback_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the callback URL must look like http://HOST:PORT, got {callback_url!r}")
        self._secret = secrets.token_urlsafe(24)
        self._inboxes: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        handler = _handler(self)
        try:
            self._server = ThreadingHTTPServer((parts.hostname, parts.port or 0), handler)
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                raise
            logger.info("%s is not an address of this machine; listening on all interfaces",
                        parts.hostname)
            self._server = ThreadingHTTPServer(("", parts.port or 0), handler)
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        self.base_url = f"http://{host}:{port}/{self._secret}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="cog-callbacks")
        self._thread.start()

    def open(self, prediction_id: str) -> tuple[str, queue.Queue]:
        """The webhook URL for one container prediction, and the inbox its payloads arrive in."""
        inbox: queue.Queue = queue.Queue()
        with self._lock:
            self._inboxes[prediction_id] = inbox
        return f"{self.base_url}/{urllib.parse.quote(prediction_id)}", inbox

    def discard(self, prediction_id: str) -> None:
        """Stop collecting payloads for a prediction (late ones are acknowledged and dropped)."""
        with self._lock:
            self._inboxes.pop(prediction_id, None)

    def deliver(self, path: str, body: bytes) -> bool:
        """File one posted payload; False if the path is not one of ours."""
        secret, _, prediction_id = path.lstrip("/").partition("/")
        if not secrets.compare_digest(secret, self._secret):
            return False
        with self._lock:
            inbox = self._inboxes.get(urllib.parse.unquote(prediction_id))
        if inbox is not None:
            try:
                inbox.put(json.loads(body))
            except ValueError:
                logger.warning("ignored a webhook that is not JSON")
        return True

    def close(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()


def _handler(receiver: CallbackReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                self.send_error(413)
                return
            found = receiver.deliver(self.path, self.rfile.read(length))
            self.send_response(200 if found else 404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass  # a line per webhook is noise

    return Handler
