"""Webhooks: when a task ends, its final body is POSTed to the callback, signed.

The callback is the request's own (``X-Synthgate-Callback`` or
``parameters.callback_url``, kept in the record's ``callback`` field), else the
tenant's ``webhook_url``. Every change of a task to a final status releases its
tenant's slot once (``lib/release.lua`` in :mod:`taskcore.scripts`), and that same script queues
the delivery (``lib/webhook_enqueue.lua``): a worker that dies after the task ended loses no
webhook. Workers deliver them (``workers/webhook_delivery.py``) and record each attempt in
the record's ``webhook`` field, shown in a fetch as ``output.webhook_attempts``.

Signature: ``X-Synthgate-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``
with ``X-Synthgate-Timestamp`` (Unix seconds), the tenant's webhook secret as the
key and the raw request body: :func:`verify` is what a receiver does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any

from taskcore.records import TaskRecord

TIMESTAMP_HEADER = "X-Synthgate-Timestamp"
SIGNATURE_HEADER = "X-Synthgate-Signature"
SECRET_PREFIX = "whsec_"
ATTEMPTS_FIELD = "webhook"  # the record's field: JSON [{"at", "status_code" | "error"}]


def new_secret() -> str:
    """A new webhook signing secret (shown once to the tenant's administrator)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Synthgate-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """What a receiver checks: a fresh timestamp and a matching signature."""
    if not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    expected = signature(secret, int(timestamp), body)
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
