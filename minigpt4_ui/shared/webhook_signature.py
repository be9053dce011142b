"""Sign and verify Replicate webhooks (Svix-style; docs/replicate-api-rules.md, "Webhooks").

For users who receive webhooks from Replicate or from the embedded server:

    from minigpt4_ui.shared.webhook_signature import verify, WebhookVerificationError
    secret = requests.get(f"{base}/v1/webhooks/default/secret", headers=auth).json()["key"]
    try:
        verify(secret, request.headers, request.body)   # raw body bytes, as received
    except WebhookVerificationError:
        return 400

The server uses `sign` from here, so both sides share one implementation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Mapping

__all__ = ["WebhookVerificationError", "new_secret", "sign", "signature_headers", "verify"]

DEFAULT_TOLERANCE_S = 300  # Svix's default: 5 minutes either way


class WebhookVerificationError(ValueError):
    """The webhook is not authentic: a header is missing, the secret is malformed, the timestamp
    is outside the tolerance or no signature matches."""


def new_secret() -> str:
    """A fresh signing secret in Replicate's `whsec_<base64>` form."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    prefix, sep, encoded = secret.partition("_")
    if prefix != "whsec" or not sep or "_" in encoded:
        raise WebhookVerificationError("the secret must look like whsec_<base64>")
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise WebhookVerificationError("the secret's key is not valid base64") from None


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else bytes(body)


def sign(secret: str, webhook_id: str, timestamp: int | str, body: bytes | str) -> str:
    """The `webhook-signature` value (`v1,<base64 HMAC-SHA256>`) of one message."""
    signed = f"{webhook_id}.{timestamp}.".encode() + _as_bytes(body)
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(secret: str, webhook_id: str, body: bytes | str,
                      timestamp: int | None = None) -> dict[str, str]:
    """The three headers that authenticate a webhook request."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, webhook_id, timestamp, body)}


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise WebhookVerificationError(f"the {name} header is missing")


def verify(secret: str, headers: Mapping[str, str], body: bytes | str, *,
           tolerance: float | None = DEFAULT_TOLERANCE_S, now: float | None = None) -> None:
    """Check a received webhook; raises WebhookVerificationError unless it is authentic.

    `body` must be the raw request body exactly as received (re-serialized JSON will not match).
    `tolerance` bounds the clock difference in seconds (None skips the check, e.g. for replays
    of stored messages).
    """
    webhook_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not timestamp.strip().isdigit():
        raise WebhookVerificationError("the webhook-timestamp header is not a unix time")
    if tolerance is not None:
        age = (time.time() if now is None else now) - int(timestamp)
        if abs(age) > tolerance:
            raise WebhookVerificationError(
                f"the webhook timestamp is {abs(age):.0f} s off (tolerance {tolerance:g} s)")
    expected = sign(secret, webhook_id, timestamp.strip(), body).partition(",")[2].encode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return
    raise WebhookVerificationError("no webhook signature matches")
