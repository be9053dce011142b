"""Two Cog servers behind nginx serve two chats at once, one each, with no change in the app."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from .apprunner import free_port
from .cogrunner import CogServer
from .test_cog import create, follow, front

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")
ANSWER_SECONDS = 1.5

# A plain round-robin balancer: nothing in it knows about Cog or about prediction ids.
NGINX_CONF = """
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream cog {{ {servers} }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 32m;
        client_body_buffer_size 32m;  # image bodies stay in memory, not in a temp folder
        location / {{
            proxy_pass http://cog;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def cogs(tmp_path_factory):
    servers = [CogServer("string", tmp_path_factory.mktemp(f"cog-{name}"),
                         env={"INSTANCE": name, "ANSWER_SECONDS": str(ANSWER_SECONDS)})
               for name in ("cog-a", "cog-b")]
    try:
        for server in servers:
            server.wait_for("READY")
        yield servers
    finally:
        for server in servers:
            server.close()


@pytest.fixture(scope="module")
def balancer(cogs, tmp_path_factory):
    prefix: Path = tmp_path_factory.mktemp("nginx")
    port = free_port()
    servers = " ".join(f"server 127.0.0.1:{cog.port};" for cog in cogs)
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(prefix=prefix, port=port, servers=servers))
    process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(f"{url}/health-check", timeout=2)
            break
        except requests.ConnectionError:
            assert process.poll() is None and time.monotonic() < deadline, \
                (prefix / "error.log").read_text()
            time.sleep(0.05)
    server = front(url)
    yield url, server
    server.close()
    process.terminate()
    process.wait(timeout=10)


def test_two_chats_at_once_are_served_by_one_container_each(balancer):
    _, server = balancer
    started = time.monotonic()
    predictions = [create(server, f"Chat {n}") for n in range(2)]
    finals = [follow(server, p)[0] for p in predictions]
    elapsed = time.monotonic() - started
    assert [f["status"] for f in finals] == ["succeeded", "succeeded"]
    served_by = sorted("cog-a" if "cog-a received" in f["logs"] else "cog-b" for f in finals)
    assert served_by == ["cog-a", "cog-b"]
    assert elapsed < 2 * ANSWER_SECONDS  # at the same time, not one after the other


def test_stop_reaches_the_container_running_the_prediction(balancer, cogs):
    _, server = balancer
    prediction = create(server, "Balance it slowly")
    follow(server, prediction, until=("processing",))
    canceled = requests.post(f"{server.url}/v1/predictions/{prediction['id']}/cancel", timeout=15)
    assert canceled.json()["status"] == "canceled"
    deadline = time.monotonic() + 10
    while not any("Balance it slowly" in cog.cancellations() for cog in cogs):
        assert time.monotonic() < deadline, "no container saw the cancel"
        time.sleep(0.05)
