"""The reaper: ends or hands over what nothing else would, so no task is lost, no limit stays
held and no pool stalls.

Each worker runs it periodically (see ``workers/upkeep.py``); any number may run at
once, since each step is one Lua script.

- Takeover: a RUNNING task whose worker's lease expired (the worker died, or lost
  Redis for longer than a lease) goes back to the front of its pool's Celery queue
  (the Celery message kept in its record as `envelope`), so a live worker takes it over within
  about ``lease + reap interval`` seconds. A task that already had ``max_attempts``
  claims FAILS instead (:data:`taskcore.store.claims.POISON_CODE`): it keeps killing its
  workers. No takeover happens while Redis itself restarted, or a failover promoted it,
  less than a lease ago: the workers holding leases have not had the time to renew them
  on it yet.
- Requeue: a task fed into a pool's Celery queue over ``requeue_after`` seconds ago
  that no worker has claimed, and whose message is no longer in the queue (a worker
  took it and died before claiming it), is put back into the queue. Should the
  first worker still be alive after all, the second claim is skipped (see the claim).
- Deadline: a task RUNNING since a claim older than ``deadline`` seconds is FAILED with
  ``InternalError.Timeout``, and its slot and unmade images are released. The candidates
  come from each pool's ``claimed`` set (scored by claim time), so a pass looks only at
  tasks claimed before the cutoff, never at the tasks waiting beside them.
- A task in its tenant's unfinished set whose record is gone (it expired) or already
  final: its slot is released. One sweep walks every tenant's set, a bounded step per
  pass (``SWEEP_BUDGET`` tasks and tenants), with its cursor kept in Redis: the passes of
  all workers share it, so a pass costs the same with ten tenants or ten thousand.

Every time these steps judge (a lease, a claim's age, when a task was fed) is Redis'
own (``TIME`` in the scripts), so workers whose clocks disagree agree on them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from taskcore import redis_keys, scripts
from taskcore.store.claims import POISON_CODE, poison_message

# How long Redis remembers when a promoted replica was first seen as the primary (renewed
# at each pass; past it a pass would wait a lease again, which takes nothing away).
PROMOTION_MEMORY_SECONDS = 7 * 86_400

log = logging.getLogger("synthgate.reaper")

LOST_CODE = "InternalError.Timeout"
_BATCH = 1000
SWEEP_BUDGET = 1000  # tasks and tenants one pass's sweep step looks at


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
    """One pass over the given pools' deadlines, leases and queues, and one step of the
    sweep of every tenant's unfinished tasks."""

    def __init__(self, client: redis.Redis, terms: ReaperTerms) -> None:
        self._redis = client
        self._terms = terms
        self._reap_deadlines = scripts.bind(client, "reap_deadlines")
        self._sweep = scripts.bind(client, "sweep_unfinished")
        self._take_over = scripts.bind(client, "take_over")
        self._requeue = scripts.bind(client, "requeue")
        self._reconcile = scripts.bind(client, "upstream_reconcile")

    def run(self, pools: list[str], *, take_over: bool = True) -> Reaped:
        """One pass; ``take_over=False`` (the caller was cut off from Redis less than a lease
        ago) leaves expired leases for a later pass."""
        tasks = sum(self._deadlines(pool) for pool in pools) + self.sweep()
        # DashScope accounts' running slots of records that ended unseen (upstream_accounts).
        tasks += int(self._reconcile(keys=[redis_keys.upstream_running_sets()], args=[]))
        after_ms = int(self._terms.requeue_after_seconds * 1000)
        unstuck = 0
        for pool in pools:
            keys_ = [redis_keys.celery_queue(pool), redis_keys.starting(pool)]
            requeued, dropped = self._requeue(keys=keys_, args=[after_ms])
            unstuck += int(requeued) + int(dropped)
        moved = failed = 0
        if take_over and self._primary_for() >= self._terms.lease_seconds:
            for pool in pools:
                m, f = self._take_over(
                    keys=[redis_keys.leases(pool), redis_keys.celery_queue(pool)],
                    args=[
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

    def sweep(self) -> int:
        """One step of the sweep of the tenants' unfinished sets; the slots released."""
        sweep_keys = [redis_keys.tenants(), redis_keys.reaper_sweep(), redis_keys.reaper_unswept()]
        return int(self._sweep(keys=sweep_keys, args=[SWEEP_BUDGET]))

    def _deadlines(self, pool: str) -> int:
        deadline = self._terms.deadline_seconds
        message = f"The task ran longer than its deadline ({deadline:.0f} s) and was stopped."
        return int(
            self._reap_deadlines(
                keys=[redis_keys.claimed(pool)],
                args=[int(deadline * 1000), self._terms.ttl_seconds, _BATCH, LOST_CODE, message],
            )
        )

    def _primary_for(self) -> float:
        """Seconds since this Redis became the primary: since it (re)started, or, for a
        replica that a failover promoted (its uptime runs on; ``second_repl_offset`` is set
        and its ``master_replid`` new), since the first pass that saw it promoted, as
        recorded in Redis under its ``run_id`` and ``master_replid``: the workers' lease
        renewals failed during the failover, so their leases must have a lease's time to be
        renewed on the new primary before any is taken over."""
        info = self._redis.info("server", "replication")
        uptime = float(info.get("uptime_in_seconds", 0))
        if int(info.get("second_repl_offset", -1)) < 0:  # primary since it started
            return uptime
        key = redis_keys.reaper_promoted(f"{info['run_id']}:{info['master_replid']}")
        seconds, micros = self._redis.time()
        now_ms = seconds * 1000 + micros // 1000
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.expire(key, PROMOTION_MEMORY_SECONDS)
            seen, _ = pipe.execute()
        if seen is None:
            try:
                seen = self._redis.set(key, now_ms, nx=True, get=True, ex=PROMOTION_MEMORY_SECONDS)
            except redis.OutOfMemoryError:  # a full Redis: take nothing over for now
                return 0.0
            log.info(
                "Redis was promoted to primary (a failover): no lease is taken over "
                "for the next %.0f s",
                self._terms.lease_seconds,
            )
        since_ms = int(seen) if seen is not None else now_ms
        return min(uptime, max(0, now_ms - since_ms) / 1000)
