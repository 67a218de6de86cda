"""Every way a task ends releases its tenant's slot and unmade images once (real Redis)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from fixtures.processes import RedisServer, running_redis
from fixtures.records import age_claim, age_starting
from fixtures.tenants import cancel_many, register_tenant, submit_direct, submit_many

from gateway.tenancy.usage import utc_day
from taskcore import redis_keys
from taskcore.clock import now_ms
from taskcore.contract import GenerationRequest
from taskcore.reaper import LOST_CODE, SWEEP_BUDGET, Reaper, ReaperTerms
from taskcore.records import TaskStatus
from taskcore.store.worker import WorkerTaskStore

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 2, 1, 7.0, 1)
POOL = "test.slots"  # no worker serves it


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own: the reaper here looks at every tenant's tasks."""
    with running_redis(tmp_path_factory.mktemp("slots-redis")) as server:
        yield server


@pytest.fixture
def tenant(redis_server: RedisServer) -> tuple[str, str]:
    name = "t-" + uuid.uuid4().hex[:8]
    return name, register_tenant(redis_server.url, name, max_concurrent=10, daily_images=100)


def _usage(redis_client: redis.Redis, name: str) -> dict[str, int]:
    raw = redis_client.hgetall(redis_keys.tenant_usage(name, utc_day(now_ms())))
    return {k.decode(): int(v) for k, v in raw.items()}


def test_counters_return_to_zero_after_success_failure_and_cancel(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    worker = WorkerTaskStore(redis_client, 3600, feed_depth=2)
    ok, failed, canceled = (submit_direct(redis_server.url, key, JOB, POOL) for _ in range(3))
    assert redis_client.zcard(redis_keys.tenant_active(name)) == 3
    assert _usage(redis_client, name)["images"] == 6  # reserved at submit
    worker.claim(ok)
    worker.finish(ok, TaskStatus.SUCCEEDED, [{"key": "k/0.png"}, {"code": "X", "message": "m"}])
    worker.claim(failed)
    worker.finish(failed, TaskStatus.FAILED, [], "InternalError.Algo", "boom")
    assert cancel_many(redis_server.url, name, [canceled]) == [TaskStatus.PENDING]
    # Ending twice changes nothing: the slot and the images are given back once.
    assert not worker.finish(ok, TaskStatus.FAILED, [])
    assert cancel_many(redis_server.url, name, [canceled]) == [TaskStatus.CANCELED]
    assert redis_client.zcard(redis_keys.tenant_active(name)) == 0
    usage = _usage(redis_client, name)
    assert usage["images"] == 1  # what was billed: the one image made
    assert usage["images_succeeded"] == 1 and usage["images_failed"] == 3
    assert (usage["tasks_succeeded"], usage["tasks_failed"], usage["tasks_canceled"]) == (1, 1, 1)


def test_reaper_fails_a_task_lost_while_running_and_releases_its_slot(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    task_id = submit_direct(redis_server.url, key, JOB, POOL)
    WorkerTaskStore(redis_client, 3600, feed_depth=2).claim(task_id)
    reaper = Reaper(redis_client, _terms(deadline=60, requeue_after=60))
    assert reaper.run([POOL]).tasks == 0  # claimed just now: not lost
    age_claim(redis_client, task_id, POOL, 61)
    assert reaper.run([POOL]).tasks == 1
    status, code = redis_client.hmget(redis_keys.task(task_id), ["status", "code"])
    assert (status, code) == (b"FAILED", LOST_CODE.encode())
    assert redis_client.zcard(redis_keys.tenant_active(name)) == 0
    assert _usage(redis_client, name)["images"] == 0
    assert not WorkerTaskStore(redis_client, 3600, feed_depth=2).finish(
        task_id, TaskStatus.FAILED, []
    )
    assert reaper.run([POOL]).tasks == 0


def test_reaper_releases_the_slot_of_a_record_that_expired(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    task_id = submit_direct(redis_server.url, key, JOB, POOL)
    redis_client.delete(redis_keys.task(task_id))
    Reaper(redis_client, _terms(deadline=60, requeue_after=60)).run([])
    assert redis_client.zcard(redis_keys.tenant_active(name)) == 0


def test_reaper_requeues_a_fed_task_whose_message_left_the_queue_unclaimed(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    pool = POOL + "." + uuid.uuid4().hex[:6]
    _, key = tenant
    for _ in range(3):
        submit_direct(redis_server.url, key, JOB, pool)
    taken = redis_client.rpop(
        redis_keys.celery_queue(pool)
    )  # a worker took it, then died before its claim
    reaper = Reaper(redis_client, _terms(deadline=60, requeue_after=30))
    assert reaper.run([pool]).unstuck == 0  # too recent to tell
    age_starting(redis_client, pool, 31)
    assert reaper.run([pool]).unstuck == 1  # the other is still queued
    assert redis_client.lrange(redis_keys.celery_queue(pool), -1, -1) == [taken]  # next to be taken
    assert redis_client.zcard(redis_keys.starting(pool)) == 2
    # Re-armed: not pushed again while its new copy waits in the queue.
    age_starting(redis_client, pool, 31)
    assert reaper.run([pool]).unstuck == 0
    assert redis_client.llen(redis_keys.celery_queue(pool)) == 2


def _terms(*, deadline: float, requeue_after: float) -> ReaperTerms:
    return ReaperTerms(
        ttl_seconds=3600,
        deadline_seconds=deadline,
        requeue_after_seconds=requeue_after,
        lease_seconds=20,
        max_attempts=3,
    )


BACKLOG = 5_000


def test_a_task_past_its_deadline_fails_behind_5000_old_pending_tasks(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    name = "t-" + uuid.uuid4().hex[:8]
    key = register_tenant(redis_server.url, name)  # unlimited: a batch backlog
    pool = POOL + "." + uuid.uuid4().hex[:6]
    submit_many(redis_server.url, key, [JOB] * BACKLOG, pool)
    stuck = submit_direct(redis_server.url, key, JOB, pool)
    redis_client.delete(redis_keys.starting(pool))  # nothing else is fed in front of it
    assert WorkerTaskStore(redis_client, 3600).claim(stuck) is not None
    age_claim(redis_client, stuck, pool, 61)  # its pipeline hung; the lease thread renews
    Reaper(redis_client, _terms(deadline=60, requeue_after=60)).run([pool])
    status, code = redis_client.hmget(redis_keys.task(stuck), ["status", "code"])
    assert (status, code) == (b"FAILED", LOST_CODE.encode())
    assert redis_client.zcard(redis_keys.tenant_active(name)) == BACKLOG


def test_the_slot_of_an_expired_record_behind_5000_pending_tasks_is_released(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    name = "t-" + uuid.uuid4().hex[:8]
    key = register_tenant(redis_server.url, name)
    pool = POOL + "." + uuid.uuid4().hex[:6]
    submit_many(redis_server.url, key, [JOB] * BACKLOG, pool)
    gone = submit_direct(redis_server.url, key, JOB, pool)
    redis_client.delete(redis_keys.task(gone))  # it expired
    reaper = Reaper(redis_client, _terms(deadline=60, requeue_after=60))
    active = redis_keys.tenant_active(name)
    # Every tenant's tasks in this Redis (some 10,000), a bounded step per pass: the sweep
    # under way finishes, then the next one reaches the tenant.
    passes = 0
    while redis_client.zscore(active, redis_keys.task(gone)) is not None and passes < 40:
        reaper.run([])
        passes += 1
    assert redis_client.zscore(active, redis_keys.task(gone)) is None
    assert redis_client.zcard(active) == BACKLOG
    assert passes <= 4 * BACKLOG // SWEEP_BUDGET


def test_a_reaper_pass_runs_as_many_scripts_with_10000_tenants(
    redis_client: redis.Redis,
) -> None:
    redis_client.sadd(redis_keys.tenants(), *(f"idle-{i}" for i in range(10_000)))
    reaper = Reaper(redis_client, _terms(deadline=60, requeue_after=60))
    try:
        reaper.run([POOL])  # the scripts loaded
        redis_client.config_resetstat()
        reaper.run([POOL])
        stats = redis_client.info("commandstats")
    finally:
        redis_client.srem(redis_keys.tenants(), *(f"idle-{i}" for i in range(10_000)))
    scripts_run = sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )
    # The deadlines, requeue and takeover of its one pool, and one step of the sweep.
    assert scripts_run <= 4, stats
