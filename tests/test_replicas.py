"""Two `python app.py` replicas behind nginx with the host's config (docs/nginx-replicas.conf):
visitors are spread over both, every request of a visit reaches the replica that holds its
session, and every chat is answered in full. (bench/audience.py --replicas 2 does the same for
hundreds of visitors; this module uses its browser-like visitor and nginx runner.)"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from bench._replicas import CONFIG, NGINX, Nginx
from bench._visitor import Page, Visitor, connections

from .apprunner import RunningApp
from .own_loop import run

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")
COFFEE = Path(__file__).resolve().parent.parent / "assets" / "coffee.jpg"
VISITORS = 8


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """Two replicas set up as docs/hosting-an-event.md says, and nginx in front of them."""
    apps: list[RunningApp] = []
    caches: list[str] = []  # each replica's own Gradio cache
    balancer = None
    try:
        for n in range(2):
            folder = tmp_path_factory.mktemp(f"replica-{n}")
            caches.append(str(folder / "gradio"))
            apps.append(RunningApp({"MINIGPT4_TOKENS_PER_SECOND": "40", "MINIGPT4_DOWNLOADS": "0",
                                    "MINIGPT4_TRUSTED_PROXY_HOPS": "1", "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0",
                                    "MINIGPT4_MAX_QUEUE_PER_VISITOR": "0", "GRADIO_TEMP_DIR": caches[-1]},
                                   folder / "app.log"))
        balancer = Nginx([app.port for app in apps])
        yield caches, balancer
    finally:
        if balancer:
            balancer.close()
        for app in apps:
            app.close()


async def _visit_all(url: str, count: int) -> list[Visitor]:
    import httpx

    photo = COFFEE.read_bytes()
    page = Page.of(httpx.get(url + "config", timeout=30).json())
    async with connections() as transport:
        visitors = [Visitor(url, page, transport) for _ in range(count)]

        async def one(visitor: Visitor, k: int) -> None:
            await visitor.open()
            await visitor.add_image("coffee.jpg", photo)
            await visitor.ask(f"Visitor {k}: what is in this photo?")

        try:
            await asyncio.gather(*(one(visitor, k) for k, visitor in enumerate(visitors)))
        finally:
            await asyncio.gather(*(visitor.close() for visitor in visitors))
    return visitors


def test_visitors_are_spread_over_the_replicas_and_each_is_answered_by_one(replicas):
    caches, balancer = replicas
    visitors = run(_visit_all(balancer.url, VISITORS), timeout=300)
    answers = {visitor.visit.answer for visitor in visitors}
    assert len(answers) == 1 and len(answers.pop().split()) > 40, [v.visit.answer for v in visitors]
    # Each upload lands in the cache of the replica that took the visit; the visit's events (send,
    # the queued answer, its stream) went there too, or that replica would not know the file or
    # the session, and the answer would not have come.
    served = [next(n for n, cache in enumerate(caches) if v.visit.upload_path.startswith(cache + "/"))
              for v in visitors]
    assert sorted(set(served)) == [0, 1], served
    assert all("studio_replica" in visitor.http.cookies for visitor in visitors)
    assert balancer.errors() == ""


def test_the_config_in_the_docs_is_valid_as_written(tmp_path):
    checked = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(CONFIG)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
