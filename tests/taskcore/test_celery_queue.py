"""The task message the fair queue moves into Celery's queue is the one Celery would send."""

from __future__ import annotations

import base64
import json
import uuid

from fixtures.processes import RedisServer

from taskcore.celery_queue import GENERATE_TASK, create_celery, generate_message
from taskcore.settings import Settings

# Differ per message (ids, the sender's name); everything else must be the same.
_PER_MESSAGE = {"id", "root_id", "origin", "correlation_id", "reply_to", "delivery_tag"}


def _comparable(raw: bytes) -> dict[str, object]:
    message = json.loads(raw)
    message["headers"] = {k: v for k, v in message["headers"].items() if k not in _PER_MESSAGE}
    message["properties"] = {
        k: v for k, v in message["properties"].items() if k not in _PER_MESSAGE
    }
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def test_prebuilt_message_equals_what_send_task_pushes(redis_server: RedisServer) -> None:
    celery = create_celery(Settings(redis_url=redis_server.url))
    queue = "test.message." + uuid.uuid4().hex[:8]
    celery.send_task(GENERATE_TASK, args=["task-1"], queue=queue)
    redis_client = redis_server.client()
    (sent,) = redis_client.lrange(queue, 0, -1)
    built = generate_message(celery, "task-1", queue)
    assert _comparable(built) == _comparable(sent)
    assert json.loads(built)["properties"]["delivery_info"] == {
        "exchange": "",
        "routing_key": queue,
    }
    assert generate_message(celery, "task-1", queue) != built  # fresh ids and delivery tag
    redis_client.delete(queue)
