"""`owner/name` or `owner/name:version` → the model's ModelSpec, read live from the API and cached."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..shared.facts import REPLICATE_BASE_URL
from ..shared.model_schema import ModelSpec, read_schema
from ..replicate_api import Client, NotFoundError

# Replicate's owner and model names: letters, digits, dashes, underscores and dots.
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
REF = re.compile(rf"^({NAME})/({NAME})(?::([0-9a-f]{{64}}))?$")
# Long enough that a chat or comparison reads the schema once; short enough to see a new version.
TTL_SECONDS = 300.0


class ModelRefError(ValueError):
    """The text is not `owner/name` or `owner/name:<64-hex version id>`."""


class UnknownModel(LookupError):
    """The API has no such model, or no such version of it."""


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference; `version` is None for "the latest"."""

    owner: str
    name: str
    version: str | None = None

    @property
    def model(self) -> str:
        return f"{self.owner}/{self.name}"


def parse_ref(text: str) -> ModelRef:
    """Parse `owner/name` or `owner/name:version`; raises ModelRefError saying what is expected."""
    match = REF.match(text.strip())
    if not match:
        raise ModelRefError(f"{text.strip()!r} is not a model reference: use owner/name or "
                            "owner/name:version (a 64-character hexadecimal version id)")
    return ModelRef(*match.groups())


class Resolver:
    """Reads model schemas through a client and keeps each one for `ttl` seconds, per API address."""

    def __init__(self, *, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, ModelSpec]] = {}
        self._lock = threading.Lock()

    def resolve(self, client: Client, text: str) -> ModelSpec:
        """The ModelSpec of a reference, with its version id filled in.

        Raises ModelRefError (bad text), UnknownModel (404), UnmappableSchema (a schema the app
        cannot use) or a ReplicateError from the client.
        """
        ref = parse_ref(text)
        key = (client.base_url, f"{ref.model}:{ref.version or ''}")
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        spec = self._read(client, ref)
        with self._lock:
            self._cache[key] = (now, spec)
        return spec

    @staticmethod
    def _read(client: Client, ref: ModelRef) -> ModelSpec:
        try:
            if ref.version:
                version = client.get_version(ref.owner, ref.name, ref.version)
            else:
                version = client.get_model(ref.owner, ref.name).get("latest_version")
        except NotFoundError:
            what = f"version {ref.version} of {ref.model}" if ref.version else ref.model
            # Where the API lives is the host's to know: visitors read this message.
            where = "on Replicate" if client.base_url == REPLICATE_BASE_URL else "by this demo's predictions API"
            raise UnknownModel(f"{what} was not found {where}") from None
        if not isinstance(version, dict) or not version.get("id"):
            raise UnknownModel(f"{ref.model} has no published version to run")
        return read_schema(version.get("openapi_schema") or {}, model=ref.model, version=version["id"])
