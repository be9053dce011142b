"""The warm-up question against a real server: ready, a model's failure and an unreachable API,
each in words; and what the banner says meanwhile."""

from __future__ import annotations

import time

from minigpt4_ui.app import warm_up
from minigpt4_ui.app.backend import Backend
from minigpt4_ui.replicate_api import Client
from minigpt4_ui.server import start_background
from minigpt4_ui.server.predictors import PredictionError

from .apprunner import free_port
from .conftest import SERVER_TOKEN
from .test_server import VERSION


def _ended(warming: warm_up.WarmUp) -> warm_up.WarmUpStatus:
    deadline = time.monotonic() + 20
    while (status := warming.status()).state == "warming":
        assert time.monotonic() < deadline, "the warm-up never ended"
        time.sleep(0.02)
    return status


class Failing:
    """A predictor whose model fails, as a broken deployment's does."""

    def predict(self, inputs, image, log, **options):
        raise PredictionError("CUDA out of memory")


def test_ready_with_the_time_it_took(server):
    client = Client(token=SERVER_TOKEN, base_url=server.url, version=VERSION)
    backend = Backend(client=client, embedded=False, notice="**Backend:** a test.")
    assert backend.current_notice() == ("**Backend:** a test.", True)
    status = _ended(backend.warm_up())
    assert status.state == "ready" and status.problem == "" and 0 < status.seconds < 20
    text, settled = backend.current_notice()
    assert settled and text == ("**Backend:** a test.\n\n**Ready:** the model answered a warm-up question "
                                f"in {status.seconds:.1f} s.")


def test_while_it_runs_the_banner_is_not_settled(slow_server):
    client = Client(token=SERVER_TOKEN, base_url=slow_server.url, version=VERSION)
    backend = Backend(client=client, embedded=False, notice="**Backend:** a test.")
    backend.warm_up()
    text, settled = backend.current_notice()
    assert not settled and "**Warming up:** a first small question is on its way to the model" in text
    _ended(backend.warming)
    assert backend.current_notice()[1]


def test_a_model_that_fails_is_named():
    with start_background(token=SERVER_TOKEN, predictor=Failing()) as failing:
        status = _ended(warm_up.WarmUp(Client(token=SERVER_TOKEN, base_url=failing.url, version=VERSION),
                                       who="the test model").start())
    assert (status.state, status.problem) == ("failed", "The model failed: CUDA out of memory")
    assert warm_up.notice(status).endswith(": The model failed: CUDA out of memory. Questions may fail "
                                           "the same way.")


def test_an_api_that_cannot_be_reached_is_named_without_its_address():
    url = f"http://127.0.0.1:{free_port()}"
    status = _ended(warm_up.WarmUp(Client(token=SERVER_TOKEN, base_url=url, version=VERSION, max_retries=0),
                                   who="the test model").start())
    assert (status.state, status.problem) == ("failed", "could not reach the predictions API: connection refused")
    assert url not in warm_up.notice(status)
