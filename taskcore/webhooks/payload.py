"""Webhooks: when a task ends, its final body is POSTed to the callback, signed.

The callback is the request's own (``X-Synthgate-Callback`` or
``parameters.callback_url``, kept in the record's ``callback`` field), else the
tenant's ``webhook_url``. Every change of a task to a final status releases its
tenant's slot once (``lib/release.lua`` in :mod:`taskcore.scripts`), and that same script queues
the delivery (``lib/webhook_enqueue.lua``): a worker that dies after the task ended loses no
webhook. Workers deliver them (``workers/webhook_delivery.py``) and record each attempt in
the record's ``webhook`` field, shown in a fetch as ``output.webhook_attempts``.

Signature: the Standard Webhooks scheme (https://www.standardwebhooks.com/), so receivers
verify with the ``standardwebhooks`` library of their language:

- ``webhook-id``: ``msg_<task id>``, the same for every attempt (the receiver's
  idempotency key);
- ``webhook-timestamp``: the attempt's Unix seconds;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>``.

The key is the tenant's secret, ``whsec_<base64 of 32 random bytes>``, decoded
(:func:`signing_key`). Secrets made before synthgate followed the standard are
``whsec_`` and 43 URL-safe base64 characters: the same scheme decodes them as URL-safe
base64, and :func:`standard_secret` writes the very same key as a library expects it.

Deprecated, sent for one more release while ``SYNTHGATE_WEBHOOK_LEGACY_SIGNATURE`` is
true: ``X-Synthgate-Timestamp`` and ``X-Synthgate-Signature: v1=<hex
HMAC-SHA256(secret, f"{timestamp}.{body}")>``, keyed with the secret's text itself
(:func:`legacy_signature`, :func:`verify_legacy`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from taskcore.records import TaskRecord

ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"
TASK_HEADER = "X-Synthgate-Task-Id"  # stays: names the task without parsing the body
TIMESTAMP_HEADER = "X-Synthgate-Timestamp"  # deprecated: webhook-timestamp
SIGNATURE_HEADER = "X-Synthgate-Signature"  # deprecated: webhook-signature
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the standard asks for 24 to 64 random bytes
MESSAGE_PREFIX = "msg_"
ATTEMPTS_FIELD = "webhook"  # the record's field: JSON [{"at", "status_code" | "error"}]

_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")


def new_secret() -> str:
    """A new webhook signing secret (shown once to the tenant's administrator)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret: its base64 text decoded, in standard base64 or
    (a secret made before Standard Webhooks) URL-safe base64 without padding."""
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        key = _urlsafe_key(text)
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def _urlsafe_key(text: str) -> bytes:
    if not _URLSAFE.fullmatch(text):
        raise ValueError("a webhook secret is whsec_ and base64 text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ and base64 text") from None


def standard_secret(secret: str) -> str:
    """``secret`` as Standard Webhooks libraries read it: ``whsec_`` and standard base64
    (the same text for a secret made by :func:`new_secret`)."""
    return SECRET_PREFIX + base64.b64encode(signing_key(secret)).decode("ascii")


def message_id(task_id: str) -> str:
    """The ``webhook-id`` of a task's webhook: one message per task, whatever the attempt."""
    return MESSAGE_PREFIX + task_id


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of ``body`` sent as ``msg_id`` at ``timestamp``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def legacy_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The deprecated ``X-Synthgate-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(
    secret: str, task_id: str, body: bytes, timestamp: int, legacy: bool
) -> dict[str, str]:
    """The headers that name and sign one attempt of a task's webhook; with ``legacy``,
    the deprecated ``X-Synthgate-*`` pair too."""
    msg_id = message_id(task_id)
    headers = {
        ID_HEADER: msg_id,
        STANDARD_TIMESTAMP_HEADER: str(timestamp),
        STANDARD_SIGNATURE_HEADER: standard_signature(secret, msg_id, timestamp, body),
        TASK_HEADER: task_id,
    }
    if legacy:
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = legacy_signature(secret, timestamp, body)
    return headers


def verify_legacy(
    secret: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """What a receiver of the deprecated headers checks: a fresh timestamp and a match."""
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    expected = legacy_signature(secret, int(timestamp), body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature_header.split(","))


def task_body(record: TaskRecord, url_for: Callable[[str], str], request_id: str) -> dict[str, Any]:
    """The body of ``GET /api/v1/tasks/{id}`` for ``record``, without the delivery log."""
    output = record.output(url_for)
    output.pop("webhook_attempts", None)
    body: dict[str, Any] = {"output": output}
    usage = record.usage()
    if usage is not None:
        body["usage"] = usage
    body["request_id"] = request_id
    return body
