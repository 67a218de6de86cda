"""The task message the gateway builds without Celery is, byte for byte, the one Celery's own
``send_task`` pushes for the pinned Celery and kombu (pyproject.toml), and the upstream
worker's reader takes the task id out of what Celery sends.

The gateway completes a per-queue template (``TaskMessages``) because building each message
through Celery costs a tenth of a submit's CPU; these tests are what stops a Celery or kombu
upgrade from silently changing the message under it."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator

import kombu.transport.virtual.base
import pytest
import redis
from celery import Celery
from fixtures.processes import RedisServer

from taskcore import celery_queue
from taskcore.celery_queue import (
    GENERATE_TASK,
    TaskMessages,
    create_celery,
    generate_message,
    task_id_of,
)
from taskcore.settings import Settings


@pytest.fixture
def celery(redis_server: RedisServer) -> Celery:
    return create_celery(Settings(redis_url=redis_server.url))


@pytest.fixture
def queue(redis_client: redis.Redis) -> Iterator[str]:
    name = "test.celery-queue." + uuid.uuid4().hex[:8]
    yield name
    redis_client.delete(name)


def sent_by_celery(
    celery: Celery, redis_client: redis.Redis, queue: str, task_id: str, message_id: str
) -> bytes:
    """What ``send_task`` writes to Redis for ``task_id`` (the only message in ``queue``)."""
    celery.send_task(GENERATE_TASK, args=[task_id], queue=queue, task_id=message_id)
    (sent,) = redis_client.lrange(queue, 0, -1)
    assert isinstance(sent, bytes)
    return sent


def ids_of(raw: bytes) -> tuple[str, str]:
    """The message id and the delivery tag: drawn afresh for every message."""
    message = json.loads(raw)
    return message["headers"]["id"], message["properties"]["delivery_tag"]


@pytest.mark.parametrize(
    ("task_id", "queue_prefix"),
    [
        ("0b7e5f3a-6d1c-4e2b-9a8f-3c2d1e0f4a5b", "gpu.sdxl"),
        ("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", "upstream.wanx"),
        ("task-1", "q"),
    ],  # fixed ids: every xdist process collects the same tests
)
def test_templated_message_is_byte_for_byte_what_send_task_pushes(
    celery: Celery,
    redis_client: redis.Redis,
    queue: str,
    task_id: str,
    queue_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = f"{queue_prefix}.{queue}"
    sent = sent_by_celery(celery, redis_client, queue, task_id, str(uuid.uuid4()))
    redis_client.delete(queue)
    message_id, delivery_tag = ids_of(sent)
    # The template draws the message id, then the delivery tag: give it Celery's.
    drawn = iter([message_id.encode(), delivery_tag.encode()])
    monkeypatch.setattr(celery_queue, "_message_uuid", lambda: next(drawn))
    built = TaskMessages(celery).message(task_id, queue)
    # Field by field first, for a readable difference; then every byte, key order included.
    assert json.loads(built) == json.loads(sent)
    assert built == sent


def test_generated_message_is_byte_for_byte_what_send_task_pushes(
    celery: Celery, redis_client: redis.Redis, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = sent_by_celery(celery, redis_client, queue, "task-1", str(uuid.uuid4()))
    message_id, delivery_tag = ids_of(sent)
    drawn = iter([uuid.UUID(message_id), uuid.UUID(delivery_tag)])
    monkeypatch.setattr(celery_queue.uuid, "uuid4", lambda: next(drawn))
    assert generate_message(celery, "task-1", queue) == sent


def test_messages_differ_in_their_ids_only(celery: Celery) -> None:
    messages = TaskMessages(celery)
    first, second = messages.message("task-1", "gpu.sdxl"), messages.message("task-1", "gpu.sdxl")
    assert first != second
    (first_id, first_tag), (second_id, second_tag) = ids_of(first), ids_of(second)
    assert len({first_id, first_tag, second_id, second_tag}) == 4
    assert first.replace(first_id.encode(), b"id").replace(first_tag.encode(), b"tag") == (
        second.replace(second_id.encode(), b"id").replace(second_tag.encode(), b"tag")
    )
    assert json.loads(first)["properties"]["correlation_id"] == first_id


def test_upstream_consumer_reads_the_task_id_of_a_celery_built_message(
    celery: Celery, redis_client: redis.Redis, queue: str
) -> None:
    task_id = str(uuid.uuid4())
    sent = sent_by_celery(celery, redis_client, queue, task_id, str(uuid.uuid4()))
    assert task_id_of(sent) == task_id
    assert task_id_of(sent.decode()) == task_id
    assert task_id_of(TaskMessages(celery).message(task_id, queue)) == task_id


def test_delivery_tags_follow_kombu_not_a_copy(
    celery: Celery, redis_client: redis.Redis, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The byte comparison above takes the delivery tag from kombu's message; this proves it
    # is kombu's Redis channel that draws it, so that the comparison covers kombu's envelope.
    monkeypatch.setattr(kombu.transport.virtual.base, "uuid", lambda: "kombu-drawn-tag")
    sent = sent_by_celery(celery, redis_client, queue, "task-1", str(uuid.uuid4()))
    assert json.loads(sent)["properties"]["delivery_tag"] == "kombu-drawn-tag"
    body = json.loads(base64.b64decode(json.loads(sent)["body"]))
    assert body == [
        ["task-1"],
        {},
        {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
    ]
