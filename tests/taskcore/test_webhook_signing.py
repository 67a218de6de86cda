"""Webhook signatures as pure functions, checked with the ``standardwebhooks`` package: what a
receiver following Standard Webhooks runs, not our own reading of the scheme."""

from __future__ import annotations

import base64
import secrets
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from taskcore.webhooks.payload import (
    SECRET_PREFIX,
    legacy_signature,
    message_id,
    new_secret,
    signed_headers,
    signing_key,
    standard_secret,
    standard_signature,
    verify_legacy,
)

BODY = b'{"output":{"task_id":"0b6f3c2e-6c1e-4bd4-9f5d-3d8f4b1a2c3d","task_status":"SUCCEEDED"}}'
TASK_ID = "0b6f3c2e-6c1e-4bd4-9f5d-3d8f4b1a2c3d"


def _legacy_secret() -> str:
    """A secret as synthgate made them before Standard Webhooks: URL-safe, unpadded."""
    while True:  # one with the URL-safe characters in it, so the test means something
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        if "-" in secret[6:] or "_" in secret[6:]:
            return secret


def test_a_new_secret_is_whsec_and_standard_base64_of_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and secret != new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert len(key) == 32 and signing_key(secret) == key
    assert standard_secret(secret) == secret


def test_the_library_verifies_what_the_headers_sign() -> None:
    secret = new_secret()
    headers = signed_headers(secret, TASK_ID, BODY, int(time.time()), legacy=False)
    assert headers["webhook-id"] == f"msg_{TASK_ID}" and "." not in headers["webhook-id"]
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == {
        "output": {"task_id": TASK_ID, "task_status": "SUCCEEDED"}
    }
    assert headers["X-Synthgate-Task-Id"] == TASK_ID
    assert "X-Synthgate-Signature" not in headers and "X-Synthgate-Timestamp" not in headers


@pytest.mark.parametrize(
    ("change", "header", "value"),
    [
        ("body", "", ""),
        ("id", "webhook-id", f"msg_{TASK_ID}x"),
        ("timestamp", "webhook-timestamp", "+1"),
        ("old", "webhook-timestamp", "-600"),
    ],
)
def test_the_library_refuses_a_changed_body_id_or_timestamp_and_an_old_one(
    change: str, header: str, value: str
) -> None:
    secret = new_secret()
    now = int(time.time())
    headers = signed_headers(secret, TASK_ID, BODY, now, legacy=False)
    body = BODY + b" " if change == "body" else BODY
    if change in ("timestamp", "old"):
        value = str(now + int(value))
    if header:
        headers[header] = value
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # another tenant's secret
        Webhook(new_secret()).verify(BODY, signed_headers(secret, TASK_ID, BODY, now, False))


def test_the_signature_is_the_libraries_own_for_the_same_message() -> None:
    secret = new_secret()
    moment = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    expected = Webhook(secret).sign(message_id(TASK_ID), moment, BODY)
    assert standard_signature(secret, message_id(TASK_ID), int(moment.timestamp()), BODY) == (
        expected
    )


def test_an_old_url_safe_secret_signs_with_its_decoded_bytes_and_converts_for_the_library() -> None:
    old = _legacy_secret()
    key = base64.urlsafe_b64decode(old.removeprefix("whsec_") + "=")
    assert signing_key(old) == key and len(key) == 32
    converted = standard_secret(old)
    assert converted != old and base64.b64decode(converted[6:], validate=True) == key
    headers = signed_headers(old, TASK_ID, BODY, int(time.time()), legacy=True)
    Webhook(converted).verify(BODY, headers)
    # Handed to the library as it is, the old text decodes to another key: hence the docs'
    # conversion (or a new secret).
    with pytest.raises((WebhookVerificationError, ValueError)):
        Webhook(old).verify(BODY, headers)


@pytest.mark.parametrize("bad", ["whsec_", "whsec_not base64!", "whsec_a"])
def test_a_secret_that_is_not_base64_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        signing_key(bad)


def test_the_deprecated_headers_still_sign_timestamp_and_body_with_the_secret_text() -> None:
    secret = new_secret()
    headers = signed_headers(secret, TASK_ID, BODY, 1_700_000_000, legacy=True)
    sent = headers["X-Synthgate-Signature"]
    assert headers["X-Synthgate-Timestamp"] == headers["webhook-timestamp"] == "1700000000"
    assert sent == legacy_signature(secret, 1_700_000_000, BODY)
    assert sent.startswith("v1=") and len(sent) == 3 + 64
    assert verify_legacy(secret, "1700000000", sent, BODY, now=1_700_000_010)
    assert not verify_legacy(secret, "1700000000", sent, BODY + b" ", now=1_700_000_010)
    assert not verify_legacy(new_secret(), "1700000000", sent, BODY, now=1_700_000_010)
    assert not verify_legacy(secret, "1700000001", sent, BODY, now=1_700_000_010)
    assert not verify_legacy(secret, "1700000000", sent, BODY, now=1_700_001_000)  # too old
