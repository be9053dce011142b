"""The exported HTML opened from disk in Chromium: the image and answers show, nothing is fetched."""

from __future__ import annotations

import http.server
import threading

from minigpt4_ui.app import export
from minigpt4_ui.app.export import Entry, Report

from ..test_export import data_uri


class _Counting(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.hits.append(self.path)
        self.send_error(404)

    def log_message(self, *args) -> None:
        pass


def test_exported_comparison_opens_in_chromium_with_image_and_answers(browser, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    lure = f"http://127.0.0.1:{server.server_address[1]}"
    hostile = (f'<img src="{lure}/img.png"> <script>fetch("{lure}/script")</script> '
               f"![x]({lure}/markdown.png) <iframe src=\"{lure}/frame\"></iframe> **Bold claim**")
    report = Report(kind="comparison", image=data_uri(640, 480), entries=(
        Entry("What is it?", "yorickvp/llava-13b", "a" * 64, {"prompt": "What is it?"},
              "A red square, streamed.", prediction_id="pred-llava", predict_time=1.5, vote="better"),
        Entry("What is it?", "andreasjansson/blip-2", "b" * 64, {"question": "What is it?"}, hostile,
              prediction_id="pred-blip")))
    path = tmp_path / "comparison.html"
    path.write_text(export.to_html(report), encoding="utf-8")

    context = browser.new_context()
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    try:
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        image = page.locator("header img")
        assert image.evaluate("img => img.complete && img.naturalWidth") == 320
        articles = page.locator("article")
        assert articles.count() == 2
        assert "A red square, streamed." in articles.nth(0).inner_text()
        assert "✔ better" in articles.nth(0).inner_text()
        assert "pred-blip" in articles.nth(1).inner_text()
        shown = articles.nth(1).locator(".answer")
        assert f'<img src="{lure}/img.png">' in shown.inner_text()  # shown as text, not loaded
        assert shown.locator("strong").inner_text() == "Bold claim"
        assert page.locator("script, iframe, article img").count() == 0
    finally:
        context.close()
        server.shutdown()
        server.server_close()
    assert _Counting.hits == []
    assert all(url.startswith(("file:", "data:")) for url in requested), requested
