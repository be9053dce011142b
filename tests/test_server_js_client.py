"""The official replicate JavaScript client (tests/js, pinned in package-lock.json) against the server.

Needs Node 18+ and `npm ci --prefix tests/js`; without them this test fails (it never skips), so a CI
that forgot the install step says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from minigpt4_ui.server import start_background

from .conftest import SERVER_TOKEN, png_bytes
from .test_server import EXPECTED, VERSION

JS_DIR = Path(__file__).parent / "js"
DEPLOYMENT = "acme/minigpt4-event"  # the one flows.mjs uses
INSTALL_HINT = "run `npm ci --prefix tests/js` (Node 18+ and npm are needed)"


@pytest.fixture(scope="module")
def flows(tmp_path_factory) -> dict:
    node = shutil.which("node")
    assert node, f"node is not installed: {INSTALL_HINT}"
    assert (JS_DIR / "node_modules" / "replicate" / "package.json").is_file(), (
        f"tests/js/node_modules is missing: {INSTALL_HINT}")
    installed = json.loads((JS_DIR / "node_modules" / "replicate" / "package.json").read_text())
    pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"]["replicate"]
    assert installed["version"] == pinned, (
        f"tests/js has replicate {installed['version']}, package.json pins {pinned}: {INSTALL_HINT}")
    png = tmp_path_factory.mktemp("js") / "cat.png"
    png.write_bytes(png_bytes())
    # The flows' webhook receiver listens on loopback.
    with start_background(token=SERVER_TOKEN, tokens_per_second=400, allow_hosts=("127.0.0.1",),
                          deployments=(DEPLOYMENT,)) as server, \
            start_background(token=SERVER_TOKEN, tokens_per_second=4, deployments=(DEPLOYMENT,)) as slow:
        done = subprocess.run([node, str(JS_DIR / "flows.mjs"), server.url, SERVER_TOKEN, str(png)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SLOW_SERVER_URL": slow.url})
    assert done.returncode == 0, f"flows.mjs exited {done.returncode}:\n{done.stderr[-4000:]}"
    return {"results": json.loads(done.stdout), "png": png.read_bytes()}


def flow(flows: dict, name: str) -> dict:
    result = flows["results"][name]
    assert result["ok"], f"the JS flow {name!r} failed:\n{result['error']}"
    return result


@pytest.mark.parametrize("name", ["run_version", "run_model", "run_upload", "run_upload_strategy",
                                  "run_poll_mode"])
def test_run_returns_the_answer(flows, name):
    assert flow(flows, name)["output"] == EXPECTED


def test_run_uploads_a_buffer_through_the_files_api(flows):
    assert flow(flows, "run_upload")["uploaded"] == 1


def test_run_of_a_failed_prediction_throws(flows):
    assert flow(flows, "run_failure")["error"] == (
        "Prediction failed: could not read the image: not an image file")


def test_stream_yields_every_chunk_then_done(flows):
    result = flow(flows, "stream")
    assert result["output"] == EXPECTED and result["chunks"] > 50 and result["done"] == "{}"


def test_predictions_create_wait_get_list(flows):
    result = flow(flows, "predictions")
    assert (result["created_status"], result["has_stream_url"]) == ("starting", True)
    assert result["finished_status"] == "succeeded"
    assert result["output"] == result["fetched_output"] == EXPECTED
    assert result["listed"] is True
    assert result["synced_status"] == result["via_model_status"] == "succeeded"
    assert result["via_model_version"] == VERSION


def test_cancel(flows):
    assert flow(flows, "cancel")["status"] == "canceled"


def test_files_create_get_list_use_delete(flows):
    result = flow(flows, "files")
    assert (result["size"], result["content_type"]) == (len(flows["png"]), "image/png")
    assert result["metadata"] == {"purpose": "js-test"}
    assert result["sha256"] == hashlib.sha256(flows["png"]).hexdigest()
    assert result["same"] and result["listed"]
    assert result["output"] == EXPECTED
    assert result["after_delete"] == 404


def test_webhooks_are_validated_by_the_js_client(flows):
    result = flow(flows, "webhooks")
    assert result["secret_prefix"] == "whsec_"
    assert result["statuses"] == ["processing", "succeeded"]
    assert result["valid"] == [True, True] and result["via_request"] is True
    assert result["tampered"] is False


def test_errors_carry_status_codes(flows):
    result = flow(flows, "errors")
    assert result["bad_version"]["status"] == 422
    assert "The specified version does not exist" in result["bad_version"]["message"]
    assert result["bad_input"]["status"] == 422 and "input.top_p" in result["bad_input"]["message"]
    assert result["unauthenticated"]["status"] == 401


def test_deployment_get_list_predictions_and_cancel(flows):
    result = flow(flows, "deployments")
    assert (result["release_model"], result["release_version"], result["hardware"]) == (
        "daanelson/minigpt-4", VERSION, "cpu")
    assert result["listed"] == [DEPLOYMENT]
    assert (result["created_status"], result["deployment"]) == ("starting", DEPLOYMENT)
    assert result["finished_status"] == "succeeded"
    assert result["output"] == result["synced_output"] == EXPECTED
    assert result["canceled_status"] == "canceled"
    assert result["missing"] == 404
