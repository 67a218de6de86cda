"""The worker's side of the status store for asyncio workers (the upstream pool).

The same scripts and arguments as :class:`taskcore.store.worker.WorkerTaskStore`, on an
asyncio Redis client: a worker holding hundreds of tasks on one event loop claims,
annotates, renews and finishes them without a thread per call.

Calls are pipelined automatically (:class:`taskcore.autopipeline.AutoPipeline`): the
scripts that a loop turn's tasks call go to Redis together. An upstream worker's tasks
end and start in bursts of hundreds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import redis.asyncio as aioredis

from taskcore import redis_keys, scripts
from taskcore.autopipeline import AutoPipeline
from taskcore.records import TaskStatus
from taskcore.store.claims import (
    Claim,
    LeaseTerms,
    claim_args,
    finish_args,
    parse_claim,
    parse_lost,
    renew_args,
)
from taskcore.store.replicas import NO_WAIT, ReplicaWait


class AsyncWorkerTaskStore:
    """Claim, annotate, renew and finish tasks from an event loop."""

    def __init__(
        self,
        client: aioredis.Redis,
        ttl_seconds: int,
        feed_depth: int,
        lease: LeaseTerms,
        replicas: ReplicaWait = NO_WAIT,
    ) -> None:
        self._ttl = ttl_seconds
        self._feed_depth = feed_depth
        self.lease = lease
        self._claim = scripts.bind(client, "claim")
        self._finish = scripts.bind(client, "finish")
        self._annotate = scripts.bind(client, "annotate")
        self._renew = scripts.bind(client, "renew")
        self._raise_progress = scripts.bind(client, "progress_raise")
        # Claims and finishes wait for the replicas (taskcore.store.replicas): one WAIT a
        # batch; a write they did not confirm in time stands and is counted.
        self._batch = AutoPipeline(client, replicas)

    async def claim_many(self, task_ids: Sequence[str]) -> list[Claim | Exception | None]:
        """Claim each task (see ``WorkerTaskStore.claim``), all sent at once in one pipeline;
        a failed claim's error in its place."""
        args = claim_args(self.lease, self._feed_depth, self._ttl)
        calls = [
            self._batch.confirmed_script(self._claim, [redis_keys.task(t)], args, "claim")
            for t in task_ids
        ]
        self._batch.flush()
        replies = await asyncio.gather(*calls, return_exceptions=True)
        claims: list[Claim | Exception | None] = []
        for task_id, reply in zip(task_ids, replies, strict=True):
            if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                raise reply  # cancelled
            try:
                claims.append(
                    reply if isinstance(reply, Exception) else parse_claim(task_id, reply[0])
                )
            except Exception as exc:  # a record it cannot read
                claims.append(exc)
        return claims

    async def annotate(self, task_id: str, field: str, value: str) -> bool:
        args = [self.lease.worker, field, value]
        return bool(await self._batch.script(self._annotate, [redis_keys.task(task_id)], args))

    async def raise_progress(self, task_id: str, progress: int) -> bool:
        """See :class:`workers.progress.ProgressRecorder`."""
        args = [self.lease.worker, progress]
        return bool(
            await self._batch.script(self._raise_progress, [redis_keys.task(task_id)], args)
        )

    async def renew(self, task_ids: Sequence[str], *, hand_back: bool = False) -> list[str]:
        if not task_ids:
            return []
        records = [redis_keys.task(t) for t in task_ids]
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
        keys = [redis_keys.task(task_id)]
        done, _ = await self._batch.confirmed_script(self._finish, keys, args, "finish")
        return bool(done)
