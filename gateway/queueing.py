"""The Celery app both sides share: broker settings, the task name, and the task message."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from celery import Celery
from kombu import serialization
from kombu.utils import json

from gateway.settings import Settings

GENERATE_TASK = "synthgate.generate"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Broker and delivery settings; the same for the producer and the workers."""
    return {
        "broker_url": settings.redis_url,
        "broker_connection_retry_on_startup": True,
        # A message is redelivered only after this long unacknowledged: longer than any task.
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_seconds},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
    }


def create_celery(settings: Settings) -> Celery:
    app = Celery("synthgate", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def generate_message(celery: Celery, task_id: str, queue: str) -> bytes:
    """The Celery message that runs ``task_id`` on ``queue``, byte for byte as kombu's Redis
    transport pushes it onto the list named like the queue.

    Built ahead of time so that a Lua script can move it into the queue when the fair
    queue feeds the pool (see :mod:`gateway.fairqueue`): Celery's own protocol (headers,
    body) comes from ``as_task_v2``; the envelope is kombu's virtual-transport message for
    the default exchange, whose routing key is the queue itself.
    """
    message_id = str(uuid.uuid4())
    headers, properties, body, _ = celery.amqp.as_task_v2(
        message_id,
        GENERATE_TASK,
        args=[task_id],
        reply_to=celery.thread_oid,
        ignore_result=None,  # as send_task leaves it: the task's own setting decides
    )
    serialized = serialization.dumps(body, serializer="json")  # type: ignore[no-untyped-call]
    content_type, content_encoding, payload = serialized
    raw = payload if isinstance(payload, bytes) else payload.encode()
    envelope = {
        "body": base64.b64encode(raw).decode(),
        "content-encoding": content_encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,  # persistent, as Celery's default exchange declares
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    encoded: str = json.dumps(envelope)  # type: ignore[no-untyped-call]
    return encoded.encode()
