"""The webhook deliveries still to make, read from Redis at scrape time.

Every finished task with a webhook to deliver is a member of one sorted set
(:func:`taskcore.redis_keys.webhooks_due`), scored by when its next attempt is due (ms, by
Redis' clock). A worker that takes a delivery pushes its score a lease ahead; a failed
attempt pushes it to the retry's time; a delivered (or given up) one leaves the set. So
the members scored at or before now are the backlog: due, and in no worker's hands.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from taskcore import redis_keys


@dataclass(frozen=True, slots=True)
class WebhookStats:
    """The webhook deliveries now: all still to make, those due and not taken, and how long
    the earliest of those has been due."""

    pending: int  # in the set: due, being delivered, or waiting for a retry
    due: int  # due now and in no worker's hands
    oldest_due_seconds: float  # how long the earliest due one has been due (0: none is)


async def webhook_stats(client: aioredis.Redis) -> WebhookStats:
    """Read in two round trips, by Redis' clock (the one the delivery scripts use)."""
    seconds, micros = await client.time()
    now_ms = seconds * 1000 + micros // 1000
    key = redis_keys.webhooks_due()
    async with client.pipeline(transaction=False) as pipe:
        pipe.zcard(key)
        pipe.zcount(key, "-inf", now_ms)
        pipe.zrange(key, 0, 0, withscores=True)
        pending, due, first = await pipe.execute()
    oldest = (now_ms - first[0][1]) / 1000 if first and first[0][1] <= now_ms else 0.0
    return WebhookStats(pending=int(pending), due=int(due), oldest_due_seconds=max(0.0, oldest))
