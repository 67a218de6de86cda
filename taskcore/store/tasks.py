"""The gateway's face of the status store: records read, listed and canceled.

Task records are Redis hashes. A record is written by the submit script
(:mod:`gateway.intake.admission`). Every status change is one Lua script
(compare-and-set, see :mod:`taskcore.scripts`), so a cancel racing a worker's claim, or
two workers racing on a redelivered message, resolve to one winner; the change to a
final status releases the task's hold on its tenant's limits in the same script, so no
counter leaks and none is released twice. Workers use the same scripts through
:class:`taskcore.store.worker.WorkerTaskStore` (blocking, one task at a time per process)
and :class:`taskcore.store.async_worker.AsyncWorkerTaskStore` (asyncio, many at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from taskcore import redis_keys, scripts
from taskcore.autopipeline import AutoPipeline
from taskcore.clock import now_ms
from taskcore.contract import GenerationRequest
from taskcore.records import TaskRecord, TaskStatus
from taskcore.store import taskindex

# A task that never ends (a lost message, say) still disappears eventually.
UNFINISHED_TTL_SECONDS = 7 * 86_400


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page of a tenant's tasks, newest first."""

    records: list[TaskRecord]
    total: int


class TaskStore:
    """The gateway's side of the status store."""

    def __init__(self, client: aioredis.Redis, ttl_seconds: int) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._cancel = scripts.bind(client, "cancel")
        self._index = taskindex.TaskIndex(client, UNFINISHED_TTL_SECONDS)
        # Fetches come many at once (clients poll): one pipeline per loop turn carries them.
        self._reads = AutoPipeline(client)

    async def create(self, task_id: str, tenant: str, request: GenerationRequest, pool: str) -> int:
        """Write a PENDING record for ``pool`` and index it, outside any tenant's limits and
        the fair queue, for tools that queue the task's message themselves (tests, benchmarks);
        the gateway submits through :mod:`gateway.intake.admission`. Returns the submit time
        (ms)."""
        submitted = now_ms()
        indexes = [
            redis_keys.tenant_tasks(tenant),
            redis_keys.tenant_model_tasks(tenant, request.model),
        ]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                redis_keys.task(task_id),
                mapping={
                    "tenant": tenant,
                    "status": TaskStatus.PENDING.value,
                    "model": request.model,
                    "pool": pool,
                    "request": request.to_json(),
                    "submit_ms": submitted,
                },
            )
            pipe.expire(redis_keys.task(task_id), UNFINISHED_TTL_SECONDS)
            for index in indexes:
                pipe.zadd(index, {task_id: submitted})
                pipe.zremrangebyscore(index, "-inf", submitted - UNFINISHED_TTL_SECONDS * 1000)
            await pipe.execute()
        return submitted

    async def get(self, task_id: str, tenant: str) -> TaskRecord | None:
        """The record, or None when it does not exist or belongs to another tenant."""
        data: dict[bytes, bytes] = await self._reads.command("HGETALL", redis_keys.task(task_id))
        if not data or data.get(b"tenant", b"") != tenant.encode():
            return None
        return TaskRecord.from_hash(task_id, data)

    async def cancel(self, task_id: str, tenant: str) -> TaskStatus:
        """Cancel a PENDING task; returns the status it had (UNKNOWN if not the tenant's)."""
        previous = await self._cancel(keys=[redis_keys.task(task_id)], args=[tenant, self._ttl])
        return TaskStatus(previous.decode())

    async def list_page(
        self,
        tenant: str,
        *,
        start_ms: int | None,
        end_ms: int | None,
        model: str | None,
        status: TaskStatus | None,
        offset: int,
        limit: int,
    ) -> TaskPage:
        """A tenant's tasks submitted in [start, end], optionally filtered, newest first:
        a range of one index (see :mod:`taskcore.store.taskindex`), not a scan of the tenant's."""
        query = taskindex.Query(
            tenant, start_ms, end_ms, model, status.value if status else None, offset, limit
        )
        rows, total = await self._index.page(query, now_ms())
        return TaskPage([TaskRecord.from_hash(task_id, data) for task_id, data in rows], total)
