"""`python app.py --cog URL` in front of a real Cog server, driven through gradio_client."""

import time

import pytest
import requests
from gradio_client import Client, handle_file
from PIL import Image

from .apprunner import RunningApp
from .cogrunner import CogServer


@pytest.fixture(scope="module")
def cog(tmp_path_factory):
    with CogServer("iterator", tmp_path_factory.mktemp("cog"), env={"WORD_SECONDS": "0.03"}) as server:
        server.wait_for("READY")
        yield server


@pytest.fixture(scope="module")
def app(cog, tmp_path_factory):
    # A token in the environment must not send the images to Replicate (nor could it: no network).
    running = RunningApp({"REPLICATE_API_TOKEN": "r8_must_not_be_used"},
                         tmp_path_factory.mktemp("app") / "app.log",
                         args=("--cog", cog.url, "--cog-callback-url", "http://127.0.0.1:0"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "green.png"
    Image.new("RGB", (320, 200), (20, 160, 30)).save(path)
    return str(path)


def test_the_answer_streams_from_the_container_with_every_parameter(app, cog, photo):
    page = requests.get(app.url, timeout=10).text
    # The container's address is the host's to know, not every visitor's (issue 18).
    assert "answers come from a Cog container the host runs" in page and cog.url not in page
    client = Client(app.url, verbose=False)
    job = client.submit(image=handle_file(photo), prompt="What is this?", max_length=900,
                        max_new_tokens=90, num_beams=2, temperature=0.4, top_p=0.8,
                        repetition_penalty=1.2, api_name="/ask")
    final = job.result(timeout=60)
    partials = job.outputs()
    assert len(partials) > 1 and all(final.startswith(p) for p in partials)
    assert final.startswith("Answer to 'What is this?': image 320x200 sha256:")
    assert final.endswith("num_beams=2 temperature=0.4 top_p=0.8 repetition_penalty=1.2 "
                          "max_new_tokens=90 max_length=900")


def test_stop_cancels_inside_the_container(app, cog, photo):
    client = Client(app.url, verbose=False)
    job = client.submit(image=handle_file(photo), prompt="Describe it slowly (app)", api_name="/ask")
    cog.wait_for("BUSY")
    job.cancel()
    deadline = time.monotonic() + 15
    while "Describe it slowly (app)" not in cog.cancellations():
        assert time.monotonic() < deadline, "the container never saw the cancel"
        time.sleep(0.05)
    answer = client.predict(image=handle_file(photo), prompt="Next?", api_name="/ask")
    assert answer.startswith("Answer to 'Next?'")
