"""Routing: local, upstream, and local with spill-over when the local queue is deep."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer, running_redis

from gateway.intake.routing import Dispatcher
from taskcore import redis_keys
from taskcore.celery_queue import create_celery
from taskcore.settings import Settings

XL_UPSTREAM = "upstream.stable-diffusion-xl"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own: the messages pushed below are not JSON, and the session
    stack's GPU worker, which serves gpu.sdxl on the shared Redis, would take one and stop."""
    with running_redis(tmp_path_factory.mktemp("routing-redis")) as server:
        yield server


def _queue_for(
    redis_server: RedisServer, routes: dict[str, str], model: str, depth: int, backlog: int = 0
) -> str:
    """The route for ``model`` with ``depth`` messages in gpu.sdxl's Celery queue and
    ``backlog`` tasks in its tenants' fair-queue lists."""
    settings = Settings(
        redis_url=redis_server.url,
        routes=routes,  # type: ignore[arg-type]
        spillover_queue_depth=3,
        upstream_api_key="sk-test",  # type: ignore[arg-type]
    )
    lists = [redis_keys.celery_queue("gpu.sdxl"), redis_keys.backlog("gpu.sdxl")]

    async def decide() -> str:
        redis_client = aioredis.Redis.from_url(redis_server.url)
        await redis_client.delete(*lists)
        for name, length in zip(lists, [depth, backlog], strict=True):
            if length:
                await redis_client.rpush(name, *[b"message"] * length)
        try:
            return await Dispatcher(create_celery(settings), redis_client, settings).queue_for(
                model
            )
        finally:
            await redis_client.delete(*lists)
            await redis_client.aclose()

    return asyncio.run(decide())


def test_default_route_is_the_local_pool(redis_server: RedisServer) -> None:
    assert _queue_for(redis_server, {}, "stable-diffusion-xl", 10) == "gpu.sdxl"
    assert _queue_for(redis_server, {}, "stable-diffusion-v1.5", 0) == "gpu.sd15"


def test_upstream_route_always_goes_upstream(redis_server: RedisServer) -> None:
    routes = {"stable-diffusion-xl": "upstream"}
    assert _queue_for(redis_server, routes, "stable-diffusion-xl", 0) == XL_UPSTREAM


def test_both_spills_over_only_when_the_local_queue_is_deeper_than_the_threshold(
    redis_server: RedisServer,
) -> None:
    routes = {"stable-diffusion-xl": "both"}
    assert _queue_for(redis_server, routes, "stable-diffusion-xl", 3) == "gpu.sdxl"
    assert _queue_for(redis_server, routes, "stable-diffusion-xl", 4) == XL_UPSTREAM


def test_an_upstream_model_goes_to_its_own_upstream_pool(redis_server: RedisServer) -> None:
    assert _queue_for(redis_server, {}, "wanx2.1-t2i-turbo", 0) == "upstream.wanx2.1-t2i-turbo"


def test_spill_over_counts_the_tasks_waiting_in_the_fair_queue_too(
    redis_server: RedisServer,
) -> None:
    routes = {"stable-diffusion-xl": "both"}
    assert _queue_for(redis_server, routes, "stable-diffusion-xl", 2, backlog=1) == "gpu.sdxl"
    assert _queue_for(redis_server, routes, "stable-diffusion-xl", 2, backlog=2) == XL_UPSTREAM
