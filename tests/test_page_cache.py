"""The page is rendered once per address it is reached at (minigpt4_ui/page_cache.py): through the
running app, and the middleware's rules against an app that counts what it renders."""

from __future__ import annotations

import re

import pytest
import requests

from minigpt4_ui.app.page_cache import MAX_PAGES, PageCache

from .apprunner import RunningApp
from .own_loop import run

ROOT = re.compile(r'"root":\s*"([^"]*)"')


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page-cache")
    running = RunningApp({"MINIGPT4_DOWNLOADS": "0"}, folder / "app.log")
    yield running
    running.close()


def test_the_app_serves_the_same_page_and_each_address_its_own(app):
    first, second = (requests.get(app.url, timeout=30) for _ in range(2))
    assert first.status_code == second.status_code == 200 and first.content == second.content
    assert ROOT.search(first.text).group(1) == app.url.rstrip("/")
    assert "object-src 'none'" in second.headers["content-security-policy"]  # the page policy still applies
    proxied = requests.get(app.url, timeout=30, headers={"X-Forwarded-Host": "studio.example",
                                                        "X-Forwarded-Proto": "https"})
    assert ROOT.search(proxied.text).group(1) == "https://studio.example"
    assert ROOT.search(requests.get(app.url, timeout=30).text).group(1) == app.url.rstrip("/")


class Renders:
    """An ASGI app that renders a page naming the Host it was asked for, and counts its renders."""

    def __init__(self, status: int = 200, headers: tuple = ()):
        self.count = 0
        self.status, self.headers = status, list(headers)

    async def __call__(self, scope, receive, send):
        self.count += 1
        host = dict(scope["headers"]).get(b"host", b"")
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": b"page for " + host + b" #%d" % self.count})


def get(app, path: str = "/", *, method: str = "GET", host: bytes = b"a.example", query: bytes = b"") -> bytes:
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": method, "path": path, "query_string": query, "scheme": "http",
             "root_path": "", "headers": [(b"host", host)]}
    run(app(scope, receive, send))
    return b"".join(message.get("body", b"") for message in sent)


def test_a_page_is_rendered_once_per_address():
    inner = Renders()
    cache = PageCache(inner)
    assert get(cache) == get(cache) == b"page for a.example #1"
    assert get(cache, host=b"b.example") == b"page for b.example #2"
    assert get(cache, method="HEAD") == b"page for a.example #3"  # a HEAD is kept apart
    assert inner.count == 3


def test_anything_but_the_plain_page_is_rendered_every_time():
    inner = Renders()
    cache = PageCache(inner)
    for _ in range(2):
        get(cache, query=b"__theme=dark")
        get(cache, "/config")
        get(cache, method="POST")
    assert inner.count == 6


@pytest.mark.parametrize("status, headers", [(404, ()), (200, ((b"set-cookie", b"a=1"),))])
def test_an_error_or_a_page_that_sets_a_cookie_is_not_kept(status, headers):
    inner = Renders(status, headers)
    cache = PageCache(inner)
    get(cache)
    get(cache)
    assert inner.count == 2


def test_made_up_hosts_push_out_the_oldest_pages_only():
    inner = Renders()
    cache = PageCache(inner)
    get(cache)
    for n in range(MAX_PAGES):
        get(cache, host=b"made-up-%d.example" % n)
    assert get(cache) == b"page for a.example #%d" % (MAX_PAGES + 2)  # rendered again
    assert get(cache, host=b"made-up-%d.example" % (MAX_PAGES - 1)).endswith(b"#%d" % (MAX_PAGES + 1))
