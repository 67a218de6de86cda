"""Cross-request batches in the GPU consumer: the task Celery delivers takes companions.

A GPU worker that claimed the task Celery delivered (the next one in its pool's fed order)
takes, for the same pipeline call, the tasks fed right after it that may share the call
(same model, size and steps) up to ``SYNTHGATE_MAX_BATCH`` images, waiting at most
``SYNTHGATE_BATCH_WAIT_MS`` for them while nothing waits for the pool
(``WorkerTaskStore.take_batch``, ``batch_take.lua``). Fairness is the feed's: a batch is a
run of consecutive fed tasks, stopped at the first that may not join, so no task starts
ahead of one fed before it.

Companions' messages leave the queue without Celery: a task taken and not yet claimed stays
in the pool's ``starting`` set, which the reaper requeues from, and a claimed one is under
this worker's lease like any other. A task claimed before (its worker died, perhaps in a
batch) never joins one, nor takes companions: it runs alone, so a poison task kills only
its own attempts, never its batch-mates'.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis

from taskcore.store.claims import Claim
from workers.backends.batching import batch_key
from workers.runtime import LocalBackend, WorkerRuntime

log = logging.getLogger("synthgate.worker")

_POLL_SECONDS = 0.005  # how often a worker waiting for companions looks again


@dataclass
class Companions:
    """The tasks claimed to run with a delivered one."""

    batch: list[Claim] = field(default_factory=list)  # they share its pipeline call
    alone: list[Claim] = field(default_factory=list)  # claimed before: each runs on its own
    # canceled, expired or held by another worker: the claim said so (None: no record)
    left_out: list[tuple[str, Claim | None]] = field(default_factory=list)

    @property
    def claimed(self) -> list[Claim]:
        return [*self.batch, *self.alone]


def may_batch(claim: Claim, runtime: WorkerRuntime) -> bool:
    """Whether ``claim`` may take companions: a first attempt of a local pool's task with
    room for more images under ``SYNTHGATE_MAX_BATCH``."""
    return (
        claim.request is not None
        and claim.attempts == 1
        and not claim.stored
        and claim.request.n < runtime.settings.max_batch
        and isinstance(runtime.backends.get(claim.pool), LocalBackend)
    )


def gather(first: Claim, runtime: WorkerRuntime) -> Companions:
    """Take and claim the companions of ``first`` (see the module's docstring); none when it
    may not batch or Redis fails (the reaper requeues what was taken and not claimed)."""
    found = Companions()
    if not may_batch(first, runtime):
        return found
    assert first.request is not None
    room = runtime.settings.max_batch - first.request.n
    deadline = time.monotonic() + runtime.settings.batch_wait_ms / 1000
    store = runtime.store
    try:
        while room > 0:
            taken = store.take_batch(first.pool, first.request, room)
            if taken.task_ids:  # claimed at once: they start now, in the order they were fed
                claims = store.claim_many(taken.task_ids)
                for task_id, claim in zip(taken.task_ids, claims, strict=True):
                    room -= _sort(found, first, task_id, claim)
            left = deadline - time.monotonic()
            if taken.stopped != "empty" or left <= 0:
                break
            time.sleep(min(_POLL_SECONDS, left))
    except (redis.RedisError, OSError) as exc:
        # Redis refused or failed, or the wait could not sleep (seen under libfaketime's
        # shifted clock): the delivered task runs with what was found, never fails for it.
        log.warning("task %s: could not take companions to batch with it: %s", first.task_id, exc)
    return found


def _sort(found: Companions, first: Claim, task_id: str, claim: Claim | Exception | None) -> int:
    """Put a companion's claim where it belongs; the images it takes of the batch's room."""
    if isinstance(claim, Exception):
        log.warning("task %s not claimed (the reaper queues it again): %s", task_id, claim)
    elif claim is None or claim.request is None:
        found.left_out.append((task_id, claim))
    elif claim.attempts == 1 and not claim.stored and _same_call(first, claim):
        found.batch.append(claim)
        return claim.request.n
    else:  # claimed before after all (a race with a takeover): it runs alone
        found.alone.append(claim)
    return 0


def _same_call(first: Claim, other: Claim) -> bool:
    assert first.request is not None and other.request is not None
    return first.pool == other.pool and batch_key(first.request) == batch_key(other.request)
