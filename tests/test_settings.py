import pytest

from minigpt4_ui.app.settings import DEFAULT_BASE_URL, DEFAULT_VERSION, Settings


def test_defaults_without_environment():
    settings = Settings.from_env({})
    assert (settings.token, settings.base_url, settings.model, settings.version) == (
        None, DEFAULT_BASE_URL, "daanelson/minigpt-4", DEFAULT_VERSION)
    assert settings.tokens_per_second is None


def test_environment_names_match_the_official_client():
    settings = Settings.from_env({"REPLICATE_API_TOKEN": "r8_secret", "REPLICATE_BASE_URL": "http://h:1/",
                                  "MINIGPT4_VERSION": "someone/fork:abc123",
                                  "MINIGPT4_TOKENS_PER_SECOND": "20"})
    assert settings.base_url == "http://h:1"
    assert (settings.model, settings.version) == ("someone/fork", "abc123")
    assert settings.tokens_per_second == 20.0
    assert "r8_secret" not in repr(settings)


@pytest.mark.parametrize("env", [{"MINIGPT4_VERSION": "nope:"}, {"MINIGPT4_TOKENS_PER_SECOND": "-1"},
                                 {"MINIGPT4_TOKENS_PER_SECOND": "fast"}, {"MINIGPT4_DEPLOYMENT": "no-owner"},
                                 {"MINIGPT4_DEPLOYMENT": "a/b/c"}])
def test_bad_values_are_named(env):
    with pytest.raises(ValueError, match=next(iter(env))):
        Settings.from_env(env)


def test_public_host_limits_are_configurable():
    settings = Settings.from_env({"MINIGPT4_VISITOR_LIMIT_PER_HOUR": "0", "MINIGPT4_MAX_QUEUE": "5",
                                  "MINIGPT4_MAX_UPLOAD_MB": "3", "SPACE_ID": "me/studio"})
    assert (settings.visitor_limit_per_hour, settings.max_queue, settings.max_upload_mb) == (0, 5, 3)
    assert settings.proxy_hops == 1  # a Space has one proxy in front
    assert Settings.from_env({"SPACE_ID": "me/studio", "MINIGPT4_TRUSTED_PROXY_HOPS": "2"}).proxy_hops == 2
    assert Settings.from_env({}).proxy_hops == 0
    with pytest.raises(ValueError, match="MINIGPT4_MAX_QUEUE"):
        Settings.from_env({"MINIGPT4_MAX_QUEUE": "-2"})


def test_a_visitors_share_of_the_queue_is_an_eighth_unless_set():
    assert Settings.from_env({}).max_queue_per_visitor is None  # an eighth of the queue, in the app
    assert Settings.from_env({"MINIGPT4_MAX_QUEUE_PER_VISITOR": "0"}).max_queue_per_visitor == 0
    assert Settings.from_env({"MINIGPT4_MAX_QUEUE_PER_VISITOR": "40"}).max_queue_per_visitor == 40
    with pytest.raises(ValueError, match="MINIGPT4_MAX_QUEUE_PER_VISITOR"):
        Settings.from_env({"MINIGPT4_MAX_QUEUE_PER_VISITOR": "many"})


def test_deployment_warm_up_and_mcp_switches():
    assert (Settings.from_env({}).deployment, Settings.from_env({}).warm_up, Settings.from_env({}).mcp) == (
        None, False, False)
    settings = Settings.from_env({"MINIGPT4_DEPLOYMENT": " acme/minigpt4-event ", "MINIGPT4_WARM_UP": "1",
                                  "MINIGPT4_MCP": "true"})
    assert (settings.deployment, settings.warm_up, settings.mcp) == ("acme/minigpt4-event", True, True)
    assert Settings.from_env({"GRADIO_MCP_SERVER": "True"}).mcp  # Gradio's own switch


def test_help_lists_the_deployment_warm_up_and_mcp_flags():
    import subprocess
    import sys
    from pathlib import Path

    shown = subprocess.run([sys.executable, "app.py", "--help"], cwd=Path(__file__).resolve().parent.parent,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "--deployment OWNER/NAME send the chat's questions to this Replicate deployment" in text
    assert "--warm-up send one tiny prediction at start" in text and "MINIGPT4_WARM_UP=1" in text
    assert "--mcp serve ask, ask_model and list_models as MCP tools for agents at /gradio_api/mcp/" in text
    refused = subprocess.run([sys.executable, "app.py", "--deployment", "nope"], timeout=60, capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parent.parent)
    assert refused.returncode == 2  # like any setting that cannot work
    assert refused.stderr.strip().endswith("error: --deployment must name a deployment as owner/name, got 'nope'")


def test_app_parses_the_new_flags():
    import app

    args = app.parse_args(["--deployment", "acme/minigpt4-event", "--warm-up", "--mcp"])
    assert (args.deployment, args.warm_up, args.mcp) == ("acme/minigpt4-event", True, True)


@pytest.mark.parametrize("cog, callback", [(None, None), ("http://127.0.0.1:5000", None),
                                           ("https://cog.example:8443", "http://127.0.0.1:0"),
                                           ("http://[::1]:5000", "http://172.17.0.1:5001")])
def test_cog_addresses_that_can_work_pass_the_check(cog, callback):
    Settings(cog_url=cog, cog_callback_url=callback).check()


@pytest.mark.parametrize("cog, callback, named", [("notaurl", None, "--cog"), ("ftp://host", None, "--cog"),
                                                  (None, "http://127.0.0.1:0", "--cog-callback-url"),
                                                  ("http://127.0.0.1:5000", "https://a:1", "--cog-callback-url")])
def test_cog_addresses_that_cannot_work_are_refused_naming_the_option(cog, callback, named):
    with pytest.raises(ValueError, match=f"^{named} "):
        Settings(cog_url=cog, cog_callback_url=callback).check()
