"""The wrapper's models and versions calls, predictions by model name, and the cached resolver,
against the embedded server over loopback."""

import pytest
import requests

from minigpt4_ui.app.model_refs import ModelRefError, Resolver, UnknownModel, parse_ref
from minigpt4_ui.replicate_api import Client
from minigpt4_ui.server.catalog import stand_in_version

from .client_helpers import finished
from .conftest import SERVER_TOKEN

LLAVA_VERSION = stand_in_version("yorickvp/llava-13b")


class CountingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.paths: list[str] = []

    def request(self, method, url, *args, **kwargs):
        self.paths.append(f"{method} {url.split('/v1', 1)[1]}")
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def session():
    with CountingSession() as counting:
        yield counting


@pytest.fixture
def client(server, session):
    return Client(token=SERVER_TOKEN, base_url=server.url, version="unused", poll_interval=0.02,
                  session=session)


def test_get_model_and_get_version(client):
    model = client.get_model("yorickvp", "llava-13b")
    assert model["latest_version"]["id"] == LLAVA_VERSION
    version = client.get_version("yorickvp", "llava-13b", LLAVA_VERSION)
    assert version["openapi_schema"] == model["latest_version"]["openapi_schema"]


def test_create_by_model_name_and_by_version(client, session, png_uri):
    by_name = client.create({"image": png_uri(), "caption": True}, model="andreasjansson/blip-2")
    by_version = client.create({"image": png_uri(), "prompt": "Hi"}, version=LLAVA_VERSION)
    assert session.paths[:2] == ["POST /models/andreasjansson/blip-2/predictions", "POST /predictions"]
    by_name, by_version = finished(client, by_name), finished(client, by_version)
    assert by_name["model"] == "andreasjansson/blip-2" and by_name["status"] == "succeeded"
    assert by_version["model"] == "yorickvp/llava-13b" and isinstance(by_version["output"], list)


@pytest.mark.parametrize("text", ["llava", "a/b/c", "yorickvp/llava-13b:123", " /x", "o/n:" + "g" * 64])
def test_bad_references_say_what_is_expected(text):
    with pytest.raises(ModelRefError, match="use owner/name or owner/name:version"):
        parse_ref(text)


def test_resolver_reads_once_within_its_ttl_then_again(client, session):
    now = [0.0]
    resolver = Resolver(ttl=60, clock=lambda: now[0])
    spec = resolver.resolve(client, "yorickvp/llava-13b")
    assert (spec.model, spec.version, spec.streams) == ("yorickvp/llava-13b", LLAVA_VERSION, True)
    assert resolver.resolve(client, "yorickvp/llava-13b") is spec
    now[0] = 61.0
    assert resolver.resolve(client, "yorickvp/llava-13b") == spec
    pinned = resolver.resolve(client, f"yorickvp/llava-13b:{LLAVA_VERSION}")
    assert pinned.fields == spec.fields
    assert session.paths == ["GET /models/yorickvp/llava-13b", "GET /models/yorickvp/llava-13b",
                             f"GET /models/yorickvp/llava-13b/versions/{LLAVA_VERSION}"]


@pytest.mark.parametrize("ref, message", [
    # Issue 18: the message never shows the host's API address.
    ("nobody/nothing", r"^nobody/nothing was not found by this demo's predictions API$"),
    ("yorickvp/llava-13b:" + "0" * 64, f"version {'0' * 64} of yorickvp/llava-13b was not found"),
])
def test_unknown_models_get_a_clear_error(client, ref, message):
    with pytest.raises(UnknownModel, match=message):
        Resolver().resolve(client, ref)

