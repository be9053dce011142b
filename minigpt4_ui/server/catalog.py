"""The models the embedded server hosts: MiniGPT-4 and stand-ins with other models' real schemas.

Each stand-in publishes the real model's input and output schema, as Replicate serves it, under a
fake but stable version id (the real ids belong to the real weights, which are not here), and is
answered by the built-in predictor, which says that it is a stand-in. The schemas come from each
model's Cog `predict.py`:

- yorickvp/llava-13b: haotian-liu/LLaVA `predict.py` (`ConcatenateIterator[str]`);
- yorickvp/llava-v1.6-vicuna-13b: its `predict.py`, which adds `history` and makes `image` optional;
- andreasjansson/blip-2: the cog-blip-2 `predict.py` (`-> str`);
- lucataco/moondream2: lucataco/cog-moondream2 `predict.py` (`ConcatenateIterator[str]`);
- salesforce/blip: salesforce/BLIP `predict.py`, whose `task` has `choices`. The Cog of its time
  (2022, pydantic 1) published choices as `allOf: [{"$ref": "#/components/schemas/task"}]`, the
  form written here; the JSON Replicate serves for that version today was not seen.

Titles follow Cog's rule (the name in title case) since only `predict.py` was read.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field

from ..shared import model_schema, schema

COG_VERSION = "0.8.6"
# The versions' real creation dates are unknown; each model's first appearance stands in.
CREATED_AT = "2023-05-16T00:00:00.000000Z"
STRING_OUTPUT = {"type": "string", "title": "Output"}
TEXT_STREAM_OUTPUT = {"type": "array", "items": {"type": "string"}, "title": "Output",
                      "x-cog-array-type": "iterator", "x-cog-array-display": "concatenate"}


@dataclass(frozen=True)
class HostedModel:
    """One model this server answers for: its identity, versions (latest first) and schema."""

    owner: str
    name: str
    description: str
    versions: tuple[str, ...]
    input: dict
    output: dict
    github_url: str | None = None
    # Further `components.schemas` entries, such as the enum schemas `allOf` refers to.
    extra_schemas: dict = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def latest(self) -> str:
        return self.versions[0]

    def openapi_schema(self) -> dict:
        return {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}, "paths": {},
                "components": {"schemas": {"Input": self.input, "Output": self.output,
                                           **self.extra_schemas}}}

    @functools.cached_property
    def spec(self) -> model_schema.ModelSpec:
        """What validation reads: the same reader the app uses on this schema."""
        return model_schema.read_schema(self.openapi_schema(), model=self.ref, version=self.latest)

    def version_object(self, version_id: str) -> dict:
        return {"id": version_id, "created_at": CREATED_AT, "cog_version": COG_VERSION,
                "openapi_schema": self.openapi_schema()}

    def model_object(self) -> dict:
        """`GET /v1/models/{owner}/{name}` as Replicate answers it."""
        return {"url": f"https://replicate.com/{self.ref}", "owner": self.owner, "name": self.name,
                "description": self.description, "visibility": "public",
                "github_url": self.github_url, "paper_url": None, "license_url": None,
                "run_count": 0, "cover_image_url": None, "default_example": None,
                "latest_version": self.version_object(self.latest)}


def stand_in_version(ref: str) -> str:
    """A 64-hex version id that is the same on every run and never a real one."""
    return hashlib.sha256(f"minigpt4-studio stand-in for {ref}".encode()).hexdigest()


def _input(properties: dict, required: list[str]) -> dict:
    ordered = {name: {**prop, "x-order": order} for order, (name, prop) in enumerate(properties.items())}
    return {"type": "object", "title": "Input", "properties": ordered, "required": required}


def _prop(kind: str, title: str, description: str, **extra) -> dict:
    return {"type": kind, "title": title, "description": description, **extra}


_IMAGE = _prop("string", "Image", "Input image", format="uri")
_TOP_P = _prop("number", "Top P", "When decoding text, samples from the top p percentage of most "
               "likely tokens; lower to ignore less likely tokens", default=1, minimum=0, maximum=1)
_TEMPERATURE = _prop("number", "Temperature", "Adjusts randomness of outputs, greater than 1 is "
                     "random and 0 is deterministic", default=0.2, minimum=0)
_MAX_TOKENS = _prop("integer", "Max Tokens", "Maximum number of tokens to generate. A word is "
                    "generally 2-3 tokens", default=1024, minimum=0)
_LLAVA_PROMPT = _prop("string", "Prompt", "Prompt to use for text generation")

MINIGPT4 = HostedModel(
    owner="daanelson", name="minigpt-4",
    description="A model which generates text in response to an input image and prompt.",
    # The current version and the 2023 one that much code (and MINIGPT4_VERSION) still names.
    versions=(schema.VERSION, "b96a2f33cc8e4b0aa23eacfce731b9c41a7d9466d9ed4e167375587b54db9423"),
    input=schema.openapi_input(), output=STRING_OUTPUT,
    github_url="https://github.com/daanelson/MiniGPT-4")

STAND_INS = (
    HostedModel(
        owner="yorickvp", name="llava-13b",
        description="Visual instruction tuning towards large language and vision models with "
                    "GPT-4 level capabilities",
        versions=(stand_in_version("yorickvp/llava-13b"),),
        input=_input({"image": _IMAGE, "prompt": _LLAVA_PROMPT, "top_p": _TOP_P,
                      "temperature": _TEMPERATURE, "max_tokens": _MAX_TOKENS},
                     ["image", "prompt"]),
        output=TEXT_STREAM_OUTPUT, github_url="https://github.com/haotian-liu/LLaVA"),
    HostedModel(
        owner="yorickvp", name="llava-v1.6-vicuna-13b",
        description="LLaVA v1.6: Large Language and Vision Assistant (Vicuna-13B)",
        versions=(stand_in_version("yorickvp/llava-v1.6-vicuna-13b"),),
        input=_input({"image": _IMAGE, "prompt": _LLAVA_PROMPT, "top_p": _TOP_P,
                      "temperature": _TEMPERATURE, "max_tokens": _MAX_TOKENS,
                      "history": _prop("array", "History", "List of earlier chat messages, "
                                       "alternating roles, starting with user input. Include "
                                       "<image> to specify which message to attach the image to.",
                                       items={"type": "string"})},
                     ["prompt"]),
        output=TEXT_STREAM_OUTPUT, github_url="https://github.com/haotian-liu/LLaVA"),
    HostedModel(
        owner="andreasjansson", name="blip-2",
        description="Answers questions about images",
        versions=(stand_in_version("andreasjansson/blip-2"),),
        input=_input({
            "image": _prop("string", "Image", "Input image to query or caption", format="uri"),
            "caption": _prop("boolean", "Caption", "Select if you want to generate image captions "
                             "instead of asking questions", default=False),
            "question": _prop("string", "Question", "Question to ask about this image. Leave blank "
                              "for captioning", default="What is this a picture of?"),
            "context": _prop("string", "Context", "Optional - previous questions and answers to be "
                             "used as context for answering current question"),
            "use_nucleus_sampling": _prop("boolean", "Use Nucleus Sampling", "Toggles the model "
                                          "using nucleus sampling to generate responses",
                                          default=False),
            "temperature": _prop("number", "Temperature", "Temperature for use with nucleus "
                                 "sampling", default=1, minimum=0.5, maximum=1)},
            ["image"]),
        output=STRING_OUTPUT, github_url="https://github.com/daanelson/cog-blip-2"),
    HostedModel(
        owner="lucataco", name="moondream2",
        description="moondream2 is a small vision language model designed to run efficiently on "
                    "edge devices",
        versions=(stand_in_version("lucataco/moondream2"),),
        input=_input({"image": _IMAGE,
                      "prompt": _prop("string", "Prompt", "Input prompt",
                                      default="Describe this image")},
                     ["image"]),
        output=TEXT_STREAM_OUTPUT, github_url="https://github.com/lucataco/cog-moondream2"),
    HostedModel(
        owner="salesforce", name="blip",
        description="Generate image captions",
        versions=(stand_in_version("salesforce/blip"),),
        input=_input({
            "image": _IMAGE,
            # No type or title of its own: both come from the enum schema it refers to.
            "task": {"allOf": [{"$ref": "#/components/schemas/task"}],
                     "default": "image_captioning", "description": "Choose a task."},
            "question": _prop("string", "Question", "Type question for the input image for visual "
                              "question answering task."),
            "caption": _prop("string", "Caption", "Type caption for the input image for image text "
                             "matching task.")},
            ["image"]),
        output=STRING_OUTPUT, github_url="https://github.com/salesforce/BLIP",
        extra_schemas={"task": {"title": "task", "description": "An enumeration.", "type": "string",
                                "enum": ["image_captioning", "visual_question_answering",
                                         "image_text_matching"]}}),
)

# The open models that really answer in the embedded server (SmolVLM on ONNX Runtime, two sizes),
# with MiniGPT-4's inputs, which they honour. A server started without their predictors (tests,
# `python -m minigpt4_ui.server`) answers them with the stand-in, which says so.
LOCAL_MODELS = tuple(
    HostedModel(owner="HuggingFaceTB", name=name,
                description=f"{name}: a small open vision-language model, run on this machine by "
                            "ONNX Runtime from its official ONNX files",
                versions=(stand_in_version(f"HuggingFaceTB/{name}"),), input=schema.openapi_input(),
                output=STRING_OUTPUT, github_url="https://huggingface.co/HuggingFaceTB/" + name)
    for name in ("SmolVLM-256M-Instruct", "SmolVLM-500M-Instruct"))

HOSTED: dict[str, HostedModel] = {model.ref: model for model in (MINIGPT4, *LOCAL_MODELS, *STAND_INS)}


def served_schema(model: HostedModel, document: dict | None) -> tuple[model_schema.ModelSpec, dict]:
    """The spec and version document `model` is served with: for MiniGPT-4, those of the
    container it fronts (`document`, its OpenAPI schema) when this app can use them, else its own.
    Output stays one string, which is what this server answers."""
    if model is not MINIGPT4 or document is None:
        return model.spec, model.openapi_schema()
    try:
        spec = model_schema.read_schema(document, model=model.ref, version=model.latest)
    except model_schema.UnmappableSchema:
        return model.spec, model.openapi_schema()
    components = document.get("components") or {}
    schemas = {**components.get("schemas", {}), "Output": {"type": "string", "title": "Output"}}
    return spec, {**document, "components": {**components, "schemas": schemas}}


@dataclass(frozen=True)
class Deployment:
    """A named deployment of a hosted model, as a host makes one on Replicate (its own instances
    of one version); here the server's own predictor answers it with the model's latest version."""

    owner: str
    name: str
    model: HostedModel
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"

    def deployment_object(self) -> dict:
        """`GET /v1/deployments/{owner}/{name}` as Replicate answers it: one release, on this
        machine's CPU, one instance."""
        account = {"type": "organization", "username": self.owner, "name": self.owner,
                   "github_url": None}
        return {"owner": self.owner, "name": self.name,
                "current_release": {"number": 1, "model": self.model.ref, "version": self.model.latest,
                                    "created_at": self.created_at, "created_by": account,
                                    "configuration": {"hardware": "cpu", "min_instances": 1,
                                                      "max_instances": 1}}}


DEPLOYMENT_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)$")


def deployment(ref: str, *, created_at: str) -> Deployment:
    """The deployment `owner/name` of MiniGPT-4 (the model this server fronts); ValueError for a
    name that is not `owner/name`."""
    match = DEPLOYMENT_NAME.match(ref.strip())
    if not match:
        raise ValueError(f"a deployment is named owner/name, got {ref!r}")
    return Deployment(*match.groups(), model=MINIGPT4, created_at=created_at)
