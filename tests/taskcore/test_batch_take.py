"""The GPU worker's batch take against a real Redis: companions in fed order, up to the first
that may not join, within the room, never a task claimed before, deeper than the feed depth.

A "worker" takes the oldest message of the pool's Celery queue and claims it, as Celery and
``run_generate`` do, then takes its batch with ``WorkerTaskStore.take_batch``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
import redis
from fixtures.processes import RedisServer
from fixtures.tenants import cancel_many, submit_many

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.records import TaskStatus
from taskcore.store.claims import LeaseTerms
from taskcore.store.worker import BatchTake, WorkerTaskStore

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 2, 7.0, 1)
SMALL = replace(JOB, width=256, height=256)
DEPTH = 2


@pytest.fixture
def pool() -> str:
    return "test.batch." + uuid.uuid4().hex[:8]  # no worker serves it


@pytest.fixture
def store(redis_client: redis.Redis) -> WorkerTaskStore:
    return WorkerTaskStore(redis_client, 3600, feed_depth=DEPTH)


def task_id_of(raw: bytes) -> str:
    """The task id a Celery message carries (its body's first argument)."""
    task_id: str = json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0]
    return task_id


def _next(redis_client: redis.Redis, store: WorkerTaskStore, pool: str) -> str:
    """What Celery delivers next, claimed: its task id."""
    raw = redis_client.rpop(redis_keys.celery_queue(pool))
    assert raw is not None
    task_id = task_id_of(raw)
    claim = store.claim(task_id)
    assert claim is not None and claim.runnable
    return task_id


def _queued(redis_client: redis.Redis, pool: str) -> list[str]:
    """The pool's Celery queue, the next delivery first."""
    return [task_id_of(raw) for raw in reversed(redis_client.lrange(pool, 0, -1))]


def test_a_batch_takes_the_compatible_tasks_fed_next_and_stops_at_the_first_other(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    store: WorkerTaskStore,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    key = new_tenant()
    first, mate, other, later = submit_many(
        redis_server.url, key, [JOB, JOB, SMALL, JOB], pool, DEPTH
    )
    assert _next(redis_client, store, pool) == first
    taken = store.take_batch(pool, JOB, room=7)
    assert (taken.task_ids, taken.stopped) == ([mate], "blocked")
    assert _queued(redis_client, pool)[0] == other  # next in line, and `later` behind it
    assert later not in taken.task_ids
    claims = store.claim_many(taken.task_ids)
    assert [c.task_id for c in claims if c and not isinstance(c, Exception)] == [mate]


def test_a_batch_never_overtakes_another_tenants_task_fed_before(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    store: WorkerTaskStore,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    a, b = new_tenant(), new_tenant()
    a_tasks = submit_many(redis_server.url, a, [JOB] * 4, pool, DEPTH)
    (b_task,) = submit_many(redis_server.url, b, [SMALL], pool, DEPTH)
    assert _next(redis_client, store, pool) == a_tasks[0]  # its claim fed B's task (its turn)
    taken = store.take_batch(pool, JOB, room=7)
    # a_tasks[1] was fed before B's task; a_tasks[2:] would overtake it.
    assert (taken.task_ids, taken.stopped) == ([a_tasks[1]], "blocked")
    assert _queued(redis_client, pool) == [b_task]


def test_a_batch_feeds_deeper_than_the_depth_in_the_tenants_fair_order(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    store: WorkerTaskStore,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    # The same submits into two pools: one served task by task, the other by a batch.
    a, b = new_tenant(weight=2.0), new_tenant()
    alone = pool + ".alone"
    for target in (alone, pool):
        submit_many(redis_server.url, a, [JOB] * 6, target, DEPTH)
        submit_many(redis_server.url, b, [JOB] * 3, target, DEPTH)
    one_by_one = [_next(redis_client, store, alone) for _ in range(9)]
    first = _next(redis_client, store, pool)
    taken = store.take_batch(pool, JOB, room=8)
    assert taken.stopped == "full" and len(taken.task_ids) == 8  # 8 > the depth of 2
    assert _tenants(redis_client, [first, *taken.task_ids]) == _tenants(redis_client, one_by_one)
    assert store.take_batch(pool, JOB, room=8) == BatchTake([], "empty")


def _tenants(redis_client: redis.Redis, task_ids: list[str]) -> list[bytes | None]:
    return [redis_client.hget(redis_keys.task(task_id), "tenant") for task_id in task_ids]


def test_a_batch_holds_at_most_its_room_in_images(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    store: WorkerTaskStore,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    jobs = [JOB, replace(JOB, n=2), JOB, replace(JOB, n=3)]
    first, two, one, three = submit_many(redis_server.url, new_tenant(), jobs, pool, DEPTH)
    assert _next(redis_client, store, pool) == first
    taken = store.take_batch(pool, JOB, room=4)
    assert (taken.task_ids, taken.stopped) == ([two, one], "full")  # three would make 6
    assert _queued(redis_client, pool) == [three]


def test_a_task_claimed_before_is_never_a_companion(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    store: WorkerTaskStore,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    first, lost, after = submit_many(redis_server.url, new_tenant(), [JOB] * 3, pool, DEPTH)
    assert _next(redis_client, store, pool) == first
    # `lost` was claimed by a worker that died; the takeover put its message back in front.
    dead = WorkerTaskStore(redis_client, 3600, lease=LeaseTerms("dead:1", lease_seconds=0.001))
    assert _next(redis_client, dead, pool) == lost
    envelope = redis_client.hget(redis_keys.task(lost), "envelope")
    assert envelope is not None
    redis_client.rpush(pool, envelope)
    taken = store.take_batch(pool, JOB, room=7)
    assert (taken.task_ids, taken.stopped) == ([], "blocked")
    assert _queued(redis_client, pool) == [lost, after]


def test_a_canceled_task_is_taken_and_its_claim_leaves_it_out(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    store: WorkerTaskStore,
    pool: str,
    new_tenant: Callable[..., str],
) -> None:
    name = "t-" + uuid.uuid4().hex[:8]
    key = new_tenant(name)
    first, canceled, mate = submit_many(redis_server.url, key, [JOB] * 3, pool, DEPTH)
    assert _next(redis_client, store, pool) == first
    assert cancel_many(redis_server.url, name, [canceled]) == [TaskStatus.PENDING]
    taken = store.take_batch(pool, JOB, room=1)
    assert (taken.task_ids, taken.stopped) == ([canceled, mate], "full")  # mate filled it
    claims = store.claim_many(taken.task_ids)
    left_out, joined = claims
    assert left_out is not None and not isinstance(left_out, Exception)
    assert left_out.previous is TaskStatus.CANCELED and not left_out.runnable
    assert joined is not None and not isinstance(joined, Exception) and joined.runnable
    assert redis_client.zcard(redis_keys.starting(pool)) == 0
