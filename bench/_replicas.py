"""nginx in front of app replicas, with the config a host uses (docs/nginx-replicas.conf) on
ports of our choosing; shared by bench/audience.py and tests/test_replicas.py."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "docs" / "nginx-replicas.conf"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def config(listen: int, upstreams: list[int]) -> str:
    """The host's config, listening on 127.0.0.1:`listen`, with one `server` line per upstream port."""
    text, listens = re.subn(r"(?m)^(\s*)listen \S+;", rf"\1listen 127.0.0.1:{listen};", CONFIG.read_text())
    servers = "".join(f"        server 127.0.0.1:{port};\n" for port in upstreams)
    text, blocks = re.subn(r"(?m)(^\s*server 127\.0\.0\.1:\d+;\n)+", servers, text)
    if listens != 1 or blocks != 1:
        raise ValueError(f"{CONFIG} no longer has one `listen` line and one block of `server` lines")
    return text


class Nginx:
    """nginx on a free loopback port with a folder of its own (no root-owned paths)."""

    def __init__(self, upstreams: list[int]):
        if NGINX is None:
            raise FileNotFoundError("nginx is not installed (apt-get install nginx)")
        self.prefix = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        conf = self.prefix / "nginx.conf"
        conf.write_text(config(self.port, upstreams))
        self.process = subprocess.Popen([NGINX, "-p", str(self.prefix), "-c", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(self.url + "gradio_api/info", timeout=5).raise_for_status()
                return
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"nginx did not start: {self.errors()}") from None
                time.sleep(0.05)

    def errors(self) -> str:
        log = self.prefix / "error.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.prefix, ignore_errors=True)
