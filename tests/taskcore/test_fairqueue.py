"""The fair queue against a real Redis: weighted shares, newcomers, one place per task.

A "worker" here does what a Celery worker does to the pool's list (takes the oldest
message) and then claims the task through the real claim script, which feeds the pool.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable

import pytest
import redis
from fixtures.processes import RedisServer
from fixtures.tenants import submit_many

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.fairqueue import PoolFeeder
from taskcore.records import TaskStatus
from taskcore.store.worker import WorkerTaskStore

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 1, 7.0, 1)
DEPTH = 2


@pytest.fixture
def pool() -> str:
    return "test.fair." + uuid.uuid4().hex[:8]  # no worker serves it


def _take(redis_client: redis.Redis, pool: str) -> str | None:
    """Take the oldest message of the pool's Celery queue, claim its task; its task id."""
    raw = redis_client.rpop(redis_keys.celery_queue(pool))
    if raw is None:
        return None
    envelope = json.loads(raw)
    task_id: str = json.loads(base64.b64decode(envelope["body"]))[0][0]
    WorkerTaskStore(redis_client, 3600, feed_depth=DEPTH).claim(task_id)
    return task_id


def _owners(taken: list[str | None], by_tenant: dict[str, list[str]]) -> list[str]:
    owner = {task: name for name, tasks in by_tenant.items() for task in tasks}
    return [owner[task] for task in taken if task is not None]


def test_backlogged_tenants_share_a_pool_in_proportion_to_their_weights(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    heavy, light = new_tenant(weight=3.0), new_tenant(weight=1.0)
    tasks = {
        "heavy": submit_many(redis_server.url, heavy, [JOB] * 60, pool, DEPTH),
        "light": submit_many(redis_server.url, light, [JOB] * 60, pool, DEPTH),
    }
    order = _owners([_take(redis_client, pool) for _ in range(42)], tasks)
    assert order[:DEPTH] == ["heavy"] * DEPTH  # fed at once, before "light" submitted anything
    rest = order[DEPTH:]
    assert rest.count("heavy") == 30 and rest.count("light") == 10
    for start in range(0, 40, 4):  # and steadily, not in bursts
        assert rest[start : start + 4].count("light") == 1


def test_a_newcomer_waits_at_most_depth_tasks_behind_a_flood_of_1000(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    flood, newcomer = new_tenant(), new_tenant()
    tasks = {"flood": submit_many(redis_server.url, flood, [JOB] * 1000, pool, DEPTH)}
    for _ in range(10):
        _take(redis_client, pool)
    tasks["newcomer"] = submit_many(redis_server.url, newcomer, [JOB] * 3, pool, DEPTH)
    order = _owners([_take(redis_client, pool) for _ in range(8)], tasks)
    # The newcomer's first task comes right after the DEPTH tasks already in the Celery
    # queue; then the two tenants take turns (equal weights; which of them goes first at
    # an equal pass depends on their names).
    assert order[: DEPTH + 1] == ["flood"] * DEPTH + ["newcomer"]
    turns = order[DEPTH + 1 : DEPTH + 5]
    assert turns in (["flood", "newcomer"] * 2, ["newcomer", "flood"] * 2)
    assert redis_client.llen(redis_keys.backlog(pool)) == 1000 - 10 - 8 + 3 - DEPTH


def _places(redis_client: redis.Redis, pool: str, task_ids: list[str]) -> dict[str, str]:
    """Where each task is: its tenant's list, the Celery queue, running, or ended."""
    queued = set(redis_client.lrange(redis_keys.celery_queue(pool), 0, -1))
    places = {}
    for task_id in task_ids:
        status, stage, message, tenant = redis_client.hmget(
            redis_keys.task(task_id), ["status", "stage", "envelope", "tenant"]
        )
        in_list = redis_keys.task(task_id).encode() in redis_client.lrange(
            redis_keys.pending(pool, tenant.decode()), 0, -1
        )
        in_queue = message in queued
        where = [
            name
            for name, here in [
                ("list", in_list),
                ("queue", in_queue),
                ("running", status == b"RUNNING"),
                ("ended", status in {b"CANCELED", b"SUCCEEDED", b"FAILED"}),
            ]
            if here
        ]
        assert len(where) == 1, (task_id, status, stage, where)
        places[task_id] = where[0]
    return places


def test_every_task_is_in_exactly_one_place_and_the_backlog_counts_the_lists(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    first, second = new_tenant(), new_tenant()
    ids = submit_many(redis_server.url, first, [JOB] * 6, pool, DEPTH)
    ids += submit_many(redis_server.url, second, [JOB] * 4, pool, DEPTH)
    taken = [_take(redis_client, pool) for _ in range(3)]
    WorkerTaskStore(redis_client, 3600, feed_depth=DEPTH).finish(
        taken[0] or "", TaskStatus.SUCCEEDED, []
    )
    places = _places(redis_client, pool, ids)
    assert sorted(places.values()).count("queue") == DEPTH
    assert places[taken[0] or ""] == "ended"
    assert list(places.values()).count("running") == 2
    assert list(places.values()).count("list") == 10 - 3 - DEPTH
    assert redis_client.llen(redis_keys.backlog(pool)) == 10 - 3 - DEPTH
    assert redis_client.zcard(redis_keys.starting(pool)) == DEPTH


def test_the_upkeep_feed_fills_a_pool_whose_queue_lost_its_messages(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    submit_many(redis_server.url, new_tenant(), [JOB] * 5, pool, DEPTH)
    redis_client.delete(redis_keys.starting(pool))  # as after the reaper dropped stuck entries
    assert PoolFeeder(redis_client, DEPTH).feed(pool) == DEPTH
    assert redis_client.llen(redis_keys.celery_queue(pool)) == 2 * DEPTH
    assert PoolFeeder(redis_client, DEPTH).feed(pool) == 0  # full again
    assert PoolFeeder(redis_client, DEPTH).backlog(pool) == 5 - 2 * DEPTH
