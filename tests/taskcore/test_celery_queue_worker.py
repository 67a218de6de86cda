"""A real Celery worker (the pinned Celery and kombu) consumes the messages the gateway
builds without Celery, and acknowledges them, as the GPU pools' workers do."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from fixtures.processes import RedisServer

from taskcore.celery_queue import GENERATE_TASK, TaskMessages, create_celery, generate_message
from taskcore.settings import Settings


@pytest.fixture
def root_logger_kept() -> Iterator[None]:
    """start_worker sets up Celery's logging (the root logger at ERROR, its handlers):
    undone after the test, or later tests' caplog would see no warning."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.usefixtures("root_logger_kept")
def test_a_celery_worker_runs_the_messages_built_without_celery(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    app = create_celery(Settings(redis_url=redis_server.url))
    queue = "test.celery-worker." + uuid.uuid4().hex[:8]
    ran: list[str] = []

    @app.task(name=GENERATE_TASK, ignore_result=True)
    def generate(task_id: str) -> None:
        ran.append(task_id)

    templated = [str(uuid.uuid4()) for _ in range(3)]
    messages = TaskMessages(app)
    for task_id in templated:
        # As the fair queue's script moves them in: LPUSH, taken from the other end.
        redis_client.lpush(queue, messages.message(task_id, queue))
    generated = str(uuid.uuid4())
    redis_client.lpush(queue, generate_message(app, generated, queue))
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=10
    ):
        deadline = time.monotonic() + 30
        while len(ran) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert ran == [*templated, generated]
    assert redis_client.llen(queue) == 0
    # Acknowledged (task_acks_late: after the task ran): nothing waits for redelivery.
    # (kombu's Redis transport keeps unacknowledged messages in one hash for all queues.)
    pending = [raw for raw in redis_client.hvals("unacked") if queue.encode() in raw]
    assert pending == []
