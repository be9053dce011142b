"""The ONNX Runtime engine and predictor on the committed tiny SmolVLM (tests/fixtures/tiny-smolvlm).

The fixture has the official ONNX names and layout. Its golden.json holds transformers' greedy
ids for one question, so the no-torch path is checked against transformers even where torch is
missing; with torch installed the engine is also compared with `generate()` live, beams and
repetition penalty included.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image

from minigpt4_ui.shared import schema
from minigpt4_ui.server.predictors import PredictionError
from minigpt4_ui.server.predictors.builtin import BuiltinPredictor
from minigpt4_ui.server.predictors.model_weights import ModelWeights
from minigpt4_ui.server.predictors.onnx_engine import Decoding, OnnxVLM, TextStream, Timing, top_p_mask
from minigpt4_ui.server.predictors.smolvlm_onnx import Line, OnnxSmolVLMPredictor

from .hf_cache import FIXTURE

GOLDEN = json.loads((FIXTURE / "golden.json").read_text())
IMAGE = Image.new("RGB", tuple(GOLDEN["image"]["size"]), tuple(GOLDEN["image"]["color"]))
QUESTION = GOLDEN["messages"][0]["content"][1]["text"]


def inputs(**overrides) -> dict:
    return schema.validate({"image": "data:,", "prompt": QUESTION, "temperature": 0.01, "num_beams": 1,
                            "max_new_tokens": 30, **overrides})


@pytest.fixture(scope="module")
def fp32() -> OnnxVLM:
    return OnnxVLM(FIXTURE, precision="fp32")


def test_the_prompt_is_the_chat_template_with_one_tile_of_image_tokens(fp32):
    prompt = fp32.prepare(inputs(), IMAGE)
    assert prompt.tokens == GOLDEN["prompt_length"]
    assert prompt.image_tokens == 64  # one 512-px tile: splitting is off
    assert prompt.pixel_values.shape == (1, 1, 3, 512, 512)


def test_greedy_ids_equal_transformers_golden_ids(fp32):
    prompt = fp32.prepare(inputs(), IMAGE)
    ids = list(fp32.generate(prompt, Decoding.from_inputs(inputs(), 30)))
    assert ids == GOLDEN["ids"]
    assert len(set(ids)) >= 10  # a check with teeth: the tiny model does not repeat one token


@pytest.mark.parametrize("beams,penalty", [(1, 1.5), (3, 1.0), (4, 1.0), (3, 1.5)])
def test_beams_and_repetition_penalty_equal_transformers_generate(fp32, beams, penalty):
    torch = pytest.importorskip("torch", reason="needs requirements-local.txt")
    from transformers import Idefics3ForConditionalGeneration

    from .onnx_export import golden_inputs

    _, _, batch = golden_inputs(str(FIXTURE))
    model = Idefics3ForConditionalGeneration.from_pretrained(str(FIXTURE)).eval()
    with torch.no_grad():
        expected = model.generate(**batch, max_new_tokens=30, do_sample=False, num_beams=beams,
                                  repetition_penalty=penalty)[0, batch["input_ids"].shape[1]:].tolist()
    prompt = fp32.prepare(inputs(), IMAGE)
    ids = list(fp32.generate(prompt, Decoding(max_new_tokens=30, num_beams=beams, repetition_penalty=penalty)))
    assert ids == expected


def test_int8_runs_and_speaks_words():
    int8 = OnnxVLM(FIXTURE, precision="int8")
    prompt = int8.prepare(inputs(), IMAGE)
    ids = list(int8.generate(prompt, Decoding.from_inputs(inputs(), 30)))
    assert len(ids) == 30 and ids[:3] == GOLDEN["ids"][:3]  # quantised: close, not equal
    assert int8.decode(ids).split()


def test_sampling_is_seeded_and_stays_within_top_p(fp32):
    prompt = fp32.prepare(inputs(), IMAGE)
    hot = Decoding(max_new_tokens=20, temperature=2.0, top_p=0.9, seed=1)
    assert list(fp32.generate(prompt, hot)) == list(fp32.generate(prompt, hot))
    scores = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    kept = np.isfinite(top_p_mask(scores, 0.7))[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 + 0.3 reaches 0.7
    assert np.isfinite(top_p_mask(scores, 0.0))[0].tolist() == [True, False, False, False]


def test_max_length_bounds_prompt_and_answer(fp32):
    prompt = fp32.prepare(inputs(max_length=GOLDEN["prompt_length"] + 5), IMAGE)
    assert prompt.max_new_tokens == 5 and "lowered to 5" in prompt.notes[0]
    assert len(list(fp32.generate(prompt, Decoding.from_inputs(inputs(), prompt.max_new_tokens)))) == 5
    with pytest.raises(PredictionError, match=f"at least {GOLDEN['prompt_length'] + 1}"):
        fp32.prepare(inputs(max_length=10), IMAGE)


@pytest.mark.parametrize("beams", [1, 3])
def test_a_stop_ends_generation_within_one_step(fp32, beams):
    prompt = fp32.prepare(inputs(), IMAGE)
    stop = threading.Event()
    timing = Timing()
    made = []
    for token in fp32.generate(prompt, Decoding(max_new_tokens=30, num_beams=beams),
                               should_stop=stop.is_set, timing=timing):
        made.append(token)
        if beams == 1 and len(made) == 4:
            stop.set()
    if beams == 1:
        assert len(made) == 4 and timing.steps == 3  # no decoder run after the stop
    stop.set()
    timing = Timing()
    assert len(list(fp32.generate(prompt, Decoding(max_new_tokens=30, num_beams=beams),
                                  should_stop=stop.is_set, timing=timing))) == 1
    assert timing.steps == 0  # stopped before any step after the prefill


def test_text_stream_writes_whole_characters_only():
    table = {1: b"caf", 2: b"\xc3", 3: b"\xa9", 4: b" ok"}
    stream = TextStream(lambda ids: b"".join(table[i] for i in ids).decode("utf-8", "replace"))
    assert [stream.push(i) for i in (1, 2, 3, 4)] == ["caf", "", "é", " ok"]


def test_the_line_serves_first_come_first_served():
    line = Line()
    first, second, third = line.join(), line.join(), line.join()
    assert (line.ahead(first), line.ahead(second), line.ahead(third)) == (0, 1, 2)
    line.leave(first)
    assert line.wait_turn(second, 0.0) == 0 and line.ahead(third) == 1


def predictor_for(folder, **weights) -> OnnxSmolVLMPredictor:
    ready = ModelWeights(str(folder), "fp32", **weights).start()
    assert ready.wait(5).settled
    return OnnxSmolVLMPredictor(ready, fallback=BuiltinPredictor(), threads=1)


def test_the_predictor_streams_and_names_itself():
    predictor = predictor_for(FIXTURE)
    logs: list[str] = []
    started = []
    text = "".join(predictor.predict(inputs(), IMAGE, logs.append, started=lambda: started.append(1) or True))
    assert text == predictor.engine.decode(GOLDEN["ids"])
    assert started == [1]
    assert predictor.answerer() == "tiny-smolvlm (fp32, ONNX Runtime) on this machine"
    assert "first token after" in "".join(logs) and "30 new tokens" in "".join(logs)


def test_a_second_question_waits_with_its_place_in_its_logs():
    predictor = predictor_for(FIXTURE)
    predictor.load()
    first_logs, second_logs = [], []
    first = predictor.predict(inputs(), IMAGE, first_logs.append)
    assert next(first)  # the first answer is generating: it holds the model
    second = predictor.predict(inputs(), IMAGE, second_logs.append,
                               started=lambda: second_logs.append("STARTED") or True)
    assert next(second) == ""
    assert "waiting for the model: 1 answer ahead of this one" in "".join(second_logs)
    assert "STARTED" not in second_logs  # still `starting` while it waits
    first.close()  # Stop (or a closed tab) frees the model for the next in line
    assert "".join(second) == predictor.engine.decode(GOLDEN["ids"])
    assert "STARTED" in second_logs


def test_without_files_the_stand_in_answers_and_says_so(tmp_path):
    predictor = predictor_for(tmp_path)  # a folder with no model in it
    logs: list[str] = []
    text = "".join(predictor.predict(inputs(), IMAGE, logs.append))
    assert "stand-in" in "".join(logs) and "has no config.json" in "".join(logs)
    assert text == "".join(BuiltinPredictor().predict(inputs(), IMAGE, lambda line: None))
    assert predictor.answerer() == "the built-in stand-in (not a model)"


def test_downloads_off_and_an_empty_cache_mean_the_stand_in_at_once(tmp_path, monkeypatch):
    weights = ModelWeights("HuggingFaceTB/SmolVLM-256M-Instruct", downloads=False).start()
    status = weights.wait(5)
    assert status.state == "unavailable" and "downloads are off" in status.detail
