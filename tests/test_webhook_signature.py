"""minigpt4_ui.shared.webhook_signature: Svix-style signing and verification (docs/replicate-api-rules.md, "Webhooks")."""

from __future__ import annotations

import pytest
from replicate.webhook import WebhookSigningSecret, Webhooks

from minigpt4_ui.shared.webhook_signature import (WebhookVerificationError, new_secret, sign, signature_headers, verify)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ID, TS, BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", '{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
HEADERS = {"webhook-id": ID, "webhook-timestamp": TS, "webhook-signature": SIGNATURE}


def test_the_reference_test_vector():
    assert sign(SECRET, ID, TS, BODY) == SIGNATURE
    assert sign(SECRET, ID, int(TS), BODY.encode()) == SIGNATURE
    verify(SECRET, HEADERS, BODY, tolerance=None)
    verify(SECRET, HEADERS, BODY.encode(), now=int(TS) + 10)


def test_header_names_are_case_insensitive_and_any_signature_may_match():
    headers = {"Webhook-Id": ID, "WEBHOOK-TIMESTAMP": TS,
               "Webhook-Signature": f"v1,bm90LWl0 v2,xyz {SIGNATURE}"}
    verify(SECRET, headers, BODY, tolerance=None)


@pytest.mark.parametrize("change, message", [
    ({"webhook-signature": "v1,AAAA"}, "no webhook signature matches"),
    ({"webhook-id": "msg_other"}, "no webhook signature matches"),
    ({"webhook-timestamp": "soon"}, "not a unix time"),
])
def test_tampered_headers_are_rejected(change, message):
    with pytest.raises(WebhookVerificationError, match=message):
        verify(SECRET, {**HEADERS, **change}, BODY, tolerance=None)


def test_a_changed_body_is_rejected():
    with pytest.raises(WebhookVerificationError, match="no webhook signature matches"):
        verify(SECRET, HEADERS, '{"test": 2432232315}', tolerance=None)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_reported(missing):
    headers = {k: v for k, v in HEADERS.items() if k != missing}
    with pytest.raises(WebhookVerificationError, match=f"the {missing} header is missing"):
        verify(SECRET, headers, BODY, tolerance=None)


def test_old_or_future_timestamps_are_rejected_by_default():
    with pytest.raises(WebhookVerificationError, match="off"):
        verify(SECRET, HEADERS, BODY)  # 2021 is far outside five minutes
    with pytest.raises(WebhookVerificationError, match="off"):
        verify(SECRET, HEADERS, BODY, now=int(TS) - 301)


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_a_b", "whsec_***"])
def test_malformed_secrets_are_rejected(secret):
    with pytest.raises(WebhookVerificationError, match="secret"):
        verify(secret, HEADERS, BODY, tolerance=None)


def test_round_trip_with_a_new_secret_and_the_official_client_agrees():
    secret = new_secret()
    body = b'{"id": "abc", "status": "succeeded"}'
    headers = signature_headers(secret, "msg_1", body)
    verify(secret, headers, body)
    # replicate 1.0.7 returns nothing when valid and raises WebhookValidationError otherwise.
    Webhooks.validate(headers=headers, body=body.decode(), secret=WebhookSigningSecret(key=secret))
