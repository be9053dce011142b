"""Environment and flags, read once into one frozen object."""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, field

from ..shared.facts import MODEL as DEFAULT_MODEL, REPLICATE_BASE_URL as DEFAULT_BASE_URL
from ..shared.facts import SMOLVLM, SMOLVLM_PRECISION
from ..shared.facts import VERSION as DEFAULT_VERSION

COG_OPTION = "--cog (MINIGPT4_COG_URL)"
COG_CALLBACK_OPTION = "--cog-callback-url (MINIGPT4_COG_CALLBACK_URL)"


# Replicate's owner and deployment names: letters, digits, dashes, underscores and dots.
_OWNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_deployment(ref: str | None, *, source: str = "MINIGPT4_DEPLOYMENT") -> str | None:
    """`owner/name` of a Replicate deployment, stripped; None for none; ValueError naming
    `source` (the variable or flag) otherwise."""
    if ref is None or not ref.strip():
        return None
    if not _OWNER_NAME.match(ref.strip()):
        raise ValueError(f"{source} must name a deployment as owner/name, got {ref!r}")
    return ref.strip()


def parse_version(ref: str) -> tuple[str, str]:
    """Split `owner/name:id` or a bare version id into (model, version id)."""
    model, sep, version = ref.strip().rpartition(":")
    if not sep:
        return DEFAULT_MODEL, ref.strip()
    if model.count("/") != 1 or not version:
        raise ValueError(f"MINIGPT4_VERSION must be a version id or owner/name:id, got {ref!r}")
    return model, version


@dataclass(frozen=True)
class Settings:
    """Where predictions go and with which credentials; the token is kept out of repr."""

    token: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_MODEL
    version: str = DEFAULT_VERSION
    # Pace of the embedded demo predictor (words per second); None answers at full speed.
    tokens_per_second: float | None = None
    # Image URLs on loopback or private networks are refused unless the host opts in (intranets, tests).
    allow_private_urls: bool = False
    # Public-host limits: host-paid questions per visitor per hour (0 = off), waiting requests, upload size.
    visitor_limit_per_hour: int = 30
    max_queue: int = 128  # 0 = no cap
    # A visitor's share of the queue (None: an eighth of it); 0 lets one address fill it, for an
    # audience that all reaches the app through one NAT address.
    max_queue_per_visitor: int | None = None
    max_upload_mb: int = 20
    # Seconds to connect, and between bytes of an answer, before a call to the API fails.
    api_timeout: float = 30.0
    # A local vision-language model (folder or hub id) for the embedded server, and whether it may
    # be downloaded; without one the embedded server runs the built-in predictor.
    local_model: str | None = None
    allow_download: bool = False
    # The embedded server's default model: SmolVLM's ONNX files (a hub id or a folder) at one
    # precision, fetched once into the Hugging Face cache unless the host turns downloads off.
    smolvlm: str = SMOLVLM
    precision: str = SMOLVLM_PRECISION
    downloads: bool = True
    # Proxies in front of the app that each append the address they saw to X-Forwarded-For; the
    # visitor is the entry the one nearest the visitor added (entries further left are the
    # client's own words). Hugging Face Spaces have one.
    proxy_hops: int = 0
    # A Cog container serving the model (e.g. MiniGPT-4 on this machine's GPU), and the
    # http://HOST:PORT where it can reach this app for progress webhooks.
    cog_url: str | None = None
    cog_callback_url: str | None = None
    # The host's own Replicate deployment (`owner/name`) of the model: always-on instances that
    # answer the chat's questions instead of the shared version, which may boot cold.
    deployment: str | None = None
    # One tiny prediction at start, so the model is warm (and known to work) before visitors come.
    warm_up: bool = False
    # Serve the public endpoints as MCP tools for agents at /gradio_api/mcp/.
    mcp: bool = False

    def check(self) -> None:
        """Raise ValueError naming the option when the Cog addresses cannot work, so the app
        refuses at start rather than at the first question."""
        if self.cog_callback_url and not self.cog_url:
            raise ValueError(f"{COG_CALLBACK_OPTION} is where a Cog container sends progress: "
                             f"it needs {COG_OPTION}")
        if self.cog_url:
            _check_url(self.cog_url, COG_OPTION, schemes=("http", "https"), example="http://127.0.0.1:5000")
        if self.cog_callback_url:
            _check_url(self.cog_callback_url, COG_CALLBACK_OPTION, schemes=("http",),
                       example="http://172.17.0.1:5001")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        model, version = parse_version(env.get("MINIGPT4_VERSION") or DEFAULT_VERSION)
        return cls(token=env.get("REPLICATE_API_TOKEN") or None,
                   base_url=(env.get("REPLICATE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
                   model=model, version=version,
                   tokens_per_second=_positive(env, "MINIGPT4_TOKENS_PER_SECOND"),
                   allow_private_urls=_flag(env, "MINIGPT4_ALLOW_PRIVATE_URLS"),
                   visitor_limit_per_hour=_count(env, "MINIGPT4_VISITOR_LIMIT_PER_HOUR", 30),
                   max_queue=_count(env, "MINIGPT4_MAX_QUEUE", 128),
                   max_queue_per_visitor=(_count(env, "MINIGPT4_MAX_QUEUE_PER_VISITOR", 0)
                                          if env.get("MINIGPT4_MAX_QUEUE_PER_VISITOR") else None),
                   max_upload_mb=_count(env, "MINIGPT4_MAX_UPLOAD_MB", 20),
                   api_timeout=_positive(env, "MINIGPT4_API_TIMEOUT") or 30.0,
                   local_model=env.get("MINIGPT4_LOCAL_MODEL") or None,
                   allow_download=_flag(env, "MINIGPT4_ALLOW_DOWNLOAD"),
                   smolvlm=env.get("MINIGPT4_SMOLVLM") or SMOLVLM,
                   precision=env.get("MINIGPT4_PRECISION") or SMOLVLM_PRECISION,
                   downloads=env.get("MINIGPT4_DOWNLOADS", "").strip().lower() not in ("0", "false", "no", "off"),
                   proxy_hops=_count(env, "MINIGPT4_TRUSTED_PROXY_HOPS",
                                     1 if env.get("SPACE_ID") else 0),
                   cog_url=env.get("MINIGPT4_COG_URL") or None,
                   cog_callback_url=env.get("MINIGPT4_COG_CALLBACK_URL") or None,
                   deployment=parse_deployment(env.get("MINIGPT4_DEPLOYMENT")),
                   warm_up=_flag(env, "MINIGPT4_WARM_UP"),
                   # Gradio's own switch counts too, as its documentation tells hosts to use it.
                   mcp=_flag(env, "MINIGPT4_MCP") or _flag(env, "GRADIO_MCP_SERVER"))


def _check_url(url: str, option: str, *, schemes: tuple[str, ...], example: str) -> None:
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        raise ValueError(f"{option}: the port of {url!r} is not a number from 0 to 65535") from None
    if parts.scheme not in schemes or not parts.hostname:
        kinds = " or ".join(f"{scheme}://" for scheme in schemes)
        raise ValueError(f"{option} must be an {kinds} address such as {example}, got {url!r}")


def _positive(env: dict[str, str], name: str) -> float | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"{name} must be a positive number, got {raw!r}")
    return value


def _count(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.strip().isdigit():
        raise ValueError(f"{name} must be a whole number of 0 or more, got {raw!r}")
    return int(raw)


def _flag(env: dict[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes")
