"""Pool depth and oldest waiting age, read from a real Redis that real Celery messages sit in."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer
from fixtures.tenants import register_tenant, submit_many

from gateway.operations.pool_stats import PoolStats, pool_depth, pool_stats, routed_pools
from taskcore.celery_queue import GENERATE_TASK, create_celery
from taskcore.contract import GenerationRequest
from taskcore.settings import Settings
from taskcore.store.tasks import TaskStore

JOB = GenerationRequest(
    model="stable-diffusion-xl",
    prompt="a cat",
    negative_prompt="",
    width=1024,
    height=1024,
    n=1,
    steps=2,
    scale=7.0,
    seed=1,
)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of its own: no worker consumes these queues."""
    server = RedisServer(tmp_path_factory.mktemp("queues-redis"))
    server.start()
    yield server
    server.stop()


def _queue_task(broker: RedisServer, pool: str) -> None:
    """What a submit does: a PENDING record, then a Celery message on the pool's queue."""

    async def record() -> None:
        redis_client = aioredis.Redis.from_url(broker.url)
        await TaskStore(redis_client, 3600).create(task_id, "acme", JOB, pool)
        await redis_client.aclose()

    task_id = str(uuid.uuid4())
    asyncio.run(record())
    celery = create_celery(Settings(redis_url=broker.url))
    celery.send_task(GENERATE_TASK, args=[task_id], queue=pool)


def _stats(broker: RedisServer, pools: list[str]) -> tuple[list[PoolStats], int]:
    async def read() -> tuple[list[PoolStats], int]:
        redis_client = aioredis.Redis.from_url(broker.url)
        try:
            return await pool_stats(redis_client, pools), await pool_depth(redis_client, pools[0])
        finally:
            await redis_client.aclose()

    return asyncio.run(read())


def test_depth_counts_waiting_messages_and_age_is_the_oldest_ones(broker: RedisServer) -> None:
    empty, depth = _stats(broker, ["gpu.sd15"])
    assert (empty[0].depth, empty[0].oldest_age_seconds, depth) == (0, 0.0, 0)
    started = time.monotonic()
    _queue_task(broker, "gpu.sd15")
    time.sleep(0.3)
    _queue_task(broker, "gpu.sd15")
    [stats], depth = _stats(broker, ["gpu.sd15"])
    waited = time.monotonic() - started
    assert stats.depth == depth == 2
    assert 0.3 <= stats.oldest_age_seconds <= waited + 0.05  # the first one's, not the last's
    assert stats.live_workers == 0


def test_a_task_still_in_its_tenant_list_counts_and_ages(broker: RedisServer) -> None:
    """Fair queueing feeds one task at a time here; a worker took the fed one's message and
    has not claimed it yet, so the other waits in its tenant's list, the queue is empty."""
    key = register_tenant(broker.url, "queues-" + uuid.uuid4().hex[:6])
    started = time.monotonic()
    submit_many(broker.url, key, [JOB, JOB], "gpu.sdxl", feed_depth=1)
    assert broker.client().rpop("gpu.sdxl")  # the worker's BRPOP
    time.sleep(0.2)
    [stats], depth = _stats(broker, ["gpu.sdxl"])
    assert stats.depth == depth == 1
    assert 0.2 <= stats.oldest_age_seconds <= time.monotonic() - started


def test_a_message_without_a_record_counts_but_has_no_age(broker: RedisServer) -> None:
    redis_client = broker.client()
    pool = "upstream.stable-diffusion-xl"
    redis_client.lpush(pool, json.dumps({"body": "not base64 json"}))
    [stats], _ = _stats(broker, [pool])
    assert (stats.depth, stats.oldest_age_seconds) == (1, 0.0)


def test_routed_pools_are_those_the_routes_send_to() -> None:
    sd = ("stable-diffusion-v1.5", "stable-diffusion-xl")
    every = dict.fromkeys(sd, "upstream")
    assert routed_pools(Settings()) == ["gpu.sd15", "gpu.sdxl"]
    with_key = {"upstream_api_key": "sk-test"}
    upstream_only = routed_pools(Settings(routes=every, **with_key))
    assert "gpu.sdxl" not in upstream_only and "gpu.sd15" not in upstream_only
    assert {f"upstream.{m}" for m in sd} <= set(upstream_only)
    assert "upstream.wanx2.1-t2i-turbo" in upstream_only  # an upstream model of the catalog
    both = Settings(
        routes={"stable-diffusion-xl": "both", "stable-diffusion-v1.5": "upstream"}, **with_key
    )
    pools = routed_pools(both)
    assert "gpu.sdxl" in pools and "gpu.sd15" not in pools
    assert {"upstream.stable-diffusion-xl", "upstream.stable-diffusion-v1.5"} <= set(pools)


def test_without_an_account_no_pool_is_upstream() -> None:
    every = dict.fromkeys(("stable-diffusion-v1.5", "stable-diffusion-xl"), "both")
    assert routed_pools(Settings(routes=every)) == ["gpu.sd15", "gpu.sdxl"]
