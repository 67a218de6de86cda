"""The Celery app both sides share: broker settings, the task name, and the task message."""

from __future__ import annotations

import base64
import os
import random
import uuid
from typing import Any

import orjson
from celery import Celery
from kombu import serialization
from kombu.utils import json

from taskcore import redis_connect
from taskcore.settings import Settings

GENERATE_TASK = "synthgate.generate"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Broker and delivery settings; the same for the producer and the workers."""
    return {
        # The URL, or kombu's sentinel transport with the master's name (redis_connect).
        # A message is redelivered only after this long unacknowledged: longer than any task.
        **redis_connect.celery_broker(
            settings, {"visibility_timeout": settings.visibility_timeout_seconds}
        ),
        "broker_connection_retry_on_startup": True,
        # A task is acknowledged when it ends, and requeued when its prefork child dies; a
        # second delivery of its message is skipped while a worker's lease on it runs, and a
        # task claimed max_attempts times FAILS (taskcore/scripts/claim.lua, taskcore/reaper.py).
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A lost broker connection does not cancel running tasks: the lease, not the broker,
        # says who runs a task, so the task goes on and finishes under its lease (renewed
        # after the reconnection) instead of being redelivered and run twice at once.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
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
    queue feeds the pool (see :mod:`taskcore.fairqueue`): Celery's own protocol (headers,
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


def task_id_of(message: bytes | str) -> str:
    """The task id in a ``synthgate.generate`` message, as its consumers read it without
    Celery (the upstream worker): the first argument in the protocol-2 body, a base64 JSON
    ``[args, kwargs, embed]``."""
    envelope = orjson.loads(message)
    args, _kwargs, _embed = orjson.loads(base64.b64decode(envelope["body"]))
    return str(args[0])


class TaskMessages:
    """:func:`generate_message`'s bytes at a fraction of its cost: built once per queue with
    placeholder ids, then completed per task by putting the task id (in ``argsrepr`` and the
    base64 body), a fresh message id and a fresh delivery tag in their places. Kombu's
    ``as_task_v2`` and JSON encoding took a tenth of a submit's CPU (see bench/README.md)."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery
        self._templates: dict[str, bytes] = {}  # per queue; a handful of pools at most
        self._task, self._id, self._tag = (str(uuid.uuid4()).encode() for _ in range(3))

    def message(self, task_id: str, queue: str) -> bytes:
        template = self._templates.get(queue) or self._build(queue)
        return (
            template.replace(self._task, task_id.encode())
            .replace(self._id, _message_uuid())
            .replace(self._tag, _message_uuid())
            .replace(_BODY_PLACEHOLDER, _body(task_id))
        )

    def _build(self, queue: str) -> bytes:
        envelope = json.loads(generate_message(self._celery, self._task.decode(), queue))  # type: ignore[no-untyped-call]
        envelope["headers"]["id"] = envelope["headers"]["root_id"] = self._id.decode()
        envelope["properties"]["correlation_id"] = self._id.decode()
        envelope["properties"]["delivery_tag"] = self._tag.decode()
        if base64.b64decode(envelope["body"]) != _body_json(self._task.decode()):
            raise RuntimeError("Celery's task body changed; TaskMessages needs updating")
        envelope["body"] = _BODY_PLACEHOLDER.decode()
        encoded: str = json.dumps(envelope)  # type: ignore[no-untyped-call]
        self._templates[queue] = encoded.encode()
        return self._templates[queue]


_BODY_PLACEHOLDER = b"@synthgate-task-body@"
# Message ids and delivery tags only need to be unique, not unguessable: drawn without the
# getrandom() system call uuid4 makes each time (two a submit).
_IDS = random.Random()
os.register_at_fork(after_in_child=_IDS.seed)  # a forked child draws its own


def _message_uuid() -> bytes:
    return str(uuid.UUID(int=_IDS.getrandbits(128), version=4)).encode()


def _body_json(task_id: str) -> bytes:
    """Celery's protocol-2 body of a task called with ``args=[task_id]`` (and no kwargs)."""
    return (
        b'[["' + task_id.encode() + b'"], {}, '
        b'{"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'
    )


def _body(task_id: str) -> bytes:
    return base64.b64encode(_body_json(task_id))
