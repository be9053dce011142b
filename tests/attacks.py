"""What hostile visitors send: a web server that trickles its answers, and pixel-bomb PNGs.

TrickleServer answers every request by trickling bytes, slowly, forever: `phase="headers"` sends the status line and then one header byte per interval (the response
never gets past its headers); `phase="body"` sends whole headers announcing an image and then one
body byte per interval. It counts the connections still open, so a test can watch them end.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib


def pixel_bomb_png(width: int = 8000, height: int = 7999) -> bytes:
    """A valid, tiny RGBA PNG of width×height transparent pixels (about 250 KB for 64 MP).

    Written row by row, so making it never holds the pixels in memory.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (width * 4)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


class TrickleServer:
    """Listens on 127.0.0.1; `url` is its address; `open_connections()` how many it still serves."""

    def __init__(self, *, phase: str = "headers", interval: float = 3.0):
        self.phase = phase
        self.interval = interval
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=256)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._lock = threading.Lock()
        self._open = 0
        self.served = 0
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def open_connections(self) -> int:
        with self._lock:
            return self._open

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._open += 1
                self.served += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            if self.phase == "headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\n"
                             b"Content-Length: 1000000\r\n\r\n")
            conn.settimeout(0.05)
            while not self._closed.is_set():
                conn.sendall(b"a")
                # Waiting on recv, not sleeping: a peer that closes is seen at once.
                ends = time.monotonic() + self.interval
                while time.monotonic() < ends:
                    try:
                        if conn.recv(4096) == b"":
                            return
                    except TimeoutError:
                        continue
        except OSError:
            return  # the peer closed or reset the connection
        finally:
            conn.close()
            with self._lock:
                self._open -= 1

    def close(self) -> None:
        self._closed.set()
        self._sock.close()

    def __enter__(self) -> "TrickleServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
