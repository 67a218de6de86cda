"""Fair queueing: per-tenant lists in front of each pool's Celery queue, fed by stride scheduling.

Celery's queues are FIFO: a tenant that submits 1,000 tasks would make everyone
else wait behind them. So a submitted task first waits in its tenant's list for
its pool, and is *fed* into the pool's Celery queue from there:

- Feeding picks the tenant list with the smallest *pass*, moves its oldest task,
  and advances that pass by ``1e6 / weight`` (stride scheduling): backlogged tenants
  share a pool in proportion to their weights. A list that empties keeps its pass;
  when it fills again it starts at ``max(its pass, the pool's virtual time)``, so an
  idle tenant neither saves up credit nor loses its turn.
- Feeding stops while ``depth`` fed tasks are still unclaimed by a worker (the
  ``starting`` set), so the Celery queue stays short and a newcomer's first task is
  at most ``depth`` tasks behind the running ones, however long the others' lists.
- Who feeds: the submit script, the worker's claim script (a worker just took a
  task), and each worker's upkeep tick. All of it is Lua, so any number of gateways
  and workers feed one pool atomically, and a task is always in exactly one place:
  a tenant list, the Celery queue (or a worker's hands, tracked in ``starting``
  until its claim), or running.
- The pool's ``backlog`` list holds one token per task in any tenant list, so
  ``LLEN`` gives the backlog to KEDA (whose Redis scaler reads list lengths only)
  and to spill-over routing.
- Priority (:mod:`gateway.priority`) orders a tenant's own tasks: a tenant has one list
  per level for the pool (``keys.pending_level``; the ``normal`` one's name stands for
  the tenant in ``ready``), and the tenant's turn takes the oldest task of its highest
  non-empty level. Between tenants nothing changes.

The Lua functions below are pasted into the scripts that need them
(``gateway.submit``, ``gateway.store``), after :data:`gateway.keys.LUA`, whose
``k_pending_level`` they use; :class:`PoolFeeder` runs a feed alone.
"""

from __future__ import annotations

import redis

from gateway import keys
from gateway.scriptflags import REFUSED_WHEN_FULL

# Fed-but-unclaimed tasks per pool (SYNTHGATE_FEED_DEPTH): a newcomer waits behind at most
# this many, and a pool's workers find this many ready whenever one of them looks.
DEFAULT_DEPTH = 2

LUA = """
-- A tenant's levels, highest first (gateway.priority.ORDER).
local FQ_LEVELS = {'interactive', 'normal', 'batch'}

-- Integer strides keep passes exact (a float 1/3 would drift and reorder ties).
local function fq_stride(weight)
  return math.floor(1000000 / weight + 0.5)
end

-- Tasks waiting in all of a tenant's levels.
local function fq_waiting(pending)
  local total = 0
  for _, level in ipairs(FQ_LEVELS) do
    total = total + redis.call('LLEN', k_pending_level(pending, level))
  end
  return total
end

-- The tenant's next task: the oldest of its highest non-empty level.
local function fq_pop(pending)
  for _, level in ipairs(FQ_LEVELS) do
    local task = redis.call('RPOP', k_pending_level(pending, level))
    if task then return task end
  end
  return false
end

local function fq_enqueue(pending, backlog, ready, fair, task, stride, level)
  redis.call('LPUSH', k_pending_level(pending, level or 'normal'), task)
  redis.call('LPUSH', backlog, 1)
  redis.call('HSET', fair, 's|' .. pending, stride)
  if not redis.call('ZSCORE', ready, pending) then
    local vtime = tonumber(redis.call('HGET', fair, 'vtime') or 0)
    local last = tonumber(redis.call('HGET', fair, 'p|' .. pending) or 0)
    redis.call('ZADD', ready, math.max(vtime, last), pending)
  end
end

local function fq_retire(ready, fair, pending, pass)
  redis.call('ZREM', ready, pending)
  redis.call('HSET', fair, 'p|' .. pending, pass)
end

-- Take a canceled task out of its tenant list (its record names the level); true when it
-- was there.
local function fq_remove(pending, backlog, ready, fair, task)
  local level = redis.call('HGET', task, 'priority') or 'normal'
  if redis.call('LREM', k_pending_level(pending, level), 1, task) == 0 then return false end
  redis.call('RPOP', backlog)
  if fq_waiting(pending) == 0 then
    fq_retire(ready, fair, pending, redis.call('ZSCORE', ready, pending) or 0)
  end
  return true
end

local function fq_feed(queue, backlog, ready, fair, starting, depth, now)
  local moved = 0
  while redis.call('ZCARD', starting) < depth do
    local head = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
    if #head == 0 then break end
    local pending, pass = head[1], tonumber(head[2])
    local task = fq_pop(pending)
    if task then
      redis.call('RPOP', backlog)
      local row = redis.call('HMGET', task, 'status', 'envelope')
      -- a record that expired while it waited has nothing left to run
      if row[1] == 'PENDING' and row[2] then
        redis.call('LPUSH', queue, row[2])
        redis.call('HSET', task, 'stage', 'sent')
        redis.call('ZADD', starting, now, task)
        moved = moved + 1
      end
      redis.call('HSET', fair, 'vtime', head[2])
      pass = pass + tonumber(redis.call('HGET', fair, 's|' .. pending) or fq_stride(1))
    end
    if fq_waiting(pending) > 0 then
      redis.call('ZADD', ready, pass, pending)
    else
      fq_retire(ready, fair, pending, pass)
    end
  end
  return moved
end
"""

_FEED = (
    keys.LUA
    + LUA
    + """
return fq_feed(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[1]), tonumber(ARGV[2]))
"""
)

# A worker with ``count`` free slots takes up to that many tasks in one step: it feeds the
# pool as deep as it can take (plus the usual look-ahead) and pops them, so an asyncio
# worker whose hundreds of slots free at once refills them in one round trip, not one
# claim-and-feed per task. The choice between tenants is still the feed's.
TAKE = (
    REFUSED_WHEN_FULL
    + keys.LUA
    + LUA
    + """
local count = tonumber(ARGV[1])
fq_feed(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], tonumber(ARGV[2]) + count, tonumber(ARGV[3]))
return redis.call('RPOP', KEYS[1], count) or {}
"""
)


def take_args(count: int, depth: int, now_ms: int) -> list[int]:
    """``TAKE``'s arguments: up to ``count`` messages, feeding ``depth`` beyond them."""
    return [count, depth, now_ms]


def pool_keys(pool: str) -> list[str]:
    """The keys ``fq_feed`` takes, in its order."""
    return [
        keys.celery_queue(pool),
        keys.backlog(pool),
        keys.ready(pool),
        keys.fairness(pool),
        keys.starting(pool),
    ]


class PoolFeeder:
    """Feeds pools' Celery queues from the tenant lists (the workers' periodic tick)."""

    def __init__(self, client: redis.Redis, depth: int) -> None:
        self._redis = client
        self._depth = depth
        self._feed = client.register_script(_FEED)

    def feed(self, pool: str, now_ms: int) -> int:
        """Move tasks into ``pool``'s Celery queue up to the depth; returns how many moved."""
        return int(self._feed(keys=pool_keys(pool), args=[self._depth, now_ms]))

    def backlog(self, pool: str) -> int:
        """Tasks waiting in the tenant lists of ``pool``."""
        return int(self._redis.llen(keys.backlog(pool)))
