"""The status store against a real Redis: atomic transitions, TTLs, tenant scoping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from fixtures.processes import RedisServer

from gateway import keys
from gateway.jobs import GenerationRequest
from gateway.records import TaskStatus
from gateway.store import UNFINISHED_TTL_SECONDS, TaskStore, WorkerTaskStore

JOB = GenerationRequest("stable-diffusion-xl", "a cat", "", 512, 512, 2, 5, 7.0, 9)
TTL = 3600


@pytest.fixture
def sync_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


def _run(redis_server: RedisServer, coro_factory):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            return await coro_factory(TaskStore(client, TTL))
        finally:
            await client.aclose()

    return asyncio.run(main())


def test_create_writes_a_pending_record_with_a_ttl_and_indexes_it(
    redis_server: RedisServer, sync_client: redis.Redis
) -> None:
    task_id = str(uuid.uuid4())
    record = _run(redis_server, lambda s: _create_and_get(s, task_id, "acme"))
    assert record.status is TaskStatus.PENDING and record.request == JOB
    assert 0 < sync_client.ttl(keys.task(task_id)) <= UNFINISHED_TTL_SECONDS
    assert sync_client.zscore(keys.tenant_tasks("acme"), task_id) == record.submit_ms


async def _create_and_get(store: TaskStore, task_id: str, tenant: str):  # type: ignore[no-untyped-def]
    await store.create(task_id, tenant, JOB, "gpu.sdxl")
    return await store.get(task_id, tenant)


def test_another_tenant_cannot_read_or_cancel(redis_server: RedisServer) -> None:
    task_id = str(uuid.uuid4())

    async def scenario(store: TaskStore):  # type: ignore[no-untyped-def]
        await store.create(task_id, "acme", JOB, "gpu.sdxl")
        return await store.get(task_id, "evil"), await store.cancel(task_id, "evil")

    assert _run(redis_server, scenario) == (None, TaskStatus.UNKNOWN)


def test_claim_finish_and_ttl_after_the_end(
    redis_server: RedisServer, sync_client: redis.Redis
) -> None:
    task_id = str(uuid.uuid4())
    _run(redis_server, lambda s: s.create(task_id, "acme", JOB, "gpu.sdxl"))
    worker = WorkerTaskStore(sync_client, TTL)
    claim = worker.claim(task_id)
    assert claim is not None and claim.runnable and claim.previous is TaskStatus.PENDING
    assert claim.attempts == 1 and claim.tenant == "acme" and claim.request == JOB
    results = [{"key": "acme/x/0.png"}, {"code": "InternalError.Algo", "message": "boom"}]
    assert worker.finish(task_id, TaskStatus.SUCCEEDED, results)
    assert not worker.finish(task_id, TaskStatus.FAILED, [])  # already final: no second write
    record = _run(redis_server, lambda s: s.get(task_id, "acme"))
    assert record.status is TaskStatus.SUCCEEDED
    assert record.metrics() == {"TOTAL": 2, "SUCCEEDED": 1, "FAILED": 1}
    assert record.usage() == {"image_count": 1}
    assert 0 < sync_client.ttl(keys.task(task_id)) <= TTL


def test_cancel_wins_over_a_later_claim_and_claim_of_a_redelivery_counts_attempts(
    redis_server: RedisServer, sync_client: redis.Redis
) -> None:
    canceled, redelivered = str(uuid.uuid4()), str(uuid.uuid4())

    async def scenario(store: TaskStore):  # type: ignore[no-untyped-def]
        await store.create(canceled, "acme", JOB, "gpu.sdxl")
        await store.create(redelivered, "acme", JOB, "gpu.sdxl")
        return await store.cancel(canceled, "acme"), await store.cancel(canceled, "acme")

    assert _run(redis_server, scenario) == (TaskStatus.PENDING, TaskStatus.CANCELED)
    worker = WorkerTaskStore(sync_client, TTL)
    skipped = worker.claim(canceled)
    assert skipped is not None and not skipped.runnable and skipped.previous is TaskStatus.CANCELED
    assert worker.claim(redelivered).attempts == 1  # type: ignore[union-attr]
    second = worker.claim(redelivered)
    assert second is not None and second.previous is TaskStatus.RUNNING and second.attempts == 2
    assert worker.claim(str(uuid.uuid4())) is None


def test_concurrent_cancel_and_claim_have_exactly_one_winner(
    redis_server: RedisServer, sync_client: redis.Redis
) -> None:
    for _ in range(20):
        task_id = str(uuid.uuid4())

        async def race(store: TaskStore, task_id: str = task_id):  # type: ignore[no-untyped-def]
            await store.create(task_id, "acme", JOB, "gpu.sdxl")
            loop = asyncio.get_running_loop()
            worker = WorkerTaskStore(redis.Redis.from_url(redis_server.url), TTL)
            claim = loop.run_in_executor(None, worker.claim, task_id)
            cancel = store.cancel(task_id, "acme")
            return await asyncio.gather(claim, cancel)

        claim, before_cancel = _run(redis_server, race)
        claimed = claim.previous is TaskStatus.PENDING and claim.runnable
        canceled = before_cancel is TaskStatus.PENDING
        assert claimed != canceled
