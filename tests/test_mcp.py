"""The app as an MCP server (`python app.py` with MINIGPT4_MCP=1), driven by the official `mcp` SDK
over streamable HTTP as an agent would: the tools and their descriptions, each tool called, and the
browser's rules through MCP (parameter caps, URL policy, pixel budget, body cap, hourly allowance,
queue share, no host address or token), a cancelled call, two agents at once."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import threading
import time
from contextlib import asynccontextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import AsyncIterator

import httpx
import pytest
import requests
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from minigpt4_ui.server import start_background

from .apprunner import RunningApp
from .client_helpers import wait_until_canceled
from .attacks import pixel_bomb_png
from .conftest import png_bytes
from .fault_proxy import FaultProxy
from .own_loop import run

TOKEN = "r8_mcp_host_token_0123456789abcdef"
IMAGE = "data:image/png;base64," + base64.b64encode(png_bytes(64, 48)).decode()
DESCRIBED = "This 64×48 landscape image is mostly dark blue and white"


@asynccontextmanager
async def agent(app: RunningApp, source: str = "127.0.0.1") -> AsyncIterator[ClientSession]:
    """An MCP session with the app, its connections made from `source` (a loopback address: each
    one is another visitor to the app)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(30, read=120)) as http:
        async with streamable_http_client(app.url + "gradio_api/mcp/", http_client=http) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def call(app: RunningApp, tool: str, source: str = "127.0.0.1", **arguments) -> tuple[bool, str]:
    """One tool call in a session of its own: (whether it failed, its text)."""
    async with agent(app, source) as session:
        result = await session.call_tool(tool, arguments)
    return result.isError, "".join(part.text for part in result.content)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app with the embedded backend (no token): the built-in stand-in answers."""
    running = RunningApp({"MINIGPT4_MCP": "1", "MINIGPT4_TOKENS_PER_SECOND": "200"},
                         tmp_path_factory.mktemp("mcp") / "app.log")
    yield running
    running.close()


def test_the_log_shows_the_mcp_address(app):
    # Gradio prints it just after the app starts answering.
    deadline = time.monotonic() + 10
    while f"Streamable HTTP URL: {app.url}gradio_api/mcp/" not in app.output():
        assert time.monotonic() < deadline, app.output()
        time.sleep(0.05)


def test_exactly_three_tools_with_descriptions_from_the_schema(app):
    async def listed():
        async with agent(app) as session:
            return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in run(listed())}
    assert sorted(tools) == ["ask", "ask_model", "list_models"]
    ask = tools["ask"]
    assert ask.description.startswith("Ask MiniGPT-4 (daanelson/minigpt-4) a question about one image")
    assert "upload_file_to_gradio" not in ask.description + tools["ask_model"].description
    properties = ask.inputSchema["properties"]
    assert ask.inputSchema["required"] == ["image", "prompt"]
    assert properties["image"]["description"].startswith("The image: an http(s) URL of a JPEG, PNG")
    assert "data: URI" in properties["image"]["description"]
    assert properties["num_beams"]["description"] == (
        "Beams: Number of beams for beam search decoding. A whole number from 1 to 10; default 3.")
    assert "from 1 to 4,096; default 3000" in properties["max_new_tokens"]["description"]
    assert properties["top_p"]["default"] == 0.9
    ask_model = tools["ask_model"].inputSchema
    assert ask_model["required"] == ["image", "prompt"]  # model and parameters may be left out
    assert "owner/name" in ask_model["properties"]["model"]["description"]
    assert "capped at 4,096" in ask_model["properties"]["parameters"]["description"]
    assert tools["list_models"].inputSchema["properties"] == {}


def test_list_models_gives_who_answers_and_each_models_settings(app):
    failed, text = run(call(app, "list_models"))
    assert not failed
    models = {entry["model"]: entry for entry in json.loads(text)}
    assert list(models)[:2] == ["HuggingFaceTB/SmolVLM-256M-Instruct", "HuggingFaceTB/SmolVLM-500M-Instruct"]
    assert {"daanelson/minigpt-4", "yorickvp/llava-13b", "salesforce/blip"} <= set(models)
    assert models["daanelson/minigpt-4"]["answered_by"] == "the built-in stand-in (not a model)"
    llava = {setting["name"]: setting for setting in models["yorickvp/llava-13b"]["settings"]}
    assert llava["max_tokens"]["maximum"] == 4096 and llava["max_tokens"]["type"] == "integer"
    blip = {setting["name"]: setting for setting in models["salesforce/blip"]["settings"]}
    assert blip["task"]["choices"] == ["image_captioning", "visual_question_answering", "image_text_matching"]


def test_ask_and_ask_model_answer(app):
    failed, answer = run(call(app, "ask", image=IMAGE, prompt="What is it?", max_new_tokens=6))
    assert not failed and answer.startswith("This 64×48 landscape") and len(answer.split()) == 6
    failed, answer = run(call(app, "ask_model", image=IMAGE, prompt="Caption it.", model="yorickvp/llava-13b",
                              parameters='{"max_tokens": 5}'))
    assert (failed, answer) == (False, "A dark blue and white")
    failed, answer = run(call(app, "ask_model", image=IMAGE, prompt="Describe it."))
    assert not failed and answer.startswith(DESCRIBED)


def test_invalid_parameters_are_named_with_their_bounds(app):
    assert run(call(app, "ask", image=IMAGE, prompt="Hi", top_p=2, num_beams=0)) == (
        True, "Beams must be at least 1. Top p must be at most 1.")
    assert run(call(app, "ask", image=IMAGE, prompt="Hi", max_new_tokens=99999)) == (
        True, "Max new tokens must be at most 4,096.")
    assert run(call(app, "ask_model", image=IMAGE, prompt="Hi", model="yorickvp/llava-13b",
                    parameters='{"max_tokens": 1000000000}')) == (True, "Please fix: max_tokens: must be at most 4,096")
    assert run(call(app, "ask_model", image=IMAGE, prompt="Hi", model="not a model")) == (
        True, "'not a model' is not a model reference: use owner/name or owner/name:version (a 64-character "
              "hexadecimal version id)")
    failed, text = run(call(app, "ask", image=IMAGE, prompt="Hi", max_length="long"))
    assert failed and text == "Input validation error: 'long' is not of type 'number'"  # the SDK's own check


def test_an_image_url_goes_through_the_apps_url_policy(app):
    failed, text = run(call(app, "ask", image=f"http://127.0.0.1:{app.port}/gradio_api/info", prompt="Hi"))
    assert (failed, text) == (True, "That image URL didn't work: The host 127.0.0.1 is a private, loopback or "
                                    "link-local address; only public image URLs can be fetched.")
    failed, text = run(call(app, "ask", image="ftp://example.com/cat.png", prompt="Hi"))
    assert failed and "provide a url ('http://...' or 'https://...')" in text  # Gradio's MCP layer refuses it
    assert "Traceback" not in app.output()


def test_gradio_client_callers_meet_the_same_url_policy(app):
    with pytest.raises(AppError, match="^That image URL didn't work: The host 127.0.0.1 is a private, loopback "):
        Client(app.url, verbose=False).predict(image=handle_file(f"http://127.0.0.1:{app.port}/x.png"),
                                               prompt="Hi", api_name="/ask")


def test_the_pixel_budget_and_the_body_cap_hold(app):
    bomb = "data:image/png;base64," + base64.b64encode(pixel_bomb_png(13000, 13000)).decode()
    failed, text = run(call(app, "ask", image=bomb, prompt="Hi"))
    assert failed and "images up to 64 megapixels are accepted" in text
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "ask", "arguments": {"image": "data:image/png;base64," + "A" * 9_000_000,
                                                    "prompt": "Hi"}}}
    refused = requests.post(app.url + "gradio_api/mcp/", json=body, timeout=30,
                            headers={"Accept": "application/json, text/event-stream"})
    assert refused.status_code == 413 and "limited to 8 MB" in refused.text


def test_two_agents_are_answered_at_once(app):
    async def both():
        return await asyncio.gather(call(app, "ask", image=IMAGE, prompt="One?", max_new_tokens=20),
                                    call(app, "ask", image=IMAGE, prompt="Two?", max_new_tokens=20))

    assert [failed for failed, _ in run(both())] == [False, False]


# A host's own predictions API behind a proxy the test can break, with the host's token: host-paid
# questions count against each visitor's hour, and the API's address and the token must not show.
@pytest.fixture(scope="module")
def upstream():
    with start_background(token=TOKEN, tokens_per_second=10) as server:
        proxy = FaultProxy(server.url)
        yield server, proxy
        proxy.close()


@pytest.fixture(scope="module")
def hosted(upstream, tmp_path_factory):
    # Image URLs on loopback are allowed here (an intranet host's setting), so one can be served.
    running = RunningApp({"MINIGPT4_MCP": "1", "REPLICATE_BASE_URL": upstream[1].url, "REPLICATE_API_TOKEN": TOKEN,
                          "MINIGPT4_VISITOR_LIMIT_PER_HOUR": "2", "MINIGPT4_MAX_QUEUE_PER_VISITOR": "1",
                          "MINIGPT4_ALLOW_PRIVATE_URLS": "1"},
                         tmp_path_factory.mktemp("mcp-hosted") / "app.log")
    yield running
    running.close()


@pytest.fixture(scope="module")
def image_site(tmp_path_factory):
    """A loopback web server with one picture, photo.png (120×90)."""
    folder = tmp_path_factory.mktemp("site")
    (folder / "photo.png").write_bytes(png_bytes(120, 90))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_an_allowed_image_url_is_fetched_by_the_app(hosted, upstream, image_site):
    failed, answer = run(call(hosted, "ask", "127.0.0.7", image=f"{image_site}/photo.png", prompt="Hi",
                              max_new_tokens=3))
    assert (failed, answer) == (False, "This 120×90 landscape")
    sent = _newest(upstream[0])["input"]["image"]
    assert sent.startswith("data:image/jpeg;base64,")  # fetched and encoded by the app, not passed on
    failed, text = run(call(hosted, "ask", "127.0.0.7", image=f"{image_site}/missing.png", prompt="Hi"))
    assert (failed, text) == (True, "That image URL didn't work: The image URL answered 404 File not found.")


def _newest(server) -> dict:
    """The server's newest prediction ({"input": {}} before the first)."""
    listed = requests.get(f"{server.url}/v1/predictions", headers={"Authorization": f"Bearer {TOKEN}"},
                          timeout=5).json()["results"]
    return listed[0] if listed else {"input": {}, "status": None}


def test_each_agent_has_its_own_hourly_allowance(hosted):
    short = dict(image=IMAGE, prompt="Hi", max_new_tokens=2)
    assert run(call(hosted, "ask", "127.0.0.2", **short))[0] is False
    assert run(call(hosted, "ask_model", "127.0.0.2", image=IMAGE, prompt="Hi", parameters='{"max_new_tokens": 2}'))[0] is False
    failed, text = run(call(hosted, "ask", "127.0.0.2", **short))
    assert failed and text.startswith("This demo allows 2 questions per hour per visitor on the host's Replicate "
                                      "account. Try again in about 60 min")
    # Another address is another visitor (before #20 every agent was the app's own 127.0.0.1).
    assert run(call(hosted, "ask", "127.0.0.3", **short))[0] is False


def test_an_agent_has_its_share_of_the_queue(hosted, upstream):
    async def two_at_once():
        first = asyncio.create_task(call(hosted, "ask", "127.0.0.4", image=IMAGE, prompt="Slowly", max_new_tokens=30))
        deadline = time.monotonic() + 20
        while _newest(upstream[0])["input"].get("prompt") != "Slowly":
            assert time.monotonic() < deadline, "the first call never reached the API"
            await asyncio.sleep(0.05)
        second = await call(hosted, "ask", "127.0.0.4", image=IMAGE, prompt="Meanwhile", max_new_tokens=2)
        return await first, second

    first, second = run(two_at_once())
    assert first[0] is False
    assert second == (True, "You already have 1 requests waiting or running, the most one visitor may have at "
                            "once: wait for one to finish, then try again.")


def test_a_cancelled_call_cancels_its_prediction(hosted, upstream):
    server = upstream[0]

    async def abandon():
        async with agent(hosted, "127.0.0.5") as session:
            task = asyncio.create_task(session.call_tool("ask", {"image": IMAGE, "prompt": "Take your time"}))
            deadline = time.monotonic() + 20
            while (newest := _newest(server))["input"].get("prompt") != "Take your time" or newest["status"] != "processing":
                assert time.monotonic() < deadline, "the call never started answering"
                await asyncio.sleep(0.05)
            task.cancel()  # the agent gives up; leaving the session closes its connection
        return newest["id"]

    prediction_id = run(abandon())
    wait_until_canceled(server.url, TOKEN, prediction_id)


def test_no_host_address_or_token_reaches_an_agent(hosted, upstream):
    server, proxy = upstream
    proxy.refuse()
    try:
        failed, text = run(call(hosted, "ask", "127.0.0.6", image=IMAGE, prompt="Anyone there?"))
    finally:
        proxy.listen()
    assert (failed, text) == (True, "could not reach the predictions API: connection refused")
    failed, listed = run(call(hosted, "list_models", "127.0.0.6"))
    assert not failed and json.loads(listed)[0]["answered_by"] == "daanelson/minigpt-4 on this host's predictions API"
    for secret in (proxy.url, f":{proxy.port}", server.url, TOKEN):
        assert secret not in text + listed
