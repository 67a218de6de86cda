"""Worker leases on the status store: skip a second delivery, take over an expired lease, fail a
poison task, and let only the lease holder mark images or finish."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from fixtures.processes import RedisServer, running_redis
from fixtures.records import lapse_lease
from fixtures.tenants import register_tenant, submit_direct

from taskcore import redis_keys
from taskcore.clock import now_ms
from taskcore.contract import GenerationRequest
from taskcore.reaper import Reaper, ReaperTerms
from taskcore.records import TaskStatus
from taskcore.store.claims import POISON_CODE, LeaseTerms
from taskcore.store.worker import WorkerTaskStore

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 4, 1, 7.0, 1)
LEASE_MS = 20_000


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("leases-redis")) as server:
        # The reaper takes nothing over while Redis has been up for less than a lease.
        while int(server.client().info("server")["uptime_in_seconds"]) < 1:
            time.sleep(0.1)
        yield server


@pytest.fixture
def pool() -> str:
    return "test.leases." + uuid.uuid4().hex[:6]  # no worker serves it


@pytest.fixture
def task_id(redis_server: RedisServer, pool: str) -> str:
    name = "t-" + uuid.uuid4().hex[:8]
    key = register_tenant(redis_server.url, name, max_concurrent=10, daily_images=100)
    return submit_direct(redis_server.url, key, JOB, pool)


def _worker(redis_client: redis.Redis, name: str, max_attempts: int = 3) -> WorkerTaskStore:
    terms = LeaseTerms(worker=name, lease_seconds=LEASE_MS / 1000, max_attempts=max_attempts)
    return WorkerTaskStore(redis_client, 3600, lease=terms)


def _reaper(redis_client: redis.Redis, max_attempts: int = 3, lease_seconds: float = 1) -> Reaper:
    terms = ReaperTerms(
        ttl_seconds=3600,
        deadline_seconds=3600,
        requeue_after_seconds=60,
        lease_seconds=lease_seconds,
        max_attempts=max_attempts,
    )
    return Reaper(redis_client, terms)


def _active(redis_client: redis.Redis, task_id: str) -> int:
    tenant = redis_client.hget(redis_keys.task(task_id), "tenant")
    assert tenant is not None
    return int(
        redis_client.zscore(redis_keys.tenant_active(tenant.decode()), redis_keys.task(task_id))
        is not None
    )


def test_a_second_delivery_is_skipped_while_the_lease_runs(
    redis_client: redis.Redis, task_id: str, pool: str
) -> None:
    first = _worker(redis_client, "a").claim(task_id)
    assert first is not None and first.runnable and first.attempts == 1
    second = _worker(redis_client, "b").claim(task_id)
    assert second is not None and not second.runnable and second.attempts == -1
    holder, lease = redis_client.hmget(redis_keys.task(task_id), ["worker", "lease_ms"])
    assert holder == b"a" and lease is not None and int(lease) > now_ms()
    assert redis_client.zscore(redis_keys.leases(pool), redis_keys.task(task_id)) == int(lease)


def test_an_expired_lease_is_taken_over_and_only_the_new_holder_finishes(
    redis_client: redis.Redis, task_id: str, pool: str
) -> None:
    old, new = _worker(redis_client, "a"), _worker(redis_client, "b")
    assert old.claim(task_id) is not None
    assert old.mark_stored(task_id, [0, 2])
    redis_client.delete(redis_keys.celery_queue(pool))  # the first delivery was taken
    reaper = _reaper(redis_client)
    assert reaper.run([pool]).taken_over == 0  # lease still running
    lapse_lease(redis_client, task_id, pool)
    reaped = reaper.run([pool])
    assert reaped.taken_over == 1
    message = redis_client.hget(redis_keys.task(task_id), "envelope")
    assert redis_client.lrange(redis_keys.celery_queue(pool), 0, -1) == [message]
    # Nobody's until claimed: not pushed again within the next lease.
    assert reaper.run([pool]).taken_over == 0
    claim = new.claim(task_id)
    assert claim is not None and claim.runnable and claim.attempts == 2
    assert claim.stored == frozenset({0, 2})
    assert not old.mark_stored(task_id, [1])
    assert old.renew([task_id]) == [task_id]
    assert not old.finish(task_id, TaskStatus.SUCCEEDED, [{"key": "k"}] * 4)
    assert _active(redis_client, task_id) == 1
    assert new.finish(task_id, TaskStatus.SUCCEEDED, [{"key": "k"}] * 4)
    assert _active(redis_client, task_id) == 0
    assert redis_client.zscore(redis_keys.leases(pool), redis_keys.task(task_id)) is None
    leftovers = redis_client.hmget(
        redis_keys.task(task_id), ["worker", "lease_ms", "stored", "envelope"]
    )
    assert leftovers == [None, None, None, None]


def test_a_task_that_keeps_killing_its_workers_fails_after_max_attempts(
    redis_client: redis.Redis, task_id: str, pool: str
) -> None:
    reaper = _reaper(redis_client, max_attempts=2)
    for attempt, name in enumerate(["a", "b"], start=1):
        claim = _worker(redis_client, name, max_attempts=2).claim(task_id)
        assert claim is not None and claim.attempts == attempt
        lapse_lease(redis_client, task_id, pool)  # its worker died
        reaped = reaper.run([pool])
        assert (reaped.taken_over, reaped.poisoned) == ((1, 0) if attempt == 1 else (0, 1))
    status, code = redis_client.hmget(redis_keys.task(task_id), ["status", "code"])
    assert (status, code) == (b"FAILED", POISON_CODE.encode())
    assert _active(redis_client, task_id) == 0
    late = _worker(redis_client, "c", max_attempts=2).claim(task_id)  # Celery's own redelivery
    assert late is not None and not late.runnable and late.previous is TaskStatus.FAILED


def test_a_claim_past_max_attempts_fails_the_task(redis_client: redis.Redis, task_id: str) -> None:
    for name in ["a", "b"]:  # each died; Celery requeued the message at once
        assert _worker(redis_client, name, max_attempts=2).claim(task_id) is not None
        redis_client.hset(redis_keys.task(task_id), "lease_ms", 0)
    claim = _worker(redis_client, "c", max_attempts=2).claim(task_id)
    assert claim is not None and not claim.runnable and claim.previous is TaskStatus.FAILED
    assert redis_client.hget(redis_keys.task(task_id), "code") == POISON_CODE.encode()
    assert _active(redis_client, task_id) == 0


def test_no_takeover_right_after_redis_restarted(
    redis_client: redis.Redis, task_id: str, pool: str
) -> None:
    assert _worker(redis_client, "a").claim(task_id) is not None
    # Redis has been up for less than this lease: holders may not have renewed yet.
    lapse_lease(redis_client, task_id, pool)
    reaper = _reaper(redis_client, lease_seconds=10**6)
    assert reaper.run([pool]).taken_over == 0
    assert _reaper(redis_client).run([pool], take_over=False).taken_over == 0
    assert redis_client.hget(redis_keys.task(task_id), "worker") == b"a"


def test_renewing_extends_the_lease_of_held_tasks(
    redis_client: redis.Redis, task_id: str, pool: str
) -> None:
    worker = _worker(redis_client, "a")
    assert worker.claim(task_id) is not None
    redis_client.hset(redis_keys.task(task_id), "lease_ms", 1)
    assert worker.renew([task_id]) == []
    lease = int(redis_client.hget(redis_keys.task(task_id), "lease_ms") or 0)
    assert lease > now_ms() + LEASE_MS - 5_000
    assert redis_client.zscore(redis_keys.leases(pool), redis_keys.task(task_id)) == lease


def test_a_renewal_that_races_the_finish_reports_nothing_lost(
    redis_client: redis.Redis, task_id: str, pool: str
) -> None:
    # The renewing thread looked at what it holds just before the task's finish landed: the
    # task ended, it was not lost to another worker.
    worker = _worker(redis_client, "a")
    assert worker.claim(task_id) is not None
    assert worker.finish(task_id, TaskStatus.SUCCEEDED, [{"key": "k"}])
    assert worker.renew([task_id]) == []
    assert redis_client.hget(redis_keys.task(task_id), "status") == b"SUCCEEDED"
    assert redis_client.zscore(redis_keys.leases(pool), redis_keys.task(task_id)) is None


def test_a_task_taken_over_or_gone_is_lost_to_its_old_holder(
    redis_client: redis.Redis, task_id: str, pool: str
) -> None:
    worker = _worker(redis_client, "a")
    assert worker.claim(task_id) is not None
    lapse_lease(redis_client, task_id, pool)
    assert _reaper(redis_client).run([pool]).taken_over == 1  # RUNNING, nobody's
    assert worker.renew([task_id]) == [task_id]
    redis_client.delete(redis_keys.task(task_id))
    assert worker.renew([task_id]) == [task_id]


def test_a_worker_that_lost_its_lease_can_neither_annotate_nor_report_progress(
    redis_client: redis.Redis, task_id: str, pool: str
) -> None:
    from workers.progress import ProgressRecorder

    old, new = _worker(redis_client, "a"), _worker(redis_client, "b")
    assert old.claim(task_id) is not None
    lapse_lease(redis_client, task_id, pool)  # cut off from Redis for longer than a lease
    claim = new.claim(task_id)
    assert claim is not None and claim.runnable
    assert new.annotate(task_id, "upstream_task_id", "up-new")
    ProgressRecorder(redis_client, "b", interval_seconds=0).record(task_id, 30)
    assert not old.annotate(task_id, "upstream_task_id", "up-old")
    ProgressRecorder(redis_client, "a", interval_seconds=0).record(task_id, 60)
    fields = redis_client.hmget(redis_keys.task(task_id), ["upstream_task_id", "progress"])
    assert fields == [b"up-new", b"30"]
