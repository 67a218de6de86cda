"""The Celery app both sides share: broker settings, and the task name the gateway sends."""

from __future__ import annotations

from typing import Any

from celery import Celery

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
