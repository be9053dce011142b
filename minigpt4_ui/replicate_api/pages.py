"""Which addresses are Replicate's own, and a prediction as a visitor may see it: a host's own
API address (REPLICATE_BASE_URL, the embedded server) is the host's to know."""

from __future__ import annotations

from urllib.parse import urlsplit


def is_replicate(url: object) -> bool:
    """Whether `url` is one of Replicate's own (api.replicate.com, a replicate.com page)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme == "https" and (host == "replicate.com" or host.endswith(".replicate.com"))


def replicate_page(prediction: dict) -> str | None:
    """The prediction's page on Replicate (`urls.web`); None when it has none or it is elsewhere."""
    web = (prediction.get("urls") or {}).get("web")
    return web if is_replicate(web) else None


def shown_prediction(prediction: dict) -> dict:
    """A prediction as a visitor may see it: of its `urls`, only its page on Replicate.

    `get`, `cancel` and `stream` are the API's own addresses, which for a host's own server
    (REPLICATE_BASE_URL, the embedded one) are the host's.
    """
    page = replicate_page(prediction)
    shown = {key: value for key, value in prediction.items() if key != "urls"}
    return {**shown, "urls": {"web": page}} if page else shown
