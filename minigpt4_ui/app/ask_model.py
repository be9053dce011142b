"""The public `ask_model` API: any image + prompt model by `owner/name[:version]`, its other inputs
as a JSON object, the answer streamed as growing text (like `ask`); and `list_models`, the models
the app offers with their settings."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any, Callable, Iterator, Sequence

import gradio as gr

from . import chat, images, tool_docs, wording
from .conversation import model_inputs
from .guard import LimitError
from .model_refs import ModelRefError, Resolver, UnknownModel
from ..shared.model_schema import (NOT_TEXT, InputError, ModelSpec, Problem, UnmappableSchema, app_maximum, is_text)
from ..replicate_api import Client, ReplicateError


def parse_parameters(text: str | None) -> dict[str, Any]:
    """The `parameters` JSON object ("" means none); raises InputError naming `parameters`."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InputError([Problem("parameters", "invalid_json", f"is not valid JSON ({exc})")]) from None
    if not isinstance(value, dict):
        raise InputError([Problem("parameters", "invalid_type", "must be a JSON object, such as "
                                  '{"temperature": 0.5}')])
    check_text(parameters=value)
    return value


def check_text(**values: Any) -> None:
    """Raise InputError naming each value that is not valid Unicode text; checked before anything
    echoes it in a message, which Gradio could not send (it failed with a 500)."""
    problems = [Problem(name, "invalid_text", NOT_TEXT) for name, value in values.items() if not is_text(value)]
    if problems:
        raise InputError(problems)


def prepare(client: Client, resolver: Resolver, image: str | None, prompt: str, model: str,
            parameters: str | None) -> tuple[ModelSpec, dict[str, Any]]:
    """`model`'s spec (default: the client's MiniGPT-4 version) and its inputs, checked and with
    the image encoded.

    Raises ModelRefError, UnknownModel, UnmappableSchema, InputError (naming the field and its
    bound), images.ImageError or ReplicateError.
    """
    check_text(prompt=prompt, model=model)
    spec = _spec(client, resolver, model)
    params = parse_parameters(parameters)
    for special in {spec.image, spec.question}:
        if special in params:
            raise InputError([Problem(special, "duplicate", "is given as its own argument, not "
                                      "in parameters")])
    return spec, chat.build_model_input(spec, image, model_inputs(spec, [], prompt, params).inputs)


def answers(client: Client, spec: ModelSpec, inputs: dict[str, Any]) -> Iterator[str]:
    """Ask `spec`'s model with `inputs` (see `prepare`); yield the growing answer. A failed
    prediction raises ReplicateError with the model's own message."""
    # The host's own model and version go where the client sends its own: its deployment, if any.
    own = (spec.model, spec.version) == (client.model, client.version)
    model, version = (None, None) if own else (spec.model, spec.version)
    for progress in chat.ask(client, inputs, model=model, version=version):
        if progress.status == "failed":
            raise ReplicateError(wording.model_failed(progress.error))
        yield progress.text


def _spec(client: Client, resolver: Resolver, model: str) -> ModelSpec:
    if not model or not model.strip():
        return resolver.resolve(client, f"{client.model}:{client.version}")
    return resolver.resolve(client, model)


def settings_of(spec: ModelSpec) -> list[dict[str, Any]]:
    """A model's settings as `list_models` gives them: name, type, default, bounds (with the
    app's caps), choices and meaning."""
    listed = []
    for field in spec.parameters:
        setting = {"name": field.name, "type": field.json_type, "default": field.default,
                   "minimum": field.minimum, "maximum": app_maximum(field),
                   "choices": list(field.choices) if field.choices else None,
                   "description": field.description}
        listed.append({key: value for key, value in setting.items() if value is not None})
    return listed


class ModelAsker:
    """The Gradio handlers of `ask_model` and `list_models`: problems become messages, predictions
    count as `ask`'s do."""

    def __init__(self, client: Client, slot: Callable[[gr.Request | None], AbstractContextManager],
                 resolver: Resolver | None = None, models: Sequence[str] = (),
                 spec_of: Callable[[str], ModelSpec] | None = None,
                 answered_by: Callable[[str], str] = lambda model: model):
        """`slot(request)` is the session's answer slot (one answer at a time, visitor limits);
        `models` are those the app offers, `spec_of(model)` reads one's inputs and
        `answered_by(model)` says who answers it here."""
        self.client = client
        self.slot = slot
        self.resolver = resolver or Resolver()
        self.models = list(models)
        self.spec_of = spec_of or (lambda model: self.resolver.resolve(self.client, model))
        self.answered_by = answered_by

    @tool_docs.documented(tool_docs.LIST_MODELS)
    def list_models(self) -> str:
        # Each model's settings are read as the picker reads them (cached five minutes).
        listed = []
        for model in self.models:
            try:
                entry = {"model": model, "answered_by": self.answered_by(model),
                         "settings": settings_of(self.spec_of(model))}
            except (ModelRefError, UnknownModel, UnmappableSchema, ReplicateError) as exc:
                entry = {"model": model, "problem": str(exc)}
            listed.append(entry)
        return json.dumps(listed, ensure_ascii=False, indent=1)

    @tool_docs.documented(tool_docs.ASK_MODEL)
    def ask_model(self, image: str, prompt: str, model: str, parameters: str,
                  request: gr.Request = None) -> Iterator[str]:
        # The growing answer text; the docstring (API page, MCP) is tool_docs.ASK_MODEL.
        try:
            # Checked first: a refused request takes neither the session's slot nor the hour's allowance.
            spec, inputs = prepare(self.client, self.resolver, image, prompt, model, parameters)
            with self.slot(request):
                yield from answers(self.client, spec, inputs)
        except InputError as exc:
            raise gr.Error("Please fix: " + "; ".join(f"{p.field or 'input'}: {p.description}"
                                                      for p in exc.problems),
                           print_exception=False) from None
        except (ModelRefError, UnknownModel, UnmappableSchema, images.ImageError, ReplicateError,
                LimitError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
