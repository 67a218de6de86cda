"""The worker's side of the status store for asyncio workers (the upstream pool).

The same scripts and arguments as :class:`gateway.store.WorkerTaskStore`, on an
asyncio Redis client: a worker holding hundreds of tasks on one event loop claims,
annotates, renews and finishes them without a thread per call.

Calls are pipelined automatically (:class:`gateway.autopipeline.AutoPipeline`): the
scripts that a loop turn's tasks call go to Redis together. An upstream worker's tasks
end and start in bursts of hundreds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from gateway import fairqueue, keys
from gateway.autopipeline import AutoPipeline
from gateway.records import TaskStatus
from gateway.store import (
    _ANNOTATE,
    _CLAIM,
    _FINISH,
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
        self._raise_progress = client.register_script(_RAISE_PROGRESS)
        self._take = client.register_script(fairqueue.TAKE)
        self._batch = AutoPipeline(client)

    async def take(self, pool: str, count: int) -> list[bytes]:
        """Up to ``count`` task messages of ``pool``, fed fairly and popped in one step."""
        args = fairqueue.take_args(count, self._feed_depth, int(time.time() * 1000))
        return list(await self._batch.script(self._take, fairqueue.pool_keys(pool), args))

    async def claim_many(self, task_ids: Sequence[str]) -> list[Claim | Exception | None]:
        """Claim each task (see ``WorkerTaskStore.claim``), all sent at once in one pipeline;
        a failed claim's error in its place."""
        args = claim_args(self.lease, self._feed_depth, self._ttl)
        calls = [self._batch.script(self._claim, [keys.task(t)], args) for t in task_ids]
        self._batch.flush()
        replies = await asyncio.gather(*calls, return_exceptions=True)
        claims: list[Claim | Exception | None] = []
        for task_id, reply in zip(task_ids, replies, strict=True):
            if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                raise reply  # cancelled
            try:
                claims.append(
                    reply if isinstance(reply, Exception) else parse_claim(task_id, reply)
                )
            except Exception as exc:  # a record it cannot read
                claims.append(exc)
        return claims

    async def annotate(self, task_id: str, field: str, value: str) -> bool:
        return bool(await self._batch.script(self._annotate, [keys.task(task_id)], [field, value]))

    async def raise_progress(self, task_id: str, progress: int) -> bool:
        """See :class:`workers.progress.ProgressRecorder`."""
        return bool(
            await self._batch.script(self._raise_progress, [keys.task(task_id)], [progress])
        )

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
        return bool(await self._batch.script(self._finish, [keys.task(task_id)], args))
