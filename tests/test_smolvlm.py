"""The SmolVLM predictor's real loading and generation code, on a tiny random model (no network).

The whole module is skipped when torch or transformers is missing; CI installs
requirements-local.txt so it runs there. The tiny model (tests/tiny_vlm.py) answers with random
words, always exactly max_new_tokens of them (one word per token), never ending early.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time

import pytest

pytest.importorskip("torch", reason="needs the optional requirements-local.txt (torch)")
pytest.importorskip("transformers", reason="needs the optional requirements-local.txt (transformers)")

import requests  # noqa: E402
from PIL import Image  # noqa: E402

from minigpt4_ui.shared import schema  # noqa: E402
from minigpt4_ui.app.conversation import Turn, fold  # noqa: E402
from minigpt4_ui.server import start_background  # noqa: E402
from minigpt4_ui.server.predictors import PredictionError, smolvlm  # noqa: E402
from minigpt4_ui.server.predictors.smolvlm import LocalModelError, SmolVLMPredictor, messages_from_prompt

from .tiny_vlm import IMAGE_SEQ_LEN, build_tiny_vlm  # noqa: E402

VERSION = "e447a8583cffd86ce3b93f9c2cd24f2eae603d99ace6afa94b33a08e94a3cd06"
IMAGE = Image.new("RGB", (640, 480), (30, 90, 200))
LONG = 3000  # more tokens than any test waits for: generation only ends early by stopping


@pytest.fixture(scope="module", autouse=True)
def offline():
    """HF_HUB_OFFLINE=1 while this module runs (the predictor is offline-first anyway)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(build_tiny_vlm(tmp_path_factory.mktemp("tiny-smolvlm")))


@pytest.fixture(scope="module")
def predictor(tiny_model) -> SmolVLMPredictor:
    return SmolVLMPredictor(tiny_model).load()


def inputs(**overrides) -> dict:
    """Validated inputs with defaults, but greedy, streamed and short unless overridden."""
    raw = {"image": "data:,", "prompt": "What is in this picture?", "temperature": 0.01, "num_beams": 1,
           "max_new_tokens": 12, **overrides}
    return schema.validate(raw)


def run(predictor, **overrides) -> tuple[list[str], str]:
    """All non-empty chunks of one prediction, and its logs."""
    logs: list[str] = []
    chunks = [c for c in predictor.predict(inputs(**overrides), IMAGE, logs.append) if c]
    return chunks, "".join(logs)


@pytest.fixture
def stops(monkeypatch) -> list:
    """Every StopOnEvent the predictor makes from now on, in order (the latest is last)."""
    made: list = []

    class Recording(smolvlm.StopOnEvent):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(smolvlm, "StopOnEvent", Recording)
    return made


def no_generate_threads() -> bool:
    return not [t for t in threading.enumerate() if t.name == "smolvlm-generate" and t.is_alive()]


# -- loading --------------------------------------------------------------------------------

def test_loads_from_a_folder_with_image_splitting_off(tiny_model, predictor):
    saved = json.loads((open(os.path.join(tiny_model, "processor_config.json"))).read())
    assert saved["image_processor"]["do_image_splitting"] is True  # as the real checkpoint ships
    assert type(predictor.model).__name__ == "Idefics3ForConditionalGeneration"
    assert predictor.processor.image_processor.do_image_splitting is False
    assert predictor.plan(inputs(), IMAGE).image_tokens == IMAGE_SEQ_LEN  # one tile, not five


def test_the_first_prediction_loads_the_model_and_logs_it(tiny_model):
    fresh = SmolVLMPredictor(tiny_model)
    assert fresh.model is None
    chunks, logs = run(fresh, max_new_tokens=3)
    assert len(chunks) == 3
    assert f"loading {tiny_model}" in logs and "(offline)" in logs
    assert "model loaded in" in logs and "first token after" in logs and "tokens/s" in logs


def test_a_missing_folder_fails_fast_with_a_clear_message(tmp_path):
    started = time.monotonic()
    with pytest.raises(LocalModelError, match="no model folder at .*hf download"):
        SmolVLMPredictor(str(tmp_path / "nowhere"))
    with pytest.raises(LocalModelError, match="no config.json"):
        SmolVLMPredictor(str(tmp_path))
    assert time.monotonic() - started < 1


def test_a_hub_id_not_in_the_cache_fails_fast_without_the_network():
    started = time.monotonic()
    with pytest.raises(LocalModelError) as caught:
        SmolVLMPredictor("nobody-here/no-such-smolvlm")
    assert time.monotonic() - started < 1
    message = str(caught.value)
    assert "'nobody-here/no-such-smolvlm' is neither a folder nor in the Hugging Face cache" in message
    assert "hf download nobody-here/no-such-smolvlm" in message and "--allow-download" in message


def test_missing_dependencies_name_the_requirements_file(monkeypatch):
    real = smolvlm.importlib.util.find_spec
    monkeypatch.setattr(smolvlm.importlib.util, "find_spec",
                        lambda name: None if name == "torch" else real(name))
    with pytest.raises(LocalModelError, match=r"needs torch.*pip install -r requirements-local.txt"):
        SmolVLMPredictor()


# -- prompts and parameters -----------------------------------------------------------------

def test_a_folded_prompt_becomes_a_multi_turn_chat_with_the_image_first(predictor):
    prompt = fold([Turn("What is it?", "A car."), Turn("Colour?", "Red.")], "Why red?",
                  max_length=4000, max_new_tokens=3000).prompt
    messages = messages_from_prompt(prompt)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "What is it?"}]
    assert messages[4]["content"] == [{"type": "text", "text": "Why red?"}]
    text = predictor.processor.apply_chat_template(messages, add_generation_prompt=True)
    assert text == ("<|im_start|>User:<image>What is it?<end_of_utterance>\nAssistant: A car."
                    "<end_of_utterance>\nUser: Colour?<end_of_utterance>\nAssistant: Red."
                    "<end_of_utterance>\nUser: Why red?<end_of_utterance>\nAssistant:")
    assert predictor.plan(inputs(prompt=prompt), IMAGE).turns == 3


def test_temperature_at_its_minimum_is_greedy_and_above_it_samples(predictor):
    greedy = predictor.plan(inputs(temperature=0.01), IMAGE).generate_kwargs
    assert greedy["do_sample"] is False and greedy["temperature"] is None
    sampled = predictor.plan(inputs(temperature=0.7, top_p=0.5, num_beams=2,
                                    repetition_penalty=1.3), IMAGE).generate_kwargs
    assert (sampled["do_sample"], sampled["temperature"], sampled["top_p"]) == (True, 0.7, 0.5)
    assert (sampled["num_beams"], sampled["repetition_penalty"]) == (2, 1.3)


@pytest.mark.parametrize("overrides", [
    {"temperature": 1.0, "top_p": 0.9, "repetition_penalty": 1.5},
    {"temperature": 2.0, "top_p": 0.0, "repetition_penalty": 0.5},
    {"temperature": 0.7, "num_beams": 2},  # beam sampling, as MiniGPT-4 does
])
def test_sampling_parameters_generate(predictor, overrides):
    chunks, _ = run(predictor, max_new_tokens=5, **overrides)
    assert len("".join(chunks).split()) == 5


def test_max_new_tokens_is_honoured(predictor, stops):
    chunks, logs = run(predictor, max_new_tokens=7)
    assert len("".join(chunks).split()) == 7 and stops[-1].new_tokens == 7
    assert "up to 7 new tokens" in logs and "7 new tokens in" in logs


def test_max_length_bounds_prompt_plus_answer(predictor):
    prompt_tokens = predictor.plan(inputs(), IMAGE).prompt_tokens
    chunks, logs = run(predictor, max_length=prompt_tokens + 4, max_new_tokens=50)
    assert len("".join(chunks).split()) == 4
    assert f"max_new_tokens 50 lowered to 4 so prompt + answer fit max_length {prompt_tokens + 4}" in logs


def test_a_max_length_with_no_room_for_an_answer_fails_clearly(predictor):
    prompt_tokens = predictor.plan(inputs(), IMAGE).prompt_tokens
    with pytest.raises(PredictionError, match=(
            f"max_length {prompt_tokens} leaves no room for an answer: the prompt is already "
            f"{prompt_tokens} tokens \\({IMAGE_SEQ_LEN} of them for the image\\). "
            f"Set max_length to at least {prompt_tokens + 1}.")):
        run(predictor, max_length=prompt_tokens)


# -- streaming, beams and stopping ----------------------------------------------------------

def test_greedy_streams_chunks_that_join_to_the_direct_generate_answer(predictor):
    chunks, logs = run(predictor, num_beams=1, max_new_tokens=16)
    plan = predictor.plan(inputs(num_beams=1, max_new_tokens=16), IMAGE)
    output = predictor.model.generate(**plan.model_inputs, **plan.generate_kwargs)
    direct = predictor.processor.tokenizer.decode(output[0, plan.prompt_tokens:],
                                                  skip_special_tokens=True)
    assert len(chunks) > 1 and "".join(chunks) == direct
    assert "first token after" in logs


def test_beam_search_yields_one_final_answer(predictor):
    chunks, logs = run(predictor, num_beams=3, max_new_tokens=10)
    assert len(chunks) == 1 and len(chunks[0].split()) == 10
    assert "num_beams 3" in logs and "answer after" in logs


@pytest.mark.parametrize("num_beams", [1, 3])
def test_closing_the_generator_stops_generation_within_one_step(predictor, stops, num_beams):
    logs: list[str] = []
    gen = predictor.predict(inputs(num_beams=num_beams, max_new_tokens=LONG), IMAGE, logs.append)
    for chunk in gen:  # streaming: wait for words; beams: wait until decoding is under way
        stop = stops[-1] if stops else None
        if stop is not None and stop.steps >= 3 and (chunk or num_beams > 1):
            break
    gen.close()
    assert stop is stops[-1] and stop.stopped
    assert stop.stopped_at - stop.requested_at <= 1  # the step in flight, no more
    assert stop.steps == stop.stopped_at and stop.new_tokens < LONG
    assert no_generate_threads()
    assert logs[-1].endswith(", canceled\n")


def test_a_cancel_event_stops_generation_too(predictor, stops):
    cancel = threading.Event()
    chunks = []
    for chunk in predictor.predict(inputs(max_new_tokens=LONG), IMAGE, lambda line: None, cancel):
        chunks.append(chunk)
        if chunk:
            cancel.set()
    assert stops[-1].stopped and stops[-1].new_tokens < LONG


def test_a_second_prediction_waits_for_the_model_and_says_so(predictor):
    first = predictor.predict(inputs(max_new_tokens=LONG), IMAGE, lambda line: None)
    while not next(first):
        pass  # the first prediction now holds the model
    logs: list[str] = []
    second = predictor.predict(inputs(max_new_tokens=3), IMAGE, logs.append)
    assert next(second) == "" and "waiting for the model" in "".join(logs)
    first.close()
    assert len("".join(second).split()) == 3
    assert "waited" in "".join(logs)


# -- through the embedded server ------------------------------------------------------------

@pytest.fixture(scope="module")
def local_server(predictor):
    with start_background(predictor=predictor) as running:
        yield running


def png_uri() -> str:
    buffer = io.BytesIO()
    IMAGE.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def create(server, prefer: str | None = None, **extra) -> dict:
    body = {"version": VERSION, "input": {"image": png_uri(), "prompt": "What is it?",
                                          "temperature": 0.01, "num_beams": 1, **extra}}
    response = requests.post(f"{server.url}/v1/predictions", json=body, timeout=60,
                             headers={"Prefer": prefer} if prefer else {})
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_the_server_runs_a_prediction_with_the_local_model(local_server):
    prediction = create(local_server, prefer="wait", max_new_tokens=9, num_beams=1)
    assert prediction["status"] == "succeeded", prediction
    assert isinstance(prediction["output"], str) and len(prediction["output"].split()) == 9
    logs = prediction["logs"]
    assert "smolvlm: model" in logs and "loaded in" in logs
    assert "first token after" in logs and "tokens/s" in logs
    assert prediction["metrics"]["predict_time"] > 0


@pytest.mark.parametrize("num_beams", [1, 3])
def test_the_server_cancels_a_running_local_prediction(local_server, num_beams):
    # Streaming: cancel once words arrive. Beam search yields nothing until it ends, so cancel
    # once generation has started: the predictor's empty heartbeat chunks let the runner see it.
    prediction = create(local_server, max_new_tokens=LONG, num_beams=num_beams)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        current = requests.get(prediction["urls"]["get"], timeout=10).json()
        if current["output"] if num_beams == 1 else "up to 3000 new tokens" in current["logs"]:
            break
        time.sleep(0.02)
    canceled = requests.post(prediction["urls"]["cancel"], timeout=10).json()
    assert canceled["status"] == "canceled"
    assert len((canceled["output"] or "").split()) < LONG
    after = create(local_server, prefer="wait", max_new_tokens=2)  # the model is free again
    assert after["status"] == "succeeded" and "waiting for the model" not in after["logs"]
    assert no_generate_threads()


def test_the_server_reports_a_failure_message(local_server):
    prediction = create(local_server, prefer="wait", max_length=5)
    assert prediction["status"] == "failed"
    assert "max_length 5 leaves no room for an answer" in prediction["error"]
