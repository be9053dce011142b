import ast
import json
import shlex

from minigpt4_ui import snippets

INPUTS = {"image": "data:image/jpeg;base64," + "A" * 5000, "prompt": "What's this?", "top_p": 0.9}


def test_data_uri_is_shortened_with_its_size():
    shown = snippets.displayed_input(INPUTS)["image"]
    assert shown.startswith("data:image/jpeg;base64,AAA") and "5,023 characters in all" in shown
    assert snippets.displayed_input({"image": "https://x/y.png"})["image"] == "https://x/y.png"


def test_curl_is_valid_shell_with_the_token_from_the_environment():
    command = snippets.curl(INPUTS, base_url="https://api.replicate.com", version="v1")
    words = shlex.split(command.replace("\\\n", " "))
    assert words[:5] == ["curl", "-s", "-X", "POST", "https://api.replicate.com/v1/predictions"]
    assert "Authorization: Bearer $REPLICATE_API_TOKEN" in words
    assert json.loads(words[-1])["input"]["prompt"] == "What's this?"


def test_python_snippet_parses():
    code = snippets.python(INPUTS, base_url="http://127.0.0.1:5000", model="daanelson/minigpt-4", version="v1")
    ast.parse(code)
    assert "daanelson/minigpt-4:v1" in code and "base_url='http://127.0.0.1:5000'" in code
