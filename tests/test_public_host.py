"""The running app (`python app.py`) on a public host with its own predictions API
(REPLICATE_BASE_URL, behind a recording proxy) and token: what a hostile or careless visitor can
make it send, and what a visitor can see of the host. Each was reproduced before its fix (#18)."""

from __future__ import annotations

import json

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from minigpt4_ui.server import start_background

from .apprunner import RunningApp
from .conftest import png_bytes
from .fault_proxy import FaultProxy
from .raw_gradio import Session

TOKEN = "r8_public_host_token_0123456789"
VISITOR = "r8_visitor_own_token_9876543210"
SURROGATE = "What is \ud800 this?"
NOT_TEXT = "contains a character that is not text (an unpaired surrogate, U+D800 to U+DFFF): remove it"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    path.write_bytes(png_bytes(120, 90))
    return str(path)


@pytest.fixture(scope="module")
def upstream():
    with start_background(token=TOKEN, tokens_per_second=400) as server:
        proxy = FaultProxy(server.url)
        yield server, proxy
        proxy.close()


@pytest.fixture(scope="module")
def app(upstream, tmp_path_factory):
    _, proxy = upstream
    running = RunningApp({"REPLICATE_BASE_URL": proxy.url, "REPLICATE_API_TOKEN": TOKEN,
                          "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0"},
                         tmp_path_factory.mktemp("public-host") / "app.log")
    yield running
    running.close()


@pytest.fixture
def proxy(upstream):
    upstream[1].reset()
    return upstream[1]


def addresses(upstream) -> list[str]:
    """The host's predictions API, as a visitor must never see it (the app's own address is the
    one the visitor reached it by)."""
    server, proxy = upstream
    return [proxy.url, f":{proxy.port}", server.url, f":{server.url.rpartition(':')[2]}"]


class Chat:
    """One browser session's chat: Send (unqueued), then the answer (queued), as the page chains them."""

    def __init__(self, app, photo: str, visitor_token: str = ""):
        self.session = Session(app.url)
        self.image = self.session.upload(photo)
        self.token = visitor_token
        self.chat: list = []

    def send(self, prompt: str) -> str:
        """Send `prompt`; the message line, "" when the question went into the chat."""
        data = self.session.defaults("send")
        data[:3] = [self.image, prompt, self.chat]
        chat, _, _, message = self.session.run("send", data)[:4]
        if isinstance(chat, list):
            self.chat = chat
        return message["value"] if isinstance(message, dict) else message  # a problem comes as an update

    def respond(self) -> dict:
        """Stream the answer to its end; its `process_completed` message (the chat is kept)."""
        data = self.session.defaults("respond")
        data[0], data[2], data[4] = self.image, self.chat, self.token
        done = self.session.queued("respond", data)
        assert done["success"], done
        self.chat = done["output"]["data"][0]
        return done

    def answered(self) -> list:
        """The step the page chains after the answer's stream: History, View request, the buttons."""
        return self.session.run("answered", self.session.defaults("answered"))

    def status(self) -> str:
        return next(m["metadata"]["title"] for m in reversed(self.chat) if (m.get("metadata") or {}).get("title"))


def test_a_visitors_own_token_never_reaches_the_hosts_server(app, proxy, photo):
    """Issue 18: a token pasted in "Your Replicate token" went to the host's REPLICATE_BASE_URL."""
    info = Session(app.url).component(label="Replicate API token (optional)")["props"]["info"]
    assert "sent only to Replicate (api.replicate.com)" in info
    chat = Chat(app, photo, visitor_token=VISITOR)
    assert chat.send("Whose token?") == ""
    chat.respond()
    # Replicate cannot be reached from the test machine, and the chat says so by name.
    assert chat.status().startswith("could not reach Replicate")
    history = chat.session.queued("account_predictions", [VISITOR])["output"]["data"]
    assert "could not reach Replicate" in history[1]
    # Without their token the same visitor is answered by the host's server.
    chat.token = ""
    assert chat.send("And now?") == ""
    chat.respond()
    assert chat.status().startswith("Done in")
    assert proxy.seen and not [s for s in proxy.seen if VISITOR in json.dumps(s.headers) + s.body.decode()]


def test_no_host_address_reaches_a_visitor(app, upstream, proxy, photo):
    """Issue 18: the History panel showed the API's `urls` (http://127.0.0.1:PORT/v1/…), and a
    failed call said "could not reach http://127.0.0.1:PORT"."""
    banner = Session(app.url).component(elem_id="backend-notice")["props"]["value"]
    assert banner == "**Backend:** `daanelson/minigpt-4` on this host's predictions API."
    chat = Chat(app, photo)
    assert chat.send("Where are you?") == ""
    answered = chat.respond()
    records = chat.session.queued("show_record", [None, ""], event_data={"index": [0, 0], "value": ""})
    shown, message = records["output"]["data"]
    assert message == "" and shown["status"] == "succeeded" and "urls" not in shown
    ask_model = Client(app.url, verbose=False).predict(image=handle_file(photo), prompt="Hi", model="",
                                                       parameters='{"max_new_tokens": 3}', api_name="/ask_model")
    proxy.refuse()
    try:
        chat.send("Still there?")
        refused = chat.respond()
        assert chat.status() == "could not reach the predictions API: connection refused"
        with pytest.raises(AppError, match="^could not reach the predictions API: connection refused$"):
            Client(app.url, verbose=False).predict(image=handle_file(photo), prompt="Hi",
                                                   model="yorickvp/llava-13b", parameters="", api_name="/ask_model")
    finally:
        proxy.listen()
    seen = json.dumps([answered, records, ask_model, refused]) + banner
    assert [address for address in addresses(upstream) if address in seen] == []
    assert f"{proxy.url}: connection refused" in app.output()  # the host's log says where


def _start_compare(session: Session, image: dict, question: str, model: str) -> str:
    data = session.defaults("start")
    data[:4] = [image, question, 2, model]
    data[5] = "daanelson/minigpt-4"
    return session.run("start", data)[0]


def test_a_lone_surrogate_is_said_in_words_and_leaves_the_session_free(app, proxy, photo):
    """Issue 18: "\\ud800" in a question made Send fail with a 500 after it took the session's
    slot, so the next question was "still being written" for 60 s."""
    chat = Chat(app, photo)
    assert chat.send(SURROGATE) == f"Prompt {NOT_TEXT}."
    assert chat.chat == []
    assert chat.send("What is this?") == ""
    chat.respond()
    assert chat.status().startswith("Done in")
    # Compare, in the same session: the question, then a contender's model name.
    compare = chat.session
    assert _start_compare(compare, chat.image, SURROGATE, "yorickvp/llava-13b") == f"The question {NOT_TEXT}."
    assert _start_compare(compare, chat.image, "Hi", "yorickvp/\ud800") == f"Contender 1: the model {NOT_TEXT}."
    assert _start_compare(compare, chat.image, "Hi", "yorickvp/llava-13b") == ""
    data = compare.defaults("run")
    data[:5] = [chat.image, "Hi", 2, "", None]
    data[5:9] = ["yorickvp/llava-13b", '{"max_tokens": 3}', "daanelson/minigpt-4", '{"max_new_tokens": 3}']
    ran = compare.queued("run", data)
    assert ran["success"] and ran["output"]["data"][3] == ""
    # ask_model: the prompt, the model, a parameter's name and value.
    ask = Session(app.url)
    for prompt, model, parameters, field in ((SURROGATE, "", "", "prompt"), ("Hi", "a/\ud800", "", "model"),
                                             ("Hi", "", '{"\\ud800": 1}', "parameters"),
                                             ("Hi", "", '{"x": ["\\udfff"]}', "parameters")):
        refused = ask.queued("ask_model", [chat.image, prompt, model, parameters])
        assert refused["output"]["error"] == f"Please fix: {field}: {NOT_TEXT}"
    assert ask.queued("ask_model", [chat.image, "Hi", "", '{"max_new_tokens": 2}'])["success"]
    assert "Traceback" not in app.output()


def test_an_image_url_that_is_not_text_is_refused_in_words(app):
    """A lone surrogate in an image URL used to reach the resolver and come back in the message."""
    loaded = Session(app.url).queued("load_url", ["http://exa\udc80mple.com/cat.png"])
    assert loaded["success"]
    assert loaded["output"]["data"][1]["value"] == ("That URL didn't work: That URL contains a character that is "
                                                    "not text (an unpaired surrogate). The current image is kept.")
