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
from dataclasses import dataclass, replace

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


def task_id_of(raw: bytes) -> str:
    """The task id a Celery message carries (its body's first argument)."""
    task_id: str = json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0]
    return task_id


@dataclass
class Pool:
    """A pool no worker serves, its tenants' submits, and a worker's view of its queue."""

    name: str
    server: RedisServer
    client: redis.Redis
    store: WorkerTaskStore
    new_tenant: Callable[..., str]

    def submit(self, key: str, jobs: list[GenerationRequest], pool: str = "") -> list[str]:
        return submit_many(self.server.url, key, jobs, pool or self.name, DEPTH)

    def next(self, store: WorkerTaskStore | None = None, pool: str = "") -> str:
        """What Celery delivers next, claimed: its task id."""
        raw = self.client.rpop(redis_keys.celery_queue(pool or self.name))
        assert raw is not None
        claim = (store or self.store).claim(task_id_of(raw))
        assert claim is not None and claim.runnable
        return claim.task_id

    def take(self, room: int = 7) -> BatchTake:
        return self.store.take_batch(self.name, JOB, room)

    def queued(self) -> list[str]:
        """The pool's Celery queue, the next delivery first."""
        return [task_id_of(raw) for raw in reversed(self.client.lrange(self.name, 0, -1))]

    def tenants(self, task_ids: list[str]) -> list[bytes | None]:
        return [self.client.hget(redis_keys.task(task_id), "tenant") for task_id in task_ids]


@pytest.fixture
def pool(
    redis_server: RedisServer, redis_client: redis.Redis, new_tenant: Callable[..., str]
) -> Pool:
    store = WorkerTaskStore(redis_client, 3600, feed_depth=DEPTH)
    name = "test.batch." + uuid.uuid4().hex[:8]
    return Pool(name, redis_server, redis_client, store, new_tenant)


def test_a_batch_takes_the_compatible_tasks_fed_next_and_stops_at_the_first_other(
    pool: Pool,
) -> None:
    first, mate, other, later = pool.submit(pool.new_tenant(), [JOB, JOB, SMALL, JOB])
    assert pool.next() == first
    taken = pool.take()
    assert (taken.task_ids, taken.stopped) == ([mate], "blocked")
    assert pool.queued()[0] == other  # next in line, and `later` behind it
    assert later not in taken.task_ids
    claims = pool.store.claim_many(taken.task_ids)
    assert [c.task_id for c in claims if c and not isinstance(c, Exception)] == [mate]


def test_a_batch_never_overtakes_another_tenants_task_fed_before(pool: Pool) -> None:
    a_tasks = pool.submit(pool.new_tenant(), [JOB] * 4)
    (b_task,) = pool.submit(pool.new_tenant(), [SMALL])
    assert pool.next() == a_tasks[0]  # its claim fed B's task (its turn)
    # a_tasks[1] was fed before B's task; a_tasks[2:] would overtake it.
    assert pool.take() == BatchTake([a_tasks[1]], "blocked")
    assert pool.queued() == [b_task]


def test_a_batch_feeds_deeper_than_the_depth_in_the_tenants_fair_order(pool: Pool) -> None:
    # The same submits into two pools: one served task by task, the other by a batch.
    a, b = pool.new_tenant(weight=2.0), pool.new_tenant()
    alone = pool.name + ".alone"
    for target in (alone, pool.name):
        pool.submit(a, [JOB] * 6, target)
        pool.submit(b, [JOB] * 3, target)
    one_by_one = [pool.next(pool=alone) for _ in range(9)]
    first = pool.next()
    taken = pool.take(room=8)
    assert taken.stopped == "full" and len(taken.task_ids) == 8  # 8 > the depth of 2
    assert pool.tenants([first, *taken.task_ids]) == pool.tenants(one_by_one)
    assert pool.take(room=8) == BatchTake([], "empty")


def test_a_batch_holds_at_most_its_room_in_images(pool: Pool) -> None:
    jobs = [JOB, replace(JOB, n=2), JOB, replace(JOB, n=3)]
    first, two, one, three = pool.submit(pool.new_tenant(), jobs)
    assert pool.next() == first
    assert pool.take(room=4) == BatchTake([two, one], "full")  # three would make 6
    assert pool.queued() == [three]


def test_a_task_claimed_before_is_never_a_companion(pool: Pool) -> None:
    first, lost, after = pool.submit(pool.new_tenant(), [JOB] * 3)
    assert pool.next() == first
    # `lost` was claimed by a worker that died; the takeover put its message back in front.
    dead = WorkerTaskStore(pool.client, 3600, lease=LeaseTerms("dead:1", lease_seconds=0.001))
    assert pool.next(dead) == lost
    envelope = pool.client.hget(redis_keys.task(lost), "envelope")
    assert envelope is not None
    pool.client.rpush(pool.name, envelope)
    assert pool.take() == BatchTake([], "blocked")
    assert pool.queued() == [lost, after]


def test_a_canceled_task_is_taken_and_its_claim_leaves_it_out(pool: Pool) -> None:
    name = "t-" + uuid.uuid4().hex[:8]
    first, canceled, mate = pool.submit(pool.new_tenant(name), [JOB] * 3)
    assert pool.next() == first
    assert cancel_many(pool.server.url, name, [canceled]) == [TaskStatus.PENDING]
    assert pool.take(room=1) == BatchTake([canceled, mate], "full")  # mate filled it
    left_out, joined = pool.store.claim_many([canceled, mate])
    assert left_out is not None and not isinstance(left_out, Exception)
    assert left_out.previous is TaskStatus.CANCELED and not left_out.runnable
    assert joined is not None and not isinstance(joined, Exception) and joined.runnable
    assert pool.client.zcard(redis_keys.starting(pool.name)) == 0
