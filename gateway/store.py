"""The status store: task records in Redis hashes, a per-tenant index, atomic transitions.

A record is written by the submit script (:mod:`gateway.submit`). Every status
change is one Lua script (compare-and-set), so a cancel racing a worker's claim,
or two workers racing on a redelivered message, resolve to one winner; the change
to a final status releases the task's hold on its tenant's limits in the same
script, so no counter leaks and none is released twice. The gateway uses
:class:`TaskStore` (asyncio); workers use :class:`WorkerTaskStore` (blocking, one
task at a time per process).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import redis
import redis.asyncio as aioredis

from gateway import fairqueue, keys
from gateway.jobs import GenerationRequest
from gateway.records import TaskRecord, TaskStatus

# A task that never ends (a lost message, say) still disappears eventually.
UNFINISHED_TTL_SECONDS = 7 * 86_400

# Ends a task's hold on its tenant's limits, once: the unfinished-task slot, and the images
# of the day's quota it reserved but did not make (see gateway.usage).
RELEASE_LUA = """
local function release(task, status, succeeded)
  local row = redis.call('HMGET', task, 'tenant', 'day', 'n')
  if not row[1] or redis.call('ZREM', k_active(row[1]), task) == 0 or not row[2] then return end
  local usage = k_usage(row[1], row[2])
  if redis.call('EXISTS', usage) == 0 then return end
  local n = tonumber(row[3] or 0)
  redis.call('HINCRBY', usage, 'images', succeeded - n)
  redis.call('HINCRBY', usage, 'tasks_' .. string.lower(status), 1)
  if status ~= 'CANCELED' then
    redis.call('HINCRBY', usage, 'images_succeeded', succeeded)
    redis.call('HINCRBY', usage, 'images_failed', n - succeeded)
  end
end
"""

# A worker took the task's message: it is no longer starting, so the pool has room for the
# next one from the fair queue (fed here, in the same step).
_CLAIM = (
    keys.LUA
    + fairqueue.LUA
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local pool = redis.call('HGET', KEYS[1], 'pool')
if pool then
  redis.call('ZREM', k_starting(pool), KEYS[1])
  fq_feed(k_queue(pool), k_backlog(pool), k_ready(pool), k_fair(pool), k_starting(pool),
          tonumber(ARGV[2]), tonumber(ARGV[1]))
end
redis.call('HDEL', KEYS[1], 'message')
if status ~= 'PENDING' and status ~= 'RUNNING' then return {status, 0} end
redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'stage', 'running', 'claimed_ms', ARGV[1])
redis.call('HSETNX', KEYS[1], 'scheduled_ms', ARGV[1])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
local row = redis.call('HMGET', KEYS[1], 'request', 'tenant', 'submit_ms', 'scheduled_ms',
                      'pool', 'upstream_task_id')
return {status, attempts, row[1], row[2], row[3], row[4], row[5] or '', row[6] or ''}
"""
)

_FINISH = (
    keys.LUA
    + RELEASE_LUA
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'RUNNING' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'end_ms', ARGV[2], 'results', ARGV[3],
           'code', ARGV[4], 'message', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
release(KEYS[1], ARGV[1], tonumber(ARGV[7]))
return 1
"""
)

_ANNOTATE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'RUNNING' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# A canceled task still waiting in its tenant's list leaves it. One already fed stays where
# it is, in the Celery queue and the pool's starting set: the worker that takes it skips it,
# and its claim makes room for the next task (feeding here instead would feed tasks that a
# bulk cancel then cancels in the queue, one after the other).
_CANCEL = (
    keys.LUA
    + fairqueue.LUA
    + RELEASE_LUA
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[1] then return 'UNKNOWN' end
if status ~= 'PENDING' then return status end
redis.call('HSET', KEYS[1], 'status', 'CANCELED', 'end_ms', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local row = redis.call('HMGET', KEYS[1], 'pool', 'stage')
if row[1] and row[2] == 'queued' then
  local pool = row[1]
  fq_remove(k_pending(pool, ARGV[1]), k_backlog(pool), k_ready(pool), k_fair(pool), KEYS[1])
  redis.call('HDEL', KEYS[1], 'message')
end
release(KEYS[1], 'CANCELED', 0)
return status
"""
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


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
        self._cancel = client.register_script(_CANCEL)

    async def create(self, task_id: str, tenant: str, request: GenerationRequest, pool: str) -> int:
        """Write a PENDING record for ``pool`` and index it, outside any tenant's limits and
        the fair queue, for tools that queue the task's message themselves (tests, benchmarks);
        the gateway submits through :mod:`gateway.submit`. Returns the submit time (ms)."""
        submitted = now_ms()
        index = keys.tenant_tasks(tenant)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.task(task_id),
                mapping={
                    "tenant": tenant,
                    "status": TaskStatus.PENDING.value,
                    "model": request.model,
                    "pool": pool,
                    "request": request.to_json(),
                    "submit_ms": submitted,
                },
            )
            pipe.expire(keys.task(task_id), UNFINISHED_TTL_SECONDS)
            pipe.zadd(index, {task_id: submitted})
            pipe.zremrangebyscore(index, "-inf", submitted - UNFINISHED_TTL_SECONDS * 1000)
            await pipe.execute()
        return submitted

    async def get(self, task_id: str, tenant: str) -> TaskRecord | None:
        """The record, or None when it does not exist or belongs to another tenant."""
        data: dict[bytes, bytes] = await self._redis.hgetall(keys.task(task_id))  # type: ignore[assignment]
        if not data or data.get(b"tenant", b"") != tenant.encode():
            return None
        return TaskRecord.from_hash(task_id, data)

    async def cancel(self, task_id: str, tenant: str) -> TaskStatus:
        """Cancel a PENDING task; returns the status it had (UNKNOWN if not the tenant's)."""
        previous = await self._cancel(keys=[keys.task(task_id)], args=[tenant, now_ms(), self._ttl])
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
        """A tenant's tasks submitted in [start, end], optionally filtered, newest first."""
        index = keys.tenant_tasks(tenant)
        ids: list[bytes] = await self._redis.zrevrangebyscore(  # type: ignore[assignment]
            index, end_ms if end_ms is not None else "+inf", start_ms or "-inf"
        )
        records, dead = await self._load_many([i.decode() for i in ids])
        if dead:
            await self._redis.zrem(index, *dead)
        matching = [
            r
            for r in records
            if (model is None or r.request.model == model)
            and (status is None or r.status is status)
        ]
        return TaskPage(records=matching[offset : offset + limit], total=len(matching))

    async def _load_many(self, task_ids: Sequence[str]) -> tuple[list[TaskRecord], list[str]]:
        records: list[TaskRecord] = []
        dead: list[str] = []
        for start in range(0, len(task_ids), 500):
            chunk = task_ids[start : start + 500]
            async with self._redis.pipeline(transaction=False) as pipe:
                for task_id in chunk:
                    pipe.hgetall(keys.task(task_id))
                rows = await pipe.execute()
            for task_id, data in zip(chunk, rows, strict=True):
                if data:
                    records.append(TaskRecord.from_hash(task_id, data))
                else:
                    dead.append(task_id)
        return records, dead


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker learns when it claims a task."""

    task_id: str
    previous: TaskStatus
    attempts: int
    request: GenerationRequest | None = None
    tenant: str = ""
    submit_ms: int = 0
    scheduled_ms: int = 0
    pool: str = ""
    upstream_task_id: str = ""

    @property
    def runnable(self) -> bool:
        return self.request is not None


class WorkerTaskStore:
    """The worker's side of the status store (blocking client)."""

    def __init__(
        self, client: redis.Redis, ttl_seconds: int, *, feed_depth: int = fairqueue.DEFAULT_DEPTH
    ) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._feed_depth = feed_depth
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._annotate = client.register_script(_ANNOTATE)

    def claim(self, task_id: str) -> Claim | None:
        """PENDING (or RUNNING, on redelivery) → RUNNING. None when the record is gone."""
        reply = self._claim(keys=[keys.task(task_id)], args=[now_ms(), self._feed_depth])
        if reply is None:
            return None
        previous = TaskStatus(reply[0].decode())
        if len(reply) < 4:
            return Claim(task_id=task_id, previous=previous, attempts=0)
        return Claim(
            task_id=task_id,
            previous=previous,
            attempts=int(reply[1]),
            request=GenerationRequest.from_json(reply[2]),
            tenant=reply[3].decode(),
            submit_ms=int(reply[4]),
            scheduled_ms=int(reply[5]),
            pool=reply[6].decode(),
            upstream_task_id=reply[7].decode(),
        )

    def annotate(self, task_id: str, field: str, value: str) -> bool:
        """Set one field of a RUNNING task (e.g. the upstream task id, to resume after a crash)."""
        return bool(self._annotate(keys=[keys.task(task_id)], args=[field, value]))

    def finish(
        self,
        task_id: str,
        status: TaskStatus,
        results: list[dict[str, str]],
        code: str = "",
        message: str = "",
    ) -> bool:
        """RUNNING → SUCCEEDED/FAILED with results, releasing the task's hold on its tenant's
        limits; False if the task was not RUNNING."""
        succeeded = sum(1 for result in results if "key" in result)
        args = [status.value, now_ms(), orjson.dumps(results), code, message, self._ttl, succeeded]
        done = self._finish(keys=[keys.task(task_id)], args=args)
        return bool(done)
