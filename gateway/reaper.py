"""The reaper: ends or hands over what nothing else would, so no task is lost, no limit stays
held and no pool stalls.

Each worker runs it periodically (see ``workers/upkeep.py``); any number may run at
once, since each step is one Lua script.

- Takeover: a RUNNING task whose worker's lease expired (the worker died, or lost
  Redis for longer than a lease) goes back to the front of its pool's Celery queue
  (the Celery message kept in its record as `envelope`), so a live worker takes it over within
  about ``lease + reap interval`` seconds. A task that already had ``max_attempts``
  claims FAILS instead (:data:`gateway.store.POISON_CODE`): it keeps killing its
  workers. No takeover happens while Redis itself restarted less than a lease ago:
  the workers holding leases have not had the time to renew them yet.
- Requeue: a task fed into a pool's Celery queue over ``requeue_after`` seconds ago
  that no worker has claimed, and whose message is no longer in the queue (a worker
  took it and died before claiming it), is put back into the queue. Should the
  first worker still be alive after all, the second claim is skipped (see the claim).
- Deadline: a task RUNNING since a claim older than ``deadline`` seconds is FAILED with
  ``InternalError.Timeout``, and its slot and unmade images are released.
- A task in its tenant's unfinished set whose record is gone (it expired) or already
  final: its slot is released.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from gateway import keys
from gateway.scriptflags import RUNS_WHEN_FULL
from gateway.store import POISON_CODE, RELEASE_LUA, poison_message

log = logging.getLogger("synthgate.reaper")

LOST_CODE = "InternalError.Timeout"
_BATCH = 1000

# The reaper only ends or moves work that exists: it runs on a full Redis too.
_REAP_TASKS = (
    RUNS_WHEN_FULL
    + keys.LUA
    + RELEASE_LUA
    + """
-- KEYS: the tenant's unfinished set; ARGV: now, cutoff (ms), record ttl, batch, code, message
local reaped = 0
local now, cutoff = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, task in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, ARGV[4])) do
  local row = redis.call('HMGET', task, 'status', 'claimed_ms', 'pool')
  if not row[1] or row[1] == 'SUCCEEDED' or row[1] == 'FAILED' or row[1] == 'CANCELED' then
    redis.call('ZREM', KEYS[1], task)
    reaped = reaped + 1
  elseif row[1] == 'RUNNING' and tonumber(row[2] or 0) < cutoff then
    redis.call('HSET', task, 'status', 'FAILED', 'end_ms', now, 'code', ARGV[5],
               'message', ARGV[6])
    redis.call('HDEL', task, 'envelope', 'worker', 'lease_ms', 'stored')
    redis.call('EXPIRE', task, ARGV[3])
    if row[3] then redis.call('ZREM', k_leases(row[3]), task) end
    release(task, 'FAILED', 0)
    reaped = reaped + 1
  end
end
return reaped
"""
)

_TAKE_OVER = (
    RUNS_WHEN_FULL
    + keys.LUA
    + RELEASE_LUA
    + """
-- KEYS: the pool's leases, its Celery queue
-- ARGV: now, batch, max attempts, record ttl, lease ms, poison code, poison message
local now = tonumber(ARGV[1])
local moved, failed = 0, 0
for _, task in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])) do
  local row = redis.call('HMGET', task, 'status', 'lease_ms', 'attempts', 'envelope')
  if row[1] ~= 'RUNNING' then
    redis.call('ZREM', KEYS[1], task)
  elseif tonumber(row[2] or 0) > now then
    redis.call('ZADD', KEYS[1], row[2], task)
  elseif tonumber(row[3] or 0) >= tonumber(ARGV[3]) or not row[4] then
    redis.call('HSET', task, 'status', 'FAILED', 'end_ms', now, 'code', ARGV[6],
               'message', ARGV[7])
    redis.call('HDEL', task, 'envelope', 'worker', 'lease_ms', 'stored')
    redis.call('EXPIRE', task, ARGV[4])
    redis.call('ZREM', KEYS[1], task)
    release(task, 'FAILED', 0)
    failed = failed + 1
  else
    -- Back to the consuming end of the queue (kombu pushes on the left, pops on the right);
    -- until the next worker claims it, it is nobody's, for one more lease at most.
    local until_ms = now + tonumber(ARGV[5])
    redis.call('RPUSH', KEYS[2], row[4])
    redis.call('HSET', task, 'worker', '', 'lease_ms', until_ms)
    redis.call('ZADD', KEYS[1], until_ms, task)
    moved = moved + 1
  end
end
return {moved, failed}
"""
)

_REQUEUE = (
    RUNS_WHEN_FULL
    + """
-- KEYS: the pool's Celery queue, its starting set; ARGV: cutoff (ms), now
local requeued, dropped = 0, 0
for _, task in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 100)) do
  local row = redis.call('HMGET', task, 'status', 'envelope')
  if row[1] == 'PENDING' and row[2] then
    if not redis.call('LPOS', KEYS[1], row[2]) then
      redis.call('RPUSH', KEYS[1], row[2])
      requeued = requeued + 1
    end
    redis.call('ZADD', KEYS[2], ARGV[2], task)
  else
    redis.call('ZREM', KEYS[2], task)
    dropped = dropped + 1
  end
end
return {requeued, dropped}
"""
)


@dataclass(frozen=True, slots=True)
class Reaped:
    """What one pass did."""

    tasks: int  # slots released (records gone or final) and tasks failed past their deadline
    unstuck: int  # fed tasks put back into their queue, and starting entries dropped
    taken_over: int = 0  # tasks whose lease expired, put back into their queue
    poisoned: int = 0  # tasks failed after max_attempts claims


@dataclass(frozen=True, slots=True)
class ReaperTerms:
    """The reaper's clock: see the module's docstring."""

    ttl_seconds: int
    deadline_seconds: float
    requeue_after_seconds: float
    lease_seconds: float
    max_attempts: int


class Reaper:
    """One pass over every tenant's unfinished tasks and the given pools' leases and queues."""

    def __init__(self, client: redis.Redis, terms: ReaperTerms) -> None:
        self._redis = client
        self._terms = terms
        self._reap_tasks = client.register_script(_REAP_TASKS)
        self._take_over = client.register_script(_TAKE_OVER)
        self._requeue = client.register_script(_REQUEUE)

    def run(self, pools: list[str], now_ms: int, *, take_over: bool = True) -> Reaped:
        """One pass; ``take_over=False`` (the caller was cut off from Redis less than a lease
        ago) leaves expired leases for a later pass."""
        tasks = self._reap_deadlines(now_ms)
        cutoff = now_ms - int(self._terms.requeue_after_seconds * 1000)
        unstuck = 0
        for pool in pools:
            keys_ = [keys.celery_queue(pool), keys.starting(pool)]
            requeued, dropped = self._requeue(keys=keys_, args=[cutoff, now_ms])
            unstuck += int(requeued) + int(dropped)
        moved = failed = 0
        if take_over and self._redis_up_for() >= self._terms.lease_seconds:
            for pool in pools:
                m, f = self._take_over(
                    keys=[keys.leases(pool), keys.celery_queue(pool)],
                    args=[
                        now_ms,
                        _BATCH,
                        self._terms.max_attempts,
                        self._terms.ttl_seconds,
                        int(self._terms.lease_seconds * 1000),
                        POISON_CODE,
                        poison_message(self._terms.max_attempts),
                    ],
                )
                moved, failed = moved + int(m), failed + int(f)
        return Reaped(tasks, unstuck, moved, failed)

    def _reap_deadlines(self, now_ms: int) -> int:
        tenants = sorted(name.decode() for name in self._redis.smembers(keys.tenants()))  # type: ignore[union-attr]
        deadline = self._terms.deadline_seconds
        message = f"The task ran longer than its deadline ({deadline:.0f} s) and was stopped."
        args = [now_ms, now_ms - int(deadline * 1000), self._terms.ttl_seconds, _BATCH]
        return sum(
            int(
                self._reap_tasks(
                    keys=[keys.tenant_active(tenant)], args=[*args, LOST_CODE, message]
                )
            )
            for tenant in tenants
        )

    def _redis_up_for(self) -> float:
        """Seconds since Redis (re)started."""
        info = self._redis.info("server")
        return float(info.get("uptime_in_seconds", 0))
