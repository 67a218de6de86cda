"""What waits in each pool, read from Redis in three round trips whatever the backlog.

A waiting task is in one of two places (see :mod:`taskcore.fairqueue`): one of its
tenant's pending lists for the pool (one per priority level, each FIFO: LPUSH, RPOP; one
token per task in the pool's ``backlog`` list), or, once fed, the pool's Celery queue,
which kombu's Redis transport keeps as a list named like the queue (LPUSH, BRPOP; the
message body carries the task id). So the depth is two LLENs, and the oldest waiting task
is the oldest of the Celery queue's last message and each non-empty tenant list's last
entry (the pool's ``ready`` set names the tenants): one look-up per tenant and level with
a backlog, never per task. Its record holds the submit time. A task a worker has taken
is in neither place.

This is the one place that knows where waiting tasks are: metrics (and whatever scales
on queue length) read it through :func:`pool_stats` and :func:`pool_depth`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from taskcore import redis_keys
from taskcore.catalog import Catalog, ModelSpec
from taskcore.celery_queue import task_id_of
from taskcore.priority import ORDER
from taskcore.settings import Settings


@dataclass(frozen=True, slots=True)
class PoolStats:
    """One pool now: waiting tasks, how long the oldest has waited, live workers."""

    pool: str
    depth: int
    oldest_age_seconds: float  # 0 when nothing waits (or the oldest's record is gone)
    live_workers: int


def routed_pools(settings: Settings) -> list[str]:
    """The pools the catalog sends tasks to (each needs a live worker)."""
    return list(settings.catalog.pools())


async def pool_depth(client: aioredis.Redis, pool: str) -> int:
    """How many tasks wait for ``pool``: fed into its Celery queue, or still in tenant lists."""
    async with client.pipeline(transaction=False) as pipe:
        pipe.llen(redis_keys.celery_queue(pool))
        pipe.llen(redis_keys.backlog(pool))
        queued, backlog = await pipe.execute()
    return int(queued) + int(backlog)


async def live_workers(client: aioredis.Redis, pools: Sequence[str]) -> dict[str, int]:
    """Workers of each pool whose heartbeat has not expired (see workers.heartbeat)."""
    now_ms = time.time() * 1000
    async with client.pipeline(transaction=False) as pipe:
        for pool in pools:
            pipe.zcount(redis_keys.pool_workers(pool), now_ms, "+inf")
        replies = await pipe.execute()
    return {pool: int(n) for pool, n in zip(pools, replies, strict=True)}


async def pool_stats(client: aioredis.Redis, pools: Sequence[str]) -> list[PoolStats]:
    """Depth, oldest waiting age and live workers of each pool."""
    now_ms = time.time() * 1000
    async with client.pipeline(transaction=False) as pipe:
        for pool in pools:
            pipe.llen(redis_keys.celery_queue(pool))
            pipe.llen(redis_keys.backlog(pool))
            pipe.lindex(redis_keys.celery_queue(pool), -1)
            pipe.zrange(redis_keys.ready(pool), 0, -1)
            pipe.zcount(redis_keys.pool_workers(pool), now_ms, "+inf")
        replies: list[Any] = await pipe.execute()
    rows = [replies[start : start + 5] for start in range(0, len(replies), 5)]
    heads = await _tenant_list_heads(client, [row[3] for row in rows])
    candidates = [
        [key for key in [_record_key(row[2]), *pool_heads] if key]
        for row, pool_heads in zip(rows, heads, strict=True)
    ]
    submitted = await _submit_times(client, candidates)
    return [
        PoolStats(
            pool=pool,
            depth=int(row[0]) + int(row[1]),
            oldest_age_seconds=max(0.0, (now_ms - first) / 1000) if first else 0.0,
            live_workers=int(row[4]),
        )
        for pool, row, first in zip(pools, rows, submitted, strict=True)
    ]


async def _tenant_list_heads(
    client: aioredis.Redis, tenants_per_pool: list[list[bytes]]
) -> list[list[bytes]]:
    """The oldest entry (a record key) of each tenant's list of each level, grouped by pool."""
    lists_per_pool = [
        [redis_keys.pending_level(name.decode(), level) for name in tenants for level in ORDER]
        for tenants in tenants_per_pool
    ]
    async with client.pipeline(transaction=False) as pipe:
        for lists in lists_per_pool:
            for name in lists:
                pipe.lindex(name, -1)
        flat = iter(await pipe.execute())
    return [[head for head in (next(flat) for _ in lists) if head] for lists in lists_per_pool]


async def _submit_times(client: aioredis.Redis, candidates: list[list[bytes | str]]) -> list[int]:
    """For each pool, the earliest submit time (ms) among its candidates' records; 0: none."""
    async with client.pipeline(transaction=False) as pipe:
        for keys_of_pool in candidates:
            for key in keys_of_pool:
                pipe.hget(key, "submit_ms")
        flat = iter(await pipe.execute())
    earliest = []
    for keys_of_pool in candidates:
        times = [int(t) for t in (next(flat) for _ in keys_of_pool) if t]
        earliest.append(min(times, default=0))
    return earliest


def _record_key(message: bytes | None) -> str | None:
    """The task record of a ``synthgate.generate`` message; None for anything else."""
    if not message:
        return None
    try:
        return redis_keys.task(task_id_of(message))
    except (ValueError, KeyError, IndexError, TypeError):  # JSON and base64 errors are ValueErrors
        return None


@dataclass(frozen=True, slots=True)
class AccountStats:
    """One DashScope account now: its tasks running per model against its limit, the tasks
    waiting for the models it serves, and its rest after a 429 (see
    taskcore.upstream_accounts)."""

    account: str
    running: dict[str, int]  # model -> tasks running upstream under the account
    max_running: dict[str, int]  # model -> the account's limit
    waiting: int
    resting_seconds: float = 0.0  # how long it still rests after DashScope throttled it


async def account_stats(client: aioredis.Redis, catalog: Catalog) -> list[AccountStats]:
    """Every account the upstream workers registered, read in two round trips."""
    registered = await client.hgetall(redis_keys.upstream_accounts())
    accounts: list[tuple[str, list[ModelSpec], dict[str, int]]] = []
    for key, raw in sorted(registered.items()):
        name = key.decode() if isinstance(key, bytes) else str(key)
        try:
            limits = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        served = [m for m in catalog.models.values() if m.upstream]
        if limits.get("models"):
            served = [m for m in served if m.name in limits["models"]]
        by_model = limits.get("max_running_by_model") or {}
        maxima = {m.name: int(by_model.get(m.name, limits.get("max_running", 0))) for m in served}
        accounts.append((name, served, maxima))
    async with client.pipeline(transaction=False) as pipe:
        for name, served, _ in accounts:
            pipe.pttl(redis_keys.upstream_rest(name))
            for spec in served:
                pipe.scard(redis_keys.upstream_running(name, spec.name))
                pipe.llen(redis_keys.celery_queue(spec.upstream_pool))
                pipe.llen(redis_keys.backlog(spec.upstream_pool))
        replies = iter(await pipe.execute())
    stats = []
    for name, served, maxima in accounts:
        rest_ms = max(0, int(next(replies)))  # PTTL: -2 no key, -1 no expiry (never set so)
        running, waiting = {}, 0
        for spec in served:
            running[spec.name] = int(next(replies))
            waiting += int(next(replies)) + int(next(replies))
        stats.append(AccountStats(name, running, maxima, waiting, rest_ms / 1000))
    return stats
