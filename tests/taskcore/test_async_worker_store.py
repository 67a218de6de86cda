"""The asyncio workers' status store against a real Redis: taking tasks in one step (the
take of taskcore.upstream_accounts, with an account that has room for all), and script
calls pipelined per loop turn."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from fixtures.pipelines import PipelineCounter
from fixtures.processes import RedisServer
from fixtures.tenants import submit_many

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.settings import UpstreamAccount
from taskcore.store.async_worker import AsyncWorkerTaskStore
from taskcore.store.claims import LeaseTerms
from taskcore.upstream_accounts import AccountSlots
from workers.upstream_worker import task_id_of

JOB = GenerationRequest("stable-diffusion-xl", "a cat", "", 512, 512, 1, 20, 7.0, 1)
DEPTH = 2
ROOMY = UpstreamAccount.model_validate(
    {"name": "roomy", "api_key": "sk-roomy", "submit_per_second": 1000, "max_running": 1000}
)


async def _take(redis_client: aioredis.Redis, pool: str, count: int) -> list[bytes]:
    taken = await AccountSlots(redis_client, [ROOMY]).take(pool, "m", count, DEPTH)
    return [t.message for t in taken]


@pytest.fixture
def pool() -> str:
    return "test.take." + uuid.uuid4().hex[:8]  # no worker serves it


def _run(redis_url: str, body: Callable[[aioredis.Redis, AsyncWorkerTaskStore], Any]) -> Any:
    async def main() -> Any:
        redis_client = aioredis.Redis.from_url(redis_url)
        store = AsyncWorkerTaskStore(redis_client, 3600, DEPTH, LeaseTerms("test-worker", 20.0, 3))
        try:
            return await body(redis_client, store)
        finally:
            await redis_client.aclose()

    return asyncio.run(main())


def test_a_take_feeds_the_pool_fairly_and_pops_as_many_as_asked(
    redis_server: RedisServer, pool: str, new_tenant: Callable[..., str]
) -> None:
    heavy, light = new_tenant(weight=3.0), new_tenant(weight=1.0)
    owner = {t: "heavy" for t in submit_many(redis_server.url, heavy, [JOB] * 40, pool, DEPTH)}
    owner |= {t: "light" for t in submit_many(redis_server.url, light, [JOB] * 40, pool, DEPTH)}

    async def take(redis_client: aioredis.Redis, store: AsyncWorkerTaskStore) -> Any:
        taken = await _take(redis_client, pool, 22)
        return taken, await redis_client.llen(redis_keys.celery_queue(pool))

    taken, left_in_queue = _run(redis_server.url, take)
    owners = [owner[task_id_of(envelope)] for envelope in taken]
    assert len(owners) == 22 and len(set(map(task_id_of, taken))) == 22
    # The two fed at the first submits are heavy's; then 3:1 by weight.
    assert owners[:DEPTH] == ["heavy"] * DEPTH
    assert owners[DEPTH:].count("light") == 5
    assert left_in_queue == DEPTH  # the usual look-ahead stays for the next worker
    redis_client = redis_server.client()
    assert (
        redis_client.zcard(redis_keys.starting(pool)) == 22 + DEPTH
    )  # in a worker's hands until claimed
    assert redis_client.llen(redis_keys.backlog(pool)) == 80 - 22 - DEPTH


def test_a_take_of_an_empty_pool_takes_nothing(redis_server: RedisServer, pool: str) -> None:
    async def take(redis_client: aioredis.Redis, _: AsyncWorkerTaskStore) -> Any:
        return await _take(redis_client, pool, 64)

    assert _run(redis_server.url, take) == []


def test_the_calls_of_one_loop_turn_go_to_redis_in_one_pipeline(
    redis_server: RedisServer, pool: str, new_tenant: Callable[..., str]
) -> None:
    task_ids = submit_many(redis_server.url, new_tenant(), [JOB] * 30, pool, 100)

    async def claim_all(redis_client: aioredis.Redis, store: AsyncWorkerTaskStore) -> Any:
        pipelines = PipelineCounter(redis_client)
        claims = await store.claim_many(task_ids)
        annotated = await asyncio.gather(
            *(store.annotate(t, "upstream_task_id", "u") for t in task_ids)
        )
        return claims, annotated, pipelines.count

    claims, annotated, pipelines = _run(redis_server.url, claim_all)
    assert [c.task_id for c in claims] == task_ids and all(c.attempts == 1 for c in claims)
    assert annotated == [True] * 30
    assert pipelines == 2  # 30 claims in one, then 30 annotations in another
    record = redis_server.client().hgetall(redis_keys.task(task_ids[7]))
    assert record[b"status"] == b"RUNNING" and record[b"upstream_task_id"] == b"u"


def test_a_failing_call_fails_alone_and_a_flushed_script_cache_is_refilled(
    redis_server: RedisServer, pool: str, new_tenant: Callable[..., str]
) -> None:
    (task_id,) = submit_many(redis_server.url, new_tenant(), [JOB], pool, 100)
    redis_server.client().set("not-a-hash", "x")

    async def calls(redis_client: aioredis.Redis, store: AsyncWorkerTaskStore) -> Any:
        await redis_client.script_flush()  # what a Redis restart does to the cache
        (good,), bad = await asyncio.gather(
            store.claim_many([task_id]),
            store.annotate("not-a-hash-id", "f", "v"),
            return_exceptions=True,
        )
        wrong_type = await asyncio.gather(
            store._batch.script(store._annotate, ["not-a-hash"], ["f", "v"]),
            store.annotate(task_id, "upstream_task_id", "u"),
            return_exceptions=True,
        )
        return good, bad, wrong_type

    good, bad, (wrong_type, annotated) = _run(redis_server.url, calls)
    assert good.task_id == task_id and bad is False  # no such task: nothing annotated
    assert "WRONGTYPE" in str(wrong_type) and annotated is True
