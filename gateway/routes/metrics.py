"""Prometheus metrics of the gateway, with each pool's queue read from Redis at scrape time."""

from __future__ import annotations

import asyncio
import logging

import redis
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from gateway.operations.metrics import render
from gateway.operations.pool_stats import (
    AccountStats,
    PoolStats,
    account_stats,
    pool_stats,
    routed_pools,
)
from gateway.operations.webhook_stats import WebhookStats, webhook_stats

router = APIRouter(tags=["Operations"])

log = logging.getLogger("synthgate.gateway")

# A scrape must answer (with synthgate_redis_up 0) even when Redis hangs.
REDIS_TIMEOUT_SECONDS = 2.0


_EXPOSITION = {
    "description": "Prometheus' text exposition format",
    "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
}


@router.get("/metrics", response_class=Response, responses={200: _EXPOSITION})
async def metrics(request: Request) -> Response:
    stats: list[PoolStats] | None
    accounts: list[AccountStats] = []
    webhooks: WebhookStats | None = None
    settings, client = request.app.state.settings, request.app.state.redis
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            stats = await pool_stats(client, routed_pools(settings))
            accounts = await account_stats(client, settings.catalog)
            webhooks = await webhook_stats(client)
    except (redis.RedisError, OSError, TimeoutError) as exc:
        log.debug("metrics: pool gauges left out, Redis did not answer: %s", exc)
        stats = None
    # Rendering reads every process's files in multiprocess mode: off the event loop.
    body = await run_in_threadpool(render, stats, accounts, webhooks)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
