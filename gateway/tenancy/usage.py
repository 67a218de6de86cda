"""Per-tenant, per-day counters (UTC days), and what "images per day" counts.

The daily image quota counts what DashScope bills, successful images, plus the
images of tasks not finished yet: a submit reserves its ``n`` images, and when the
task ends the images it did not make (failed, or the whole task canceled or
failed) are given back. So concurrent submits can never overshoot the quota, and
a tenant is never charged for images it did not get. A reservation belongs to the
day of the submit, even if the task ends the next day.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import date, timedelta

import redis.asyncio as aioredis

from taskcore import redis_keys

# How long a day's counters are kept (the usage API can look back this far).
RETENTION_DAYS = 90
RETENTION_SECONDS = RETENTION_DAYS * 86_400

# The counters of one day, as the Lua scripts name them.
FIELDS = (
    "tasks",  # accepted submits
    "images",  # images counted against the daily quota: succeeded + reserved by unfinished tasks
    "images_succeeded",
    "images_failed",
    "tasks_succeeded",
    "tasks_failed",
    "tasks_canceled",
    "rejected_rate",
    "rejected_concurrency",
    "rejected_daily",
    "rejected_model",
)


def utc_day(ms: int) -> str:
    """The UTC day of a time in ms, as ``YYYYMMDD`` (the usage key's suffix)."""
    return _day(ms // 86_400_000)


@functools.lru_cache(maxsize=8)  # process-level: two lookups a submit, one new day a day
def _day(days: int) -> str:
    return time.strftime("%Y%m%d", time.gmtime(days * 86_400))


def ms_until_next_day(ms: int) -> int:
    """Milliseconds from ``ms`` to the next UTC midnight, when daily quotas start again."""
    return 86_400_000 - ms % 86_400_000


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One tenant's counters for one UTC day."""

    day: date
    counters: dict[str, int]

    def to_json(self) -> dict[str, object]:
        return {"date": self.day.isoformat(), **self.counters}


async def read_usage(
    client: aioredis.Redis, tenant: str, first: date, last: date
) -> list[DayUsage]:
    """The tenant's counters for each day from ``first`` to ``last`` (zeros where none)."""
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    async with client.pipeline(transaction=False) as pipe:
        for day in days:
            pipe.hgetall(redis_keys.tenant_usage(tenant, day.strftime("%Y%m%d")))
        rows: list[dict[bytes, bytes]] = await pipe.execute()
    return [
        DayUsage(day, {name: int(row.get(name.encode(), 0)) for name in FIELDS})
        for day, row in zip(days, rows, strict=True)
    ]
