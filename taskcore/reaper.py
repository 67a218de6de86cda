"""The reaper: ends or hands over what nothing else would, so no task is lost, no limit stays
held and no pool stalls.

Each worker runs it periodically (see ``workers/upkeep.py``); any number may run at
once, since each step is one Lua script.

- Takeover: a RUNNING task whose worker's lease expired (the worker died, or lost
  Redis for longer than a lease) goes back to the front of its pool's Celery queue
  (the Celery message kept in its record as `envelope`), so a live worker takes it over within
  about ``lease + reap interval`` seconds. A task that already had ``max_attempts``
  claims FAILS instead (:data:`taskcore.store.claims.POISON_CODE`): it keeps killing its
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

from taskcore import redis_keys, scripts
from taskcore.store.claims import POISON_CODE, poison_message

log = logging.getLogger("synthgate.reaper")

LOST_CODE = "InternalError.Timeout"
_BATCH = 1000


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
        self._reap_tasks = scripts.bind(client, "reap_tasks")
        self._take_over = scripts.bind(client, "take_over")
        self._requeue = scripts.bind(client, "requeue")
        self._reconcile = scripts.bind(client, "upstream_reconcile")

    def run(self, pools: list[str], now_ms: int, *, take_over: bool = True) -> Reaped:
        """One pass; ``take_over=False`` (the caller was cut off from Redis less than a lease
        ago) leaves expired leases for a later pass."""
        tasks = self._reap_deadlines(now_ms)
        # DashScope accounts' running slots of records that ended unseen (upstream_accounts).
        tasks += int(self._reconcile(keys=[redis_keys.upstream_running_sets()], args=[]))
        cutoff = now_ms - int(self._terms.requeue_after_seconds * 1000)
        unstuck = 0
        for pool in pools:
            keys_ = [redis_keys.celery_queue(pool), redis_keys.starting(pool)]
            requeued, dropped = self._requeue(keys=keys_, args=[cutoff, now_ms])
            unstuck += int(requeued) + int(dropped)
        moved = failed = 0
        if take_over and self._redis_up_for() >= self._terms.lease_seconds:
            for pool in pools:
                m, f = self._take_over(
                    keys=[redis_keys.leases(pool), redis_keys.celery_queue(pool)],
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
        tenants = sorted(name.decode() for name in self._redis.smembers(redis_keys.tenants()))  # type: ignore[union-attr]
        deadline = self._terms.deadline_seconds
        message = f"The task ran longer than its deadline ({deadline:.0f} s) and was stopped."
        args = [now_ms, now_ms - int(deadline * 1000), self._terms.ttl_seconds, _BATCH]
        return sum(
            int(
                self._reap_tasks(
                    keys=[redis_keys.tenant_active(tenant)], args=[*args, LOST_CODE, message]
                )
            )
            for tenant in tenants
        )

    def _redis_up_for(self) -> float:
        """Seconds since Redis (re)started."""
        info = self._redis.info("server")
        return float(info.get("uptime_in_seconds", 0))
