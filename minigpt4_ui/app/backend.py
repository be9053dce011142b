"""Which predictions API the app talks to: Replicate, a server the user named, or the embedded one."""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from dataclasses import dataclass, field, replace
from typing import Callable, NamedTuple

from ..shared.facts import MODEL, MODEL_PAGE
from ..replicate_api import Client
from .settings import DEFAULT_BASE_URL, Settings
from .warm_up import WarmUp, notice as warm_up_notice

log = logging.getLogger(__name__)


VISITOR_TOKEN_NOTICE = (f"**Your Replicate token:** your questions go to [MiniGPT-4]({MODEL_PAGE}) on Replicate, "
                        "on your account, and so do Compare's and any model you pick. Remove the token under "
                        "*Settings and history* to go back to this demo's own answers.")


def normalise_token(visitor_token: str | None) -> str | None:
    """A visitor's pasted token without surrounding blanks, or None when there is none."""
    token = (visitor_token or "").strip()
    return token or None


@dataclass
class Backend:
    """A ready client plus what the UI should tell the user about it.

    `banner()` gives the notice as it is now (it changes while the default model downloads) and
    whether it will change again; `answered_by()` says who writes an answer; `warm_up()` sends
    the warm-up question, whose progress the notice then shows.
    """

    client: Client
    embedded: bool
    notice: str
    close: Callable[[], None] = field(default=lambda: None)
    banner: Callable[[], tuple[str, bool]] | None = None
    # Who answers each model that really runs here (MiniGPT-4's questions included), by `owner/name`.
    answerers: dict[str, Callable[[], str]] = field(default_factory=dict)
    warming: WarmUp | None = None

    @property
    def local_models(self) -> list[str]:
        """The open models that answer on this machine, besides MiniGPT-4's stand-in."""
        return [model for model in self.answerers if model != MODEL]

    def current_notice(self, visitor_token: str | None = None) -> tuple[str, bool]:
        """The banner's text now for a visitor, and whether it is settled (will not change by
        itself): a visitor's own token decides who answers their questions."""
        if normalise_token(visitor_token) is not None:
            return VISITOR_TOKEN_NOTICE, True
        text, settled = self.banner() if self.banner else (self.notice, True)
        if self.warming is None:
            return text, settled
        status = self.warming.status()
        return f"{text}\n\n{warm_up_notice(status)}", settled and status.state != "warming"

    def warm_up(self) -> WarmUp:
        """Send the warm-up question to the host's model, in the background."""
        self.warming = WarmUp(self.client, who=self.answered_by(self.client.model, None)).start()
        return self.warming

    def answered_by(self, model: str, visitor_token: str | None, *, version: str | None = None) -> str:
        """Who writes an answer for `model` ("SmolVLM-256M-Instruct (int8, …) on this machine");
        `version` when one is asked for by id (the host's own model without one goes to its
        deployment, if it has one)."""
        if normalise_token(visitor_token) is not None:
            return f"{model} on Replicate"
        if not self.embedded:
            where = "Replicate" if self.client.base_url == DEFAULT_BASE_URL else "this host's predictions API"
            if self.client.deployment and model == self.client.model and version is None:
                return f"{model} on the host's deployment {self.client.deployment} ({where})"
            return f"{model} on {where}"
        if model in self.answerers:
            return self.answerers[model]()
        if model != MODEL:
            return f"a built-in stand-in for {model}, not the model (a Replicate token gets the real one)"
        return "the built-in stand-in (not a model)"

    def client_for(self, visitor_token: str | None) -> Client:
        """The host's client, or one on Replicate with a visitor's own token (never stored)."""
        token = normalise_token(visitor_token)
        if token is None:
            return self.client
        # Replicate's own address, whatever the host's is: a token for Replicate is no business
        # of the host's own server (REPLICATE_BASE_URL), which could read and keep it.
        return Client(token=token, base_url=DEFAULT_BASE_URL, model=self.client.model,
                      version=self.client.version, timeout=self.client.timeout)


STARTUP_LOOK_S = 1.0  # how long the start waits for the default model's files to be found

def smolvlm_notice(status, name: str, precision: str) -> tuple[str, bool]:
    """The banner while the default model is looked for, downloaded, ready or unavailable."""
    token = f"To ask [MiniGPT-4]({MODEL_PAGE}), add your Replicate token under *Settings and history*."
    if status.state == "ready":
        return (f"**{name}**, a small open model, answers on this machine (ONNX Runtime, {precision}); "
                f"it is not MiniGPT-4. {token}", True)
    if status.state == "unavailable":
        return ("**Demo mode:** a built-in stand-in answers by measuring the image; it is not "
                f"[MiniGPT-4]({MODEL_PAGE}) nor any model. The small open model {name} is not on this "
                "machine: the host gets it by starting the app once with network access. To ask "
                "MiniGPT-4, add your Replicate token under *Settings and history*.", True)
    if status.state == "downloading":
        return (f"**Getting {name}**, a small open model that will answer on this machine: "
                f"{status.progress() or 'starting the download'}. Questions asked now wait for it. "
                + token, False)
    return f"**Starting:** looking for {name}, the small open model that answers here. {token}", False


def local_model_notice(name: str) -> str:
    return (f"**Local model:** answers come from `{name}`, a small open model on this machine, not "
            f"[MiniGPT-4]({MODEL_PAGE}). To ask MiniGPT-4, add your Replicate token under *Settings and history*.")


def cog_notice(streams: bool) -> str:
    """The banner of a Cog container; its address is the host's to know, not every visitor's."""
    how = ("Answers stream as the model writes them." if streams else
           "Answers arrive whole: the container has no callback address (`--cog-callback-url`) "
           "to send progress to.")
    return ("**Self-hosted model:** answers come from a Cog container the host runs; images stay "
            f"on the host's machines. {how} While the container boots (minutes for MiniGPT-4's "
            "weights) questions wait in *Starting*, with its setup logs.")


def client_for(settings: Settings) -> Client:
    """The wrapper's client for the configured API, token, model, version, deployment and timeout."""
    return Client(token=settings.token, base_url=settings.base_url, model=settings.model,
                  version=settings.version, deployment=settings.deployment, timeout=settings.api_timeout)


def deployment_notice(settings: Settings) -> str:
    """The banner when the host's own deployment answers the chat."""
    where = "on Replicate" if settings.base_url == DEFAULT_BASE_URL else "on this host's predictions API"
    return (f"**Backend:** the host's own deployment `{settings.deployment}` {where} answers: always-on "
            f"instances of `{settings.model}`, so questions do not wait for a cold boot.")


def connect(settings: Settings) -> Backend:
    """Use a Cog container when one is named, else Replicate (or REPLICATE_BASE_URL) when
    configured, else the embedded server with its own predictor.

    A Cog container is fronted by the embedded server, so the app speaks Replicate's API to it.
    The embedded server runs `settings.local_model` when one is given (loaded now, so a missing
    model fails at start-up with CannotStart), else SmolVLM on ONNX Runtime.
    """
    if settings.cog_url:
        return _embedded(_without_deployment(settings, "a Cog container is named"))
    if settings.token or settings.base_url != DEFAULT_BASE_URL:
        if settings.local_model:
            log.warning("a predictions API is configured, so the local model %s is not used",
                        settings.local_model)
        # The host's own API address is theirs to know, not every visitor's.
        where = "Replicate" if settings.base_url == DEFAULT_BASE_URL else "this host's predictions API"
        notice = (deployment_notice(settings) if settings.deployment
                  else f"**Backend:** `{settings.model}` on {where}.")
        return Backend(client=client_for(settings), embedded=False, notice=notice)

    return _embedded(_without_deployment(settings, "no REPLICATE_API_TOKEN is set"))


def _without_deployment(settings: Settings, why: str) -> Settings:
    """The settings without a deployment, which lives on Replicate (or a named API), saying so."""
    if settings.deployment:
        log.warning("%s, so the deployment %s is not used", why, settings.deployment)
    return replace(settings, deployment=None)


class CannotStart(Exception):
    """The embedded server's model cannot start: a local model missing or unloadable, say."""


class _Answering(NamedTuple):
    """Who answers behind the embedded server, and what the app says about it."""

    options: dict  # for start_background
    notice: str
    answerers: dict[str, Callable[[], str]]
    close: Callable[[], None] = lambda: None
    banner: Callable[[], tuple[str, bool]] | None = None


def _cog(settings: Settings) -> _Answering:
    from ..server.predictors.cog import CogPredictor

    if settings.token or settings.local_model:
        # Images must not leave for Replicate just because a token is in the environment.
        log.warning("a Cog container is named, so REPLICATE_API_TOKEN and --local-model are not used")
    cog = CogPredictor(settings.cog_url, callback_url=settings.cog_callback_url)
    return _Answering(options={"predictor": cog, "openapi_schema": cog.openapi_schema, "tokens_per_second": None},
                      notice=cog_notice(cog.streams), answerers={MODEL: lambda: "the model in the Cog container"},
                      close=cog.close)


def _local_model(settings: Settings) -> _Answering:
    from ..server.predictors.smolvlm import SmolVLMPredictor

    predictor = SmolVLMPredictor(settings.local_model, allow_download=settings.allow_download)
    predictor.load()
    # A real model sets its own pace.
    return _Answering(options={"predictor": predictor, "tokens_per_second": None},
                      notice=local_model_notice(predictor.name),
                      answerers={MODEL: lambda: f"{predictor.name} (transformers) on this machine"})


def _smolvlm(settings: Settings) -> _Answering:
    from ..server.catalog import LOCAL_MODELS
    from ..server.predictors.builtin import BuiltinPredictor, StandInPredictor
    from ..server.predictors.model_weights import ModelWeights
    from ..server.predictors.smolvlm_onnx import OnnxSmolVLMPredictor

    weights = ModelWeights(settings.smolvlm, settings.precision, downloads=settings.downloads).start()
    weights.wait(STARTUP_LOOK_S)  # a cache hit or an offline miss: the first page says so already
    smolvlm = OnnxSmolVLMPredictor(weights, fallback=BuiltinPredictor()).warm()
    # The SmolVLM sizes can also be picked by name; a size other than the default is fetched
    # when it is first asked for.
    sizes = {model.ref: smolvlm if model.ref == settings.smolvlm else OnnxSmolVLMPredictor(
                 ModelWeights(model.ref, settings.precision, downloads=settings.downloads),
                 fallback=StandInPredictor(model.spec))
             for model in LOCAL_MODELS}
    banner = lambda: smolvlm_notice(weights.status(), weights.name, weights.precision)  # noqa: E731
    return _Answering(options={"predictor": smolvlm, "tokens_per_second": settings.tokens_per_second,
                               "model_predictors": sizes},
                      notice=banner()[0], banner=banner,
                      answerers={MODEL: smolvlm.answerer, **{ref: p.answerer for ref, p in sizes.items()}})


def _embedded(settings: Settings) -> Backend:
    # Only the embedded case needs the server code.
    from ..server import start_background
    from ..server.predictors import PredictionError

    builder = _cog if settings.cog_url else _local_model if settings.local_model else _smolvlm
    try:
        answering = builder(settings)
    except PredictionError as exc:  # the local model is missing or cannot load, the container is not there
        raise CannotStart(str(exc)) from None
    # A per-process token keeps other local users from driving the embedded server.
    token = secrets.token_urlsafe(24)
    # Predictions go to a temporary file, not memory: each one keeps its ~60 KB image input, which
    # in RAM grew the app by that much per question for as long as it ran.
    folder = tempfile.TemporaryDirectory(prefix="minigpt4-predictions-")
    server = start_background(host="127.0.0.1", port=0, token=token,
                              db_path=os.path.join(folder.name, "predictions.sqlite3"), **answering.options)

    def close() -> None:
        server.close()
        answering.close()
        folder.cleanup()

    local = replace(settings, token=token, base_url=server.url)
    return Backend(client=client_for(local), embedded=True, notice=answering.notice, close=close,
                   banner=answering.banner, answerers=answering.answerers)
