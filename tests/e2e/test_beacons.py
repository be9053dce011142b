"""No text on the page makes the browser fetch: answers, a model's error text and the visitor's own
prompt, each from a generated corpus of every construct that can load a URL (markdown and HTML
images, srcset, CSS url(), media, frames, LaTeX) in every context the markdown rules reason about
(prose, lists, quotes, tables, code spans and fences, unclosed fences, LaTeX delimiters).

A beacon server counts every request it gets; after the whole corpus has been shown it must have
had none (issue #18: `~~~ ![](URL)`, a fence on the last line and `$$`$$` got through)."""

from __future__ import annotations

import http.server
import itertools
import re
import threading
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from minigpt4_ui.server import start_background
from minigpt4_ui.server.predictors.builtin import BuiltinPredictor

from ..apprunner import RunningApp
from .conftest import EXPECT_TIMEOUT_MS
from .ui import TOKEN, prompt_box, send_button, status_titles, upload

PAYLOADS = ["![x]({u})", "![x][r]\n\n[r]: {u}", "[![x]({u})](https://example.com)", "![x](<{u}>)",
            '<img src="{u}">', '<img srcset="{u} 1x">', '<picture><source srcset="{u}"><img></picture>',
            '<video poster="{u}"></video>', '<audio src="{u}"></audio>', '<div style="background:url({u})">x</div>',
            '<svg><image href="{u}"/></svg>', '<link rel="stylesheet" href="{u}">', '<iframe src="{u}"></iframe>',
            '<object data="{u}"></object>', '<input type="image" src="{u}">', "$$\\includegraphics{{{u}}}$$"]
CONTEXTS = ["Sure. {p}", "Sure.\n~~~ {p}", "Sure.\n``` {p}", "$$`$$ {p} `", "- item {p}", "> quote {p}",
            "| a |\n|---|\n| {p} |", "`code` {p} `x`", "```\ncode\n```\n{p}", "# Title {p}", "$x$ {p} $y$",
            "\\`{p}\\`", "<details>{p}</details>"]
CHUNK = 26  # corpus items per answer


def corpus(beacon: str) -> list[str]:
    """Every payload in every context, each with a URL of its own on the beacon server."""
    return [context.format(p=payload.format(u=f"{beacon}/{n}.png"))
            for n, (context, payload) in enumerate(itertools.product(CONTEXTS, PAYLOADS))]


class CorpusPredictor(BuiltinPredictor):
    """Answers "corpus K" with the Kth chunk of the corpus; fails "error K" with it as the error."""

    def __init__(self, items: list[str]):
        self.items = items

    def predict(self, inputs, image, log, cancel=None):
        asked = re.findall(r"(corpus|error) (\d+)", inputs["prompt"])
        kind, k = asked[-1]
        chunk = "\n\n".join(self.items[int(k) * CHUNK:(int(k) + 1) * CHUNK])
        if kind == "error":
            raise RuntimeError(chunk)
        yield chunk


class Hits(list):
    """The paths the beacon server was asked for; `url` is where it listens."""

    url = ""


@pytest.fixture(scope="module")
def beacon() -> Iterator[Hits]:
    hits = Hits()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hits.url = f"http://127.0.0.1:{server.server_port}"
    yield hits
    server.shutdown()


@pytest.fixture(scope="module")
def corpus_page(browser: Browser, beacon, tmp_path_factory) -> Iterator[Page]:
    items = corpus(beacon.url)
    folder = tmp_path_factory.mktemp("beacons")
    with start_background(token=TOKEN, predictor=CorpusPredictor(items)) as server:
        app = RunningApp({"REPLICATE_BASE_URL": server.url, "REPLICATE_API_TOKEN": TOKEN,
                          "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0", "GRADIO_TEMP_DIR": str(folder / "gradio")},
                         folder / "app.log")
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        page = context.new_page()
        page.goto(app.url)
        page.chunks = -(-len(items) // CHUNK)  # type: ignore[attr-defined]
        try:
            yield page
        finally:
            context.close()
            app.close()


def test_no_answer_error_or_prompt_makes_the_browser_fetch(corpus_page: Page, beacon):
    page = corpus_page
    from .test_browser import COFFEE
    upload(page, COFFEE)
    asked = 0
    for k in range(page.chunks):  # type: ignore[attr-defined]
        for kind in ("corpus", "error"):
            # The visitor's own question carries a payload too.
            prompt_box(page).fill(f"{kind} {k} ![x]({beacon.url}/prompt-{kind}-{k}.png) "
                                  f"<img src=\"{beacon.url}/p-{kind}-{k}.png\">")
            send_button(page).click()
            asked += 1
            # Notes ("turns left out") are titled too: count the ended answers.
            ended = status_titles(page).filter(has_text=re.compile(r"^\s*(Done in|The model failed)"))
            expect(ended).to_have_count(asked)
    # Everything shown; anything that could fetch has had its chance (an image loads as it renders).
    page.wait_for_function("() => [...document.querySelectorAll('img')].every(img => img.complete)")
    shown = len(corpus(beacon.url))
    # Read by bench/hostile.py.
    print(f"beacons: {len(beacon)} fetches after {shown} constructs as answers and as errors, {asked} prompts")
    assert beacon == [], f"{len(beacon)} fetches, e.g. {beacon[:5]}"
