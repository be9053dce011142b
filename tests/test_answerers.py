"""Honest names: who answers, in the banner and each answer's status, and what the picker puts first."""

from __future__ import annotations

from minigpt4_ui.app import ui
from minigpt4_ui.app.backend import VISITOR_TOKEN_NOTICE, Backend, smolvlm_notice
from minigpt4_ui.shared.facts import MODEL, VERSION
from minigpt4_ui.replicate_api import Client
from minigpt4_ui.server.predictors.model_weights import WeightsStatus

LOCAL = "HuggingFaceTB/SmolVLM-256M-Instruct"


def embedded(**answerers) -> Backend:
    client = Client(token="t", base_url="http://127.0.0.1:9", version=VERSION)
    return Backend(client=client, embedded=True, notice="", answerers=answerers)


def test_each_answer_is_named_by_who_writes_it():
    backend = embedded(**{MODEL: lambda: "SmolVLM-256M-Instruct (int8, ONNX Runtime) on this machine",
                          LOCAL: lambda: "SmolVLM-256M-Instruct (int8, ONNX Runtime) on this machine"})
    assert backend.answered_by(MODEL, None) == "SmolVLM-256M-Instruct (int8, ONNX Runtime) on this machine"
    assert backend.answered_by("yorickvp/llava-13b", None) == (
        "a built-in stand-in for yorickvp/llava-13b, not the model (a Replicate token gets the real one)")
    assert backend.answered_by(MODEL, " r8_visitor ") == f"{MODEL} on Replicate"  # the visitor's own token
    remote = Backend(client=Client(token="t", base_url="http://10.0.0.5:5000", version=VERSION), embedded=False, notice="")
    assert remote.answered_by(MODEL, None) == f"{MODEL} on this host's predictions API"  # no address
    assert remote.answered_by(MODEL, "r8_visitor") == f"{MODEL} on Replicate"  # theirs goes to Replicate only


def test_offline_the_picker_and_compare_put_the_local_models_first():
    models, contenders, params = ui.model_choices(embedded(**{MODEL: str, LOCAL: str,
                                                              "HuggingFaceTB/SmolVLM-500M-Instruct": str}))
    assert models[:3] == [LOCAL, "HuggingFaceTB/SmolVLM-500M-Instruct", MODEL]
    assert contenders[:2] == [LOCAL, LOCAL] and params[1] == '{"num_beams": 1, "temperature": 0.01}'
    assert ui.model_choices(Backend(client=Client(token="t", version=VERSION), embedded=False, notice=""))[0] == ui.MODELS


def test_the_banner_says_what_answers_at_each_stage():
    name = "SmolVLM-256M-Instruct"
    ready, settled = smolvlm_notice(WeightsStatus("ready", folder="/x"), name, "int8")
    assert settled and ready.startswith(f"**{name}**, a small open model, answers on this machine")
    assert "not MiniGPT-4" in ready and "/x" not in ready
    getting, settled = smolvlm_notice(WeightsStatus("downloading", done_bytes=120e6, total_bytes=265e6), name, "int8")
    assert not settled and "120 of 265 MB" in getting and "Questions asked now wait for it" in getting
    missing, settled = smolvlm_notice(WeightsStatus("unavailable", "not in /root/.cache"), name, "int8")
    assert settled and missing.startswith("**Demo mode:**") and "/root" not in missing
    assert "starting the app once with network access" in missing


def test_the_banner_follows_a_visitors_own_token():
    downloading = embedded()
    downloading.banner = lambda: ("**Getting SmolVLM-256M-Instruct**", False)
    assert downloading.current_notice(None) == ("**Getting SmolVLM-256M-Instruct**", False)
    assert downloading.current_notice("  ") == ("**Getting SmolVLM-256M-Instruct**", False)
    assert downloading.current_notice(" r8_visitor ") == (VISITOR_TOKEN_NOTICE, True)
    assert VISITOR_TOKEN_NOTICE.startswith("**Your Replicate token:** your questions go to [MiniGPT-4]")
    remote = Backend(client=Client(token="t", version=VERSION), embedded=False, notice="**Backend:** on Replicate.")
    assert remote.current_notice("") == ("**Backend:** on Replicate.", True)
    assert remote.current_notice("r8_visitor")[0] == VISITOR_TOKEN_NOTICE
