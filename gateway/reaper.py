"""The reaper: ends what nothing else would, so that no limit stays held and no pool stalls.

Each worker runs it periodically (see ``workers/upkeep.py``); any number may run at
once, since each step is one Lua script.

- A task in its tenant's unfinished set whose record is gone (it expired) or already
  final: its slot is released.
- A task RUNNING since a claim older than ``lost_after`` seconds (twice the broker's
  visibility timeout: a task whose worker died has been redelivered by then, and each
  redelivery claims it again, which restarts the clock) is FAILED with
  ``InternalError.Timeout``, and its slot and unmade images are released.
- A task fed into a pool's Celery queue over ``stale_after`` seconds ago that no worker
  has claimed, and whose message is no longer in the queue (a worker took it and died
  before claiming it; the broker will redeliver it), stops counting against the pool's
  feed depth, so the pool is fed meanwhile. The task itself is not touched. (The claim
  removes a task's message copy from its record; a fed task keeps it until then, even
  when canceled, since its message waits in the queue all the same.)
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from gateway import keys
from gateway.store import RELEASE_LUA

LOST_CODE = "InternalError.Timeout"
LOST_MESSAGE = "The task was lost by its worker and never redelivered."
_BATCH = 1000

_REAP_TASKS = (
    keys.LUA
    + RELEASE_LUA
    + """
-- KEYS: the tenant's unfinished set; ARGV: now, cutoff (ms), record ttl, batch, code, message
local reaped = 0
local now, cutoff = tonumber(ARGV[1]), tonumber(ARGV[2])
for _, task in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, ARGV[4])) do
  local row = redis.call('HMGET', task, 'status', 'claimed_ms')
  if not row[1] or row[1] == 'SUCCEEDED' or row[1] == 'FAILED' or row[1] == 'CANCELED' then
    redis.call('ZREM', KEYS[1], task)
    reaped = reaped + 1
  elseif row[1] == 'RUNNING' and tonumber(row[2] or 0) < cutoff then
    redis.call('HSET', task, 'status', 'FAILED', 'end_ms', now, 'code', ARGV[5],
               'message', ARGV[6])
    redis.call('EXPIRE', task, ARGV[3])
    release(task, 'FAILED', 0)
    reaped = reaped + 1
  end
end
return reaped
"""
)

_UNSTICK = """
-- KEYS: the pool's Celery queue, its starting set; ARGV: cutoff (ms)
local dropped = 0
for _, task in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 100)) do
  local message = redis.call('HGET', task, 'message')
  if not message or not redis.call('LPOS', KEYS[1], message) then
    redis.call('ZREM', KEYS[2], task)
    dropped = dropped + 1
  end
end
return dropped
"""


@dataclass(frozen=True, slots=True)
class Reaped:
    """What one pass did."""

    tasks: int  # slots released (records gone or final) and lost tasks failed
    unstuck: int  # starting entries dropped


class Reaper:
    """One pass over every tenant's unfinished tasks and the given pools' starting sets."""

    def __init__(
        self, client: redis.Redis, ttl_seconds: int, lost_after: float, stale_after: float
    ) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._lost_after_ms = int(lost_after * 1000)
        self._stale_after_ms = int(stale_after * 1000)
        self._reap_tasks = client.register_script(_REAP_TASKS)
        self._unstick = client.register_script(_UNSTICK)

    def run(self, pools: list[str], now_ms: int) -> Reaped:
        tenants = sorted(name.decode() for name in self._redis.smembers(keys.tenants()))  # type: ignore[union-attr]
        cutoff = now_ms - self._lost_after_ms
        tasks = sum(
            int(
                self._reap_tasks(
                    keys=[keys.tenant_active(tenant)],
                    args=[now_ms, cutoff, self._ttl, _BATCH, LOST_CODE, LOST_MESSAGE],
                )
            )
            for tenant in tenants
        )
        stale = now_ms - self._stale_after_ms
        unstuck = sum(
            int(self._unstick(keys=[keys.celery_queue(pool), keys.starting(pool)], args=[stale]))
            for pool in pools
        )
        return Reaped(tasks, unstuck)
