"""The status store against a real Redis: atomic transitions, TTLs, tenant scoping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from fixtures.processes import RedisServer, running_redis
from fixtures.records import age_claim
from fixtures.tenants import register_tenant, submit_direct

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.records import TaskStatus
from taskcore.settings import UpstreamAccount
from taskcore.store.tasks import UNFINISHED_TTL_SECONDS, TaskStore
from taskcore.store.worker import WorkerTaskStore
from taskcore.upstream_accounts import AccountSlots

JOB = GenerationRequest("stable-diffusion-xl", "a cat", "", 512, 512, 2, 5, 7.0, 9)
TTL = 3600
POOL = "test.store"  # no worker serves it: the tests claim the tasks themselves


@pytest.fixture
def tenant(new_tenant: Callable[..., str]) -> tuple[str, str]:
    """A fresh tenant's name and key."""
    name = "t-" + uuid.uuid4().hex[:8]
    return name, new_tenant(name)


def _run(redis_server: RedisServer, coro_factory: Callable[[TaskStore], Any]) -> Any:
    async def main() -> Any:
        redis_client = aioredis.Redis.from_url(redis_server.url)
        try:
            return await coro_factory(TaskStore(redis_client, TTL))
        finally:
            await redis_client.aclose()

    return asyncio.run(main())


def test_submit_writes_a_pending_record_with_a_ttl_and_indexes_it(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    task_id = submit_direct(redis_server.url, key, JOB, POOL)
    record = _run(redis_server, lambda s: s.get(task_id, name))
    assert record.status is TaskStatus.PENDING and record.request == JOB
    assert 0 < redis_client.ttl(redis_keys.task(task_id)) <= UNFINISHED_TTL_SECONDS
    assert redis_client.zscore(redis_keys.tenant_tasks(name), task_id) == record.submit_ms


def test_another_tenant_cannot_read_or_cancel(
    redis_server: RedisServer, tenant: tuple[str, str]
) -> None:
    task_id = submit_direct(redis_server.url, tenant[1], JOB, POOL)

    async def scenario(store: TaskStore) -> tuple[Any, TaskStatus]:
        return await store.get(task_id, "evil"), await store.cancel(task_id, "evil")

    assert _run(redis_server, scenario) == (None, TaskStatus.UNKNOWN)


def test_claim_finish_and_ttl_after_the_end(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    task_id = submit_direct(redis_server.url, key, JOB, POOL)
    worker = WorkerTaskStore(redis_client, TTL, feed_depth=2)
    claim = worker.claim(task_id)
    assert claim is not None and claim.runnable and claim.previous is TaskStatus.PENDING
    assert claim.attempts == 1 and claim.tenant == name and claim.request == JOB
    results = [{"key": f"{name}/x/0.png"}, {"code": "InternalError.Algo", "message": "boom"}]
    assert worker.finish(task_id, TaskStatus.SUCCEEDED, results)
    assert not worker.finish(task_id, TaskStatus.FAILED, [])  # already final: no second write
    record = _run(redis_server, lambda s: s.get(task_id, name))
    assert record.status is TaskStatus.SUCCEEDED
    assert record.metrics() == {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1}
    assert record.usage() == {"image_count": 1}
    assert 0 < redis_client.ttl(redis_keys.task(task_id)) <= TTL


def test_cancel_wins_over_a_later_claim_and_claim_of_a_redelivery_counts_attempts(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    canceled = submit_direct(redis_server.url, key, JOB, POOL)
    redelivered = submit_direct(redis_server.url, key, JOB, POOL)

    async def scenario(store: TaskStore) -> tuple[TaskStatus, TaskStatus]:
        return await store.cancel(canceled, name), await store.cancel(canceled, name)

    assert _run(redis_server, scenario) == (TaskStatus.PENDING, TaskStatus.CANCELED)
    worker = WorkerTaskStore(redis_client, TTL, feed_depth=2)
    skipped = worker.claim(canceled)
    assert skipped is not None and not skipped.runnable and skipped.previous is TaskStatus.CANCELED
    assert worker.claim(redelivered).attempts == 1  # type: ignore[union-attr]
    second = worker.claim(redelivered)
    assert second is not None and second.previous is TaskStatus.RUNNING and second.attempts == 2
    assert worker.claim(str(uuid.uuid4())) is None


def test_concurrent_cancel_and_claim_have_exactly_one_winner(
    redis_server: RedisServer, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    for _ in range(20):
        task_id = submit_direct(redis_server.url, key, JOB, POOL)

        async def race(store: TaskStore, task_id: str = task_id) -> list[Any]:
            loop = asyncio.get_running_loop()
            worker = WorkerTaskStore(redis.Redis.from_url(redis_server.url), TTL, feed_depth=2)
            claim = loop.run_in_executor(None, worker.claim, task_id)
            cancel = store.cancel(task_id, name)
            return list(await asyncio.gather(claim, cancel))

        claim, before_cancel = _run(redis_server, race)
        claimed = claim.previous is TaskStatus.PENDING and claim.runnable
        canceled = before_cancel is TaskStatus.PENDING
        assert claimed != canceled


def test_a_full_redis_refuses_new_work_whole_and_lets_running_tasks_end(
    tmp_path: Path,
) -> None:
    """At ``maxmemory`` (``noeviction``): no submit, take or claim changes anything, while
    a running task keeps its lease, reports progress and finishes (``taskcore.scripts.flags``)."""
    from workers.progress import ProgressRecorder

    with running_redis(tmp_path) as server:
        key = register_tenant(server.url, "acme")
        running, queued = (submit_direct(server.url, key, JOB, POOL) for _ in range(2))
        redis_client = server.client()
        store = WorkerTaskStore(redis_client, TTL)
        assert store.claim(running) is not None
        # An accepted submit older than the rate log's minute: the next submit trims it first.
        redis_client.zadd(redis_keys.tenant_rate("acme"), {"an-old-submit": 1})
        # The key lookup of each submit runs on a full Redis (it notes the key's last use).
        before = {k: redis_client.dump(k) for k in redis_client.scan_iter(count=1000)}
        before = {k: v for k, v in before.items() if not k.startswith(b"synthgate:key:")}
        redis_client.config_set("maxmemory-policy", "noeviction")
        redis_client.config_set("maxmemory", "1")
        try:
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                submit_direct(server.url, key, JOB, POOL)
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                store.claim(queued)

            async def take() -> list[Any]:
                aclient = aioredis.Redis.from_url(server.url)
                try:
                    account = UpstreamAccount.model_validate({"name": "a", "api_key": "sk-a"})
                    return await AccountSlots(aclient, [account]).take(POOL, "m", 1, 2)
                finally:
                    await aclient.aclose()

            with pytest.raises(redis.exceptions.OutOfMemoryError):
                asyncio.run(take())
            after = {k: redis_client.dump(k) for k in redis_client.scan_iter(count=1000)}
            assert {k: v for k, v in after.items() if not k.startswith(b"synthgate:key:")} == before

            assert store.renew([running]) == []
            assert store.annotate(running, "upstream_task_id", "up-1")
            ProgressRecorder(redis_client, store.lease.worker, 0).record(running, 40)
            assert store.mark_stored(running, [0])
            assert store.finish(running, TaskStatus.SUCCEEDED, [{"key": "acme/x/0.png"}])
        finally:
            redis_client.config_set("maxmemory", "0")
        assert redis_client.hget(redis_keys.task(running), "status") == b"SUCCEEDED"
        assert redis_client.hget(redis_keys.task(queued), "status") == b"PENDING"
        claim = store.claim(queued)  # room again: the queued task starts
        assert claim is not None and claim.attempts == 1


def test_the_reaper_ends_a_task_past_its_deadline_on_a_full_redis(tmp_path: Path) -> None:
    from taskcore.reaper import Reaper, ReaperTerms

    with running_redis(tmp_path) as server:
        key = register_tenant(server.url, "acme")
        late, fed = (submit_direct(server.url, key, JOB, POOL) for _ in range(2))
        redis_client = server.client()
        assert WorkerTaskStore(redis_client, TTL).claim(late) is not None
        terms = ReaperTerms(
            ttl_seconds=TTL,
            deadline_seconds=1,
            requeue_after_seconds=1,
            lease_seconds=20,
            max_attempts=3,
        )
        age_claim(redis_client, late, POOL, 2)
        redis_client.config_set("maxmemory-policy", "noeviction")
        redis_client.config_set("maxmemory", "1")
        try:
            reaped = Reaper(redis_client, terms).run([POOL])
        finally:
            redis_client.config_set("maxmemory", "0")
        assert reaped.tasks == 1
        assert redis_client.hget(redis_keys.task(late), "status") == b"FAILED"
        assert redis_client.hget(redis_keys.task(fed), "status") == b"PENDING"
