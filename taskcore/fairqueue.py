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
- Priority (:mod:`taskcore.priority`) orders a tenant's own tasks: a tenant has one list
  per level for the pool (``redis_keys.pending_level``; the ``normal`` one's name stands for
  the tenant in ``ready``), and the tenant's turn takes the oldest task of its highest
  non-empty level. Between tenants nothing changes.

The Lua functions (``lib/fairqueue.lua`` in :mod:`taskcore.scripts`) are pasted into the
scripts that need them (submit, claim, cancel, take); :class:`PoolFeeder` runs a feed
alone (``feed.lua``).
"""

from __future__ import annotations

import redis

from taskcore import redis_keys, scripts

# Fed-but-unclaimed tasks per pool (SYNTHGATE_FEED_DEPTH): a newcomer waits behind at most
# this many, and a pool's workers find this many ready whenever one of them looks.
DEFAULT_DEPTH = 2


def pool_keys(pool: str) -> list[str]:
    """The keys ``fq_feed`` takes, in its order."""
    return [
        redis_keys.celery_queue(pool),
        redis_keys.backlog(pool),
        redis_keys.ready(pool),
        redis_keys.fairness(pool),
        redis_keys.starting(pool),
    ]


class PoolFeeder:
    """Feeds pools' Celery queues from the tenant lists (the workers' periodic tick)."""

    def __init__(self, client: redis.Redis, depth: int) -> None:
        self._redis = client
        self._depth = depth
        self._feed = scripts.bind(client, "feed")

    def feed(self, pool: str) -> int:
        """Move tasks into ``pool``'s Celery queue up to the depth; returns how many moved."""
        return int(self._feed(keys=pool_keys(pool), args=[self._depth]))

    def backlog(self, pool: str) -> int:
        """Tasks waiting in the tenant lists of ``pool``."""
        return int(self._redis.llen(redis_keys.backlog(pool)))
