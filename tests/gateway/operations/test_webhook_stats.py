"""The webhook backlog, read from a real Redis's due set, and its gauges on /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer, running_redis
from prometheus_client.parser import text_string_to_metric_families

from gateway.operations.metrics import render
from gateway.operations.pool_stats import PoolStats
from gateway.operations.webhook_stats import WebhookStats, webhook_stats
from taskcore import redis_keys


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of its own: no worker delivers these webhooks."""
    with running_redis(tmp_path_factory.mktemp("webhooks-redis")) as redis_server:
        yield redis_server


def _stats(server: RedisServer, due_in_seconds: dict[str, float]) -> WebhookStats:
    """The stats once the due set holds each record key due that many seconds from now
    (by Redis' clock, as the delivery scripts score them)."""

    async def read() -> WebhookStats:
        client = aioredis.Redis.from_url(server.url)
        try:
            await client.delete(redis_keys.webhooks_due())
            seconds, micros = await client.time()
            now_ms = seconds * 1000 + micros // 1000
            if due_in_seconds:
                scores = {key: now_ms + 1000 * d for key, d in due_in_seconds.items()}
                await client.zadd(redis_keys.webhooks_due(), scores)
            return await webhook_stats(client)
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_an_empty_due_set_is_no_backlog(server: RedisServer) -> None:
    assert _stats(server, {}) == WebhookStats(pending=0, due=0, oldest_due_seconds=0.0)


def test_due_deliveries_are_the_backlog_and_leased_or_retrying_ones_only_pending(
    server: RedisServer,
) -> None:
    stats = _stats(
        server,
        {
            redis_keys.task("late"): -30.0,  # due 30 s ago, in no worker's hands
            redis_keys.task("due"): -2.0,
            redis_keys.task("leased"): 40.0,  # a worker holds it (score a lease ahead)
            redis_keys.task("retry"): 600.0,  # failed once, tried again in 10 minutes
        },
    )
    assert (stats.pending, stats.due) == (4, 2)
    assert 30.0 <= stats.oldest_due_seconds < 35.0


def test_nothing_due_yet_has_waited_no_time(server: RedisServer) -> None:
    stats = _stats(server, {redis_keys.task("retry"): 60.0})
    assert stats == WebhookStats(pending=1, due=0, oldest_due_seconds=0.0)


def _gauges(text: bytes) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.name.startswith("synthgate_webhooks_")
    }


def test_the_backlog_is_exported_while_redis_answers() -> None:
    pools = [PoolStats("gpu.sdxl", 0, 0.0, 1)]
    text = render(pools, (), WebhookStats(pending=7, due=3, oldest_due_seconds=42.5))
    assert _gauges(text) == {
        "synthgate_webhooks_pending": 7.0,
        "synthgate_webhooks_due": 3.0,
        "synthgate_webhooks_oldest_due_seconds": 42.5,
    }
    # Redis did not answer: no stale zero that would hide a backlog, as for the pool gauges.
    assert _gauges(render(None)) == {}
