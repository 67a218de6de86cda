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

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from gateway import fairqueue, keys, taskindex
from gateway.autopipeline import AutoPipeline
from gateway.jobs import GenerationRequest
from gateway.records import TaskRecord, TaskStatus, encode_results
from gateway.scriptflags import REFUSED_WHEN_FULL, RUNS_WHEN_FULL
from gateway.webhooks import ENQUEUE_LUA

# A task that never ends (a lost message, say) still disappears eventually.
UNFINISHED_TTL_SECONDS = 7 * 86_400

# A finished record keeps what its readers use for its last day (the fetch, the list, the
# webhook, the events): the fields only an unfinished task needs go, and so do the empty
# code and message of a success (see bench/README.md, "Record size"). ``release`` has read
# ``day`` and ``n`` before it calls this.
SLIM_LUA = """
local function slim_final(task)
  redis.call('HDEL', task, 'stage', 'claimed_ms', 'attempts', 'day', 'n', 'priority')
  local row = redis.call('HMGET', task, 'code', 'message')
  if row[1] == '' then redis.call('HDEL', task, 'code') end
  if row[2] == '' then redis.call('HDEL', task, 'message') end
end
"""

# Ends a task's hold on its tenant's limits, once: the unfinished-task slot, and the images
# of the day's quota it reserved but did not make (see gateway.usage). Every final status
# comes with it, so it also queues the task's webhook, if any (see gateway.webhooks).
RELEASE_LUA = (
    ENQUEUE_LUA
    + taskindex.LUA
    + SLIM_LUA
    + """
local function release(task, status, succeeded)
  local row = redis.call('HMGET', task, 'tenant', 'day', 'n')
  if row[1] then
    ix_final(task, row[1], status)  -- listed under its final status
    slim_final(task)
  end
  if not row[1] or redis.call('ZREM', k_active(row[1]), task) == 0 then return end
  webhook_enqueue(task, row[1])
  if not row[2] then return end
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
)

# A worker took the task's message: it is no longer starting, so the pool has room for the
# next one from the fair queue (fed here, in the same step). The worker then holds a lease on
# the task (see README "Reliability"): while the lease runs, a second delivery of the task's
# message (a copy put back by the reaper or by Celery) is skipped; once it expired, whoever
# claims the task takes it over. Each claim counts an attempt; a task claimed more than
# ``max attempts`` times kept killing its workers and FAILS instead of running again.
_CLAIM = (
    REFUSED_WHEN_FULL
    + keys.LUA
    + fairqueue.LUA
    + RELEASE_LUA
    + """
-- ARGV: 1 now, 2 feed depth, 3 worker, 4 lease ms, 5 max attempts, 6 record ttl,
--       7 poison code, 8 poison message
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local now = tonumber(ARGV[1])
local pool = redis.call('HGET', KEYS[1], 'pool')
if pool then
  redis.call('ZREM', k_starting(pool), KEYS[1])
  fq_feed(k_queue(pool), k_backlog(pool), k_ready(pool), k_fair(pool), k_starting(pool),
          tonumber(ARGV[2]), now)
end
if status ~= 'PENDING' and status ~= 'RUNNING' then
  redis.call('HDEL', KEYS[1], 'envelope')
  return {status, 0}
end
if status == 'RUNNING' then
  local lease = redis.call('HMGET', KEYS[1], 'worker', 'lease_ms')
  if lease[1] and lease[1] ~= '' and lease[1] ~= ARGV[3] and tonumber(lease[2] or 0) > now then
    return {status, -1}
  end
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempts > tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'status', 'FAILED', 'end_ms', now, 'code', ARGV[7],
             'message', ARGV[8])
  redis.call('HDEL', KEYS[1], 'envelope', 'worker', 'lease_ms', 'stored')
  redis.call('EXPIRE', KEYS[1], ARGV[6])
  if pool then redis.call('ZREM', k_leases(pool), KEYS[1]) end
  release(KEYS[1], 'FAILED', 0)
  return {'FAILED', attempts}
end
local until_ms = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'stage', 'running', 'claimed_ms', now,
           'worker', ARGV[3], 'lease_ms', until_ms)
redis.call('HSETNX', KEYS[1], 'scheduled_ms', now)
if pool then redis.call('ZADD', k_leases(pool), until_ms, KEYS[1]) end
local row = redis.call('HMGET', KEYS[1], 'request', 'tenant', 'submit_ms', 'scheduled_ms',
                      'pool', 'upstream_task_id', 'stored')
return {status, attempts, row[1], row[2], row[3], row[4], row[5] or '', row[6] or '',
        row[7] or ''}
"""
)

# Only the lease holder finishes a task: a worker that lost its lease (it was cut off
# from Redis while another took the task over) leaves the record to the new holder.
_FINISH = (
    RUNS_WHEN_FULL
    + keys.LUA
    + RELEASE_LUA
    + """
local row = redis.call('HMGET', KEYS[1], 'status', 'worker', 'pool')
if row[1] ~= 'RUNNING' then return 0 end
if row[2] and row[2] ~= '' and row[2] ~= ARGV[8] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'end_ms', ARGV[2], 'results', ARGV[3],
           'code', ARGV[4], 'message', ARGV[5])
if ARGV[1] == 'SUCCEEDED' then
  redis.call('HSET', KEYS[1], 'progress', 100, 'images_done', ARGV[7])
end
redis.call('HDEL', KEYS[1], 'envelope', 'worker', 'lease_ms', 'stored')
redis.call('EXPIRE', KEYS[1], ARGV[6])
if row[3] then redis.call('ZREM', k_leases(row[3]), KEYS[1]) end
release(KEYS[1], ARGV[1], tonumber(ARGV[7]))
return 1
"""
)

# The images of a task stored so far (indexes), so that a worker taking the task over
# makes and stores only the others.
_MARK_STORED = (
    RUNS_WHEN_FULL
    + """
local row = redis.call('HMGET', KEYS[1], 'status', 'worker', 'stored')
if row[1] ~= 'RUNNING' or row[2] ~= ARGV[1] then return 0 end
local stored = row[3] or ''
for i = 2, #ARGV do
  if not string.find(',' .. stored .. ',', ',' .. ARGV[i] .. ',', 1, true) then
    stored = (stored == '' and ARGV[i]) or (stored .. ',' .. ARGV[i])
  end
end
local _, commas = string.gsub(stored, ',', '')
redis.call('HSET', KEYS[1], 'stored', stored, 'images_done', stored == '' and 0 or commas + 1)
return 1
"""
)

# Extends the worker's leases on the tasks it still holds; returns those it no longer holds.
_RENEW = (
    RUNS_WHEN_FULL
    + keys.LUA
    + """
-- KEYS: task records; ARGV: worker, lease until (ms)
local lost = {}
for _, task in ipairs(KEYS) do
  local row = redis.call('HMGET', task, 'status', 'worker', 'pool')
  if row[1] == 'RUNNING' and row[2] == ARGV[1] then
    redis.call('HSET', task, 'lease_ms', ARGV[2])
    if row[3] then redis.call('ZADD', k_leases(row[3]), ARGV[2], task) end
  else
    lost[#lost + 1] = task
  end
end
return lost
"""
)

_ANNOTATE = (
    RUNS_WHEN_FULL
    + """
if redis.call('HGET', KEYS[1], 'status') ~= 'RUNNING' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)

# A canceled task still waiting in its tenant's list leaves it. One already fed stays where
# it is, in the Celery queue and the pool's starting set: the worker that takes it skips it,
# and its claim makes room for the next task (feeding here instead would feed tasks that a
# bulk cancel then cancels in the queue, one after the other).
_CANCEL = (
    RUNS_WHEN_FULL  # it frees memory (the queued message) and the tenant's slot
    + keys.LUA
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
  redis.call('HDEL', KEYS[1], 'envelope')
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
        self._index = taskindex.TaskIndex(client, UNFINISHED_TTL_SECONDS)
        # Fetches come many at once (clients poll): one pipeline per loop turn carries them.
        self._reads = AutoPipeline(client)

    async def create(self, task_id: str, tenant: str, request: GenerationRequest, pool: str) -> int:
        """Write a PENDING record for ``pool`` and index it, outside any tenant's limits and
        the fair queue, for tools that queue the task's message themselves (tests, benchmarks);
        the gateway submits through :mod:`gateway.submit`. Returns the submit time (ms)."""
        submitted = now_ms()
        indexes = [keys.tenant_tasks(tenant), keys.tenant_model_tasks(tenant, request.model)]
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
            for index in indexes:
                pipe.zadd(index, {task_id: submitted})
                pipe.zremrangebyscore(index, "-inf", submitted - UNFINISHED_TTL_SECONDS * 1000)
            await pipe.execute()
        return submitted

    async def get(self, task_id: str, tenant: str) -> TaskRecord | None:
        """The record, or None when it does not exist or belongs to another tenant."""
        data: dict[bytes, bytes] = await self._reads.command("HGETALL", keys.task(task_id))
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
        """A tenant's tasks submitted in [start, end], optionally filtered, newest first:
        a range of one index (see :mod:`gateway.taskindex`), not a scan of the tenant's."""
        query = taskindex.Query(
            tenant, start_ms, end_ms, model, status.value if status else None, offset, limit
        )
        rows, total = await self._index.page(query, now_ms())
        return TaskPage([TaskRecord.from_hash(task_id, data) for task_id, data in rows], total)


POISON_CODE = "InternalError.WorkerLost"


def poison_message(attempts: int) -> str:
    return (
        f"The task stopped its worker {attempts} times (a crash or running out of memory "
        "in the pipeline); it is not run again."
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """What a worker learns when it claims a task.

    ``attempts`` is -1 when another worker holds a live lease on the task (a second
    delivery of its message), 0 when the task is final or was failed by this claim.
    """

    task_id: str
    previous: TaskStatus
    attempts: int
    request: GenerationRequest | None = None
    tenant: str = ""
    submit_ms: int = 0
    scheduled_ms: int = 0
    pool: str = ""
    upstream_task_id: str = ""
    stored: frozenset[int] = frozenset()  # images a previous attempt stored

    @property
    def runnable(self) -> bool:
        return self.request is not None


def claim_args(lease: LeaseTerms, feed_depth: int, ttl: int) -> list[str | int]:
    """The claim script's ARGV (see ``_CLAIM``)."""
    return [
        now_ms(),
        feed_depth,
        lease.worker,
        int(lease.lease_seconds * 1000),
        lease.max_attempts,
        ttl,
        POISON_CODE,
        poison_message(lease.max_attempts),
    ]


def parse_claim(task_id: str, reply: list[bytes] | None) -> Claim | None:
    if reply is None:
        return None
    previous = TaskStatus(reply[0].decode())
    if len(reply) < 4:
        return Claim(task_id=task_id, previous=previous, attempts=int(reply[1]))
    stored = reply[8].decode()
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
        stored=frozenset(int(i) for i in stored.split(",")) if stored else frozenset(),
    )


def finish_args(
    lease: LeaseTerms,
    ttl: int,
    status: TaskStatus,
    results: list[dict[str, str]],
    code: str,
    message: str,
) -> list[str | int | bytes]:
    """The finish script's ARGV (see ``_FINISH``)."""
    succeeded = sum(1 for result in results if "key" in result)
    return [
        status.value,
        now_ms(),
        encode_results(results),
        code,
        message,
        ttl,
        succeeded,
        lease.worker,
    ]


def renew_args(lease: LeaseTerms, hand_back: bool) -> list[str | int]:
    """The renew script's ARGV (see ``_RENEW``); its KEYS are the tasks' records."""
    return [lease.worker, now_ms() + (0 if hand_back else int(lease.lease_seconds * 1000))]


def parse_lost(lost: list[bytes]) -> list[str]:
    prefix = len(keys.task(""))
    return [raw.decode()[prefix:] for raw in lost]


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """Who claims (a worker id unique to the process) and the lease and attempt limits."""

    worker: str
    lease_seconds: float = 20.0
    max_attempts: int = 3


class WorkerTaskStore:
    """The worker's side of the status store (blocking client)."""

    def __init__(
        self,
        client: redis.Redis,
        ttl_seconds: int,
        *,
        feed_depth: int = fairqueue.DEFAULT_DEPTH,
        lease: LeaseTerms | None = None,
    ) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._feed_depth = feed_depth
        self.lease = lease or LeaseTerms(worker=f"{socket.gethostname()}:{os.getpid()}")
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._annotate = client.register_script(_ANNOTATE)
        self._mark_stored = client.register_script(_MARK_STORED)
        self._renew = client.register_script(_RENEW)

    def claim(self, task_id: str) -> Claim | None:
        """PENDING (or RUNNING with an expired lease) → RUNNING under this worker's lease.
        None when the record is gone."""
        reply = self._claim(
            keys=[keys.task(task_id)], args=claim_args(self.lease, self._feed_depth, self._ttl)
        )
        return parse_claim(task_id, reply)

    def annotate(self, task_id: str, field: str, value: str) -> bool:
        """Set one field of a RUNNING task (e.g. the upstream task id, to resume after a crash)."""
        return bool(self._annotate(keys=[keys.task(task_id)], args=[field, value]))

    def mark_stored(self, task_id: str, indexes: Sequence[int]) -> bool:
        """Record that these images of a task this worker holds are stored."""
        args: list[str | int] = [self.lease.worker, *indexes]
        return bool(self._mark_stored(keys=[keys.task(task_id)], args=args))

    def renew(self, task_ids: Sequence[str], *, hand_back: bool = False) -> list[str]:
        """Extend this worker's leases on ``task_ids`` (or, ``hand_back``, end them now, so
        that the reaper hands the tasks to other workers at once); returns the ids it no
        longer holds."""
        if not task_ids:
            return []
        records = [keys.task(t) for t in task_ids]
        lost = self._renew(keys=records, args=renew_args(self.lease, hand_back))
        return parse_lost(lost)

    def finish(
        self,
        task_id: str,
        status: TaskStatus,
        results: list[dict[str, str]],
        code: str = "",
        message: str = "",
    ) -> bool:
        """RUNNING → SUCCEEDED/FAILED with results, releasing the task's hold on its tenant's
        limits; False if the task was not RUNNING or another worker holds it now."""
        args = finish_args(self.lease, self._ttl, status, results, code, message)
        done = self._finish(keys=[keys.task(task_id)], args=args)
        return bool(done)
