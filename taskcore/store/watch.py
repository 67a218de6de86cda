"""Watching a task from the gateway: a cheap look at its record, repeated.

Task event streams and the synchronous OpenAI-compatible call follow a task by
polling: one ``HMGET`` of four small fields per look (every
``SYNTHGATE_EVENTS_POLL_SECONDS``), with the pooled client, so a watcher holds no
Redis connection between looks and needs nothing from the workers. The full record is
read only when what it shows has changed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from taskcore import redis_keys
from taskcore.records import TaskRecord, TaskStatus, parse_count


@dataclass(frozen=True, slots=True)
class Glimpse:
    """What a client sees change: the status and the worker's progress report."""

    status: TaskStatus
    progress: int | None = None
    images_done: int | None = None

    @classmethod
    def of(cls, record: TaskRecord | None) -> Glimpse:
        """What a full record shows (``GONE`` for None)."""
        if record is None:
            return GONE
        return cls(record.status, record.progress, record.images_done)

    @property
    def final(self) -> bool:
        """Nothing more will happen: ended, or gone (``UNKNOWN``)."""
        return self.status.final or self.status is TaskStatus.UNKNOWN


GONE = Glimpse(TaskStatus.UNKNOWN)


class TaskWatcher:
    """Looks at tasks' records, for one tenant at a time."""

    def __init__(self, client: aioredis.Redis, poll_seconds: float) -> None:
        self._redis = client
        self.poll_seconds = poll_seconds

    async def glimpse(self, task_id: str, tenant: str) -> Glimpse:
        """The task's status and progress now; ``UNKNOWN`` if gone or another tenant's."""
        row: list[bytes | None] = await self._redis.hmget(
            redis_keys.task(task_id), ["tenant", "status", "progress", "images_done"]
        )  # type: ignore[assignment]
        owner, status, progress, images_done = row
        if owner is None or owner != tenant.encode() or status is None:
            return GONE
        try:
            state = TaskStatus(status.decode())
        except ValueError:
            return GONE
        return Glimpse(state, parse_count(progress, 100), parse_count(images_done))

    async def until_final(
        self,
        task_id: str,
        tenant: str,
        timeout: float,
        check: Callable[[], Awaitable[None]] | None = None,
    ) -> Glimpse:
        """Look until the task is final or ``timeout`` seconds have passed; the last look.
        ``check`` runs before each look and may raise to end the wait (the caller's key
        was revoked, say)."""
        deadline = time.monotonic() + timeout
        while True:
            if check is not None:
                await check()
            seen = await self.glimpse(task_id, tenant)
            left = deadline - time.monotonic()
            if seen.final or left <= 0:
                return seen
            await asyncio.sleep(min(self.poll_seconds, left))
