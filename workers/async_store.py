"""The worker's side of the status store for asyncio workers (the upstream pool).

The same scripts and arguments as :class:`gateway.store.WorkerTaskStore`, on an
asyncio Redis client: a worker holding hundreds of tasks on one event loop claims,
annotates, renews and finishes them without a thread per call.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from gateway import keys
from gateway.records import TaskStatus
from gateway.store import (
    _ANNOTATE,
    _CLAIM,
    _FINISH,
    _MARK_STORED,
    _RENEW,
    Claim,
    LeaseTerms,
    claim_args,
    finish_args,
    parse_claim,
    parse_lost,
    renew_args,
)
from workers.progress import _RAISE as _RAISE_PROGRESS


class AsyncWorkerTaskStore:
    """Claim, annotate, renew and finish tasks from an event loop."""

    def __init__(
        self, client: aioredis.Redis, ttl_seconds: int, feed_depth: int, lease: LeaseTerms
    ) -> None:
        self._ttl = ttl_seconds
        self._feed_depth = feed_depth
        self.lease = lease
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._annotate = client.register_script(_ANNOTATE)
        self._renew = client.register_script(_RENEW)
        self._mark_stored = client.register_script(_MARK_STORED)
        self._raise_progress = client.register_script(_RAISE_PROGRESS)

    async def claim(self, task_id: str) -> Claim | None:
        args = claim_args(self.lease, self._feed_depth, self._ttl)
        return parse_claim(task_id, await self._claim(keys=[keys.task(task_id)], args=args))

    async def annotate(self, task_id: str, field: str, value: str) -> bool:
        return bool(await self._annotate(keys=[keys.task(task_id)], args=[field, value]))

    async def mark_stored(self, task_id: str, indexes: Sequence[int]) -> bool:
        args: list[str | int] = [self.lease.worker, *indexes]
        return bool(await self._mark_stored(keys=[keys.task(task_id)], args=args))

    async def raise_progress(self, task_id: str, progress: int) -> bool:
        """See :class:`workers.progress.ProgressRecorder`."""
        return bool(await self._raise_progress(keys=[keys.task(task_id)], args=[progress]))

    async def renew(self, task_ids: Sequence[str], *, hand_back: bool = False) -> list[str]:
        if not task_ids:
            return []
        records = [keys.task(t) for t in task_ids]
        return parse_lost(await self._renew(keys=records, args=renew_args(self.lease, hand_back)))

    async def finish(
        self,
        task_id: str,
        status: TaskStatus,
        results: list[dict[str, str]],
        code: str = "",
        message: str = "",
    ) -> bool:
        args = finish_args(self.lease, self._ttl, status, results, code, message)
        return bool(await self._finish(keys=[keys.task(task_id)], args=args))
