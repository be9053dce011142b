"""Export of a conversation or a comparison: self-contained HTML that fetches nothing, and JSON."""

import base64
import io
import json

from PIL import Image

from minigpt4_ui.app import export
from minigpt4_ui.app.export import Entry, Report

HOSTILE = ('<img src="http://127.0.0.1:9/x.png"> <script>fetch("http://127.0.0.1:9/s")</script> '
           '![x](http://127.0.0.1:9/md.png) **bold** and `code`')


def data_uri(width: int = 640, height: int = 480) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def comparison(image: str) -> Report:
    sent = {"image": data_uri(), "prompt": "What is it?", "max_tokens": 30}
    return Report(kind="comparison", image=image, title="Which answer is better?",
                  exported_at="2025-01-01 12:00 UTC", entries=(
                      Entry("What is it?", "yorickvp/llava-13b", "a" * 64, sent, "A red square.",
                            prediction_id="p1", predict_time=1.25, total_time=2.5, vote="better"),
                      Entry("What is it?", "andreasjansson/blip-2", "b" * 64,
                            {"image": data_uri(), "question": "What is it?"}, HOSTILE,
                            prediction_id="p2", predict_time=0.5, total_time=0.75)))


def test_html_escapes_answers_and_keeps_only_safe_marks(tmp_path):
    page = export.to_html(comparison(data_uri()))
    assert "<script" not in page and 'src="http' not in page
    assert "&lt;img src=&quot;http://127.0.0.1:9/x.png&quot;&gt;" in page
    assert "<strong>bold</strong> and <code>code</code>" in page
    assert "default-src 'none'; img-src data:" in page
    thumbnail = page.split('<img src="', 1)[1].split('"', 1)[0]
    with Image.open(io.BytesIO(base64.b64decode(thumbnail.partition(",")[2]))) as image:
        assert (image.format, image.size) == ("JPEG", (320, 240))


def test_json_keeps_model_version_inputs_and_timings_without_the_data_uri():
    exported = json.loads(export.to_json(comparison(data_uri())))
    first = exported["entries"][0]
    assert (first["model"], first["version"], first["vote"]) == ("yorickvp/llava-13b", "a" * 64, "better")
    assert first["inputs"]["prompt"] == "What is it?" and first["inputs"]["max_tokens"] == 30
    assert first["inputs"]["image"].startswith("image/png data URI (640×480, ")
    assert first["prediction"] == {"id": "p1", "status": "succeeded", "predict_time": 1.25,
                                   "total_time": 2.5}
    assert "base64" not in export.to_json(comparison(data_uri()))


def test_a_conversation_lists_each_turn_with_its_question(tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (100, 50), (0, 0, 255)).save(photo)
    report = Report(kind="conversation", image=str(photo), entries=(
        Entry("First?", "daanelson/minigpt-4", None, {"prompt": "First?"}, "One."),
        Entry("Second?", "daanelson/minigpt-4", None, {"prompt": "Second?"}, "Two.")))
    page = export.to_html(report)
    assert page.index("First?") < page.index("One.") < page.index("Second?") < page.index("Two.")
    # The image by its name and size: its path is the server's own (Gradio's cache of an upload).
    assert json.loads(export.to_json(report))["image"] == "photo.png (100×50)"
    assert str(tmp_path) not in export.to_json(report) and str(tmp_path) not in page


def test_html_shows_the_inputs_as_written_not_as_json_escapes():
    page = export.to_html(comparison(data_uri(448, 298)))
    assert "image/png data URI (448×298, " not in page  # data URIs are left out of the parameters line
    report = Report(kind="conversation", image=None, entries=(
        Entry("Size?", "daanelson/minigpt-4", None, {"image": "image/jpeg data URI (448×298, 9,000 characters)",
                                                    "prompt": "Size?", "note": "café"}, "Fine."),))
    page = export.to_html(report)
    assert "448×298" in page and "café" in page and "\\u00d7" not in page and "\\u00e9" not in page
