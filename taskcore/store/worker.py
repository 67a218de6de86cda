"""The worker's face of the status store, for Celery's prefork children (blocking client)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

import redis

from taskcore import fairqueue, redis_keys, scripts
from taskcore.records import TaskStatus
from taskcore.store.claims import (
    Claim,
    LeaseTerms,
    claim_args,
    finish_args,
    parse_claim,
    parse_lost,
    renew_args,
)


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
        self._claim = scripts.bind(client, "claim")
        self._finish = scripts.bind(client, "finish")
        self._annotate = scripts.bind(client, "annotate")
        self._mark_stored = scripts.bind(client, "mark_stored")
        self._renew = scripts.bind(client, "renew")

    def claim(self, task_id: str) -> Claim | None:
        """PENDING (or RUNNING with an expired lease) → RUNNING under this worker's lease.
        None when the record is gone."""
        reply = self._claim(
            keys=[redis_keys.task(task_id)],
            args=claim_args(self.lease, self._feed_depth, self._ttl),
        )
        return parse_claim(task_id, reply)

    def annotate(self, task_id: str, field: str, value: str) -> bool:
        """Set one field of a RUNNING task this worker holds (e.g. the upstream task id, to
        resume after a crash); False if it holds the task no longer."""
        args = [self.lease.worker, field, value]
        return bool(self._annotate(keys=[redis_keys.task(task_id)], args=args))

    def mark_stored(self, task_id: str, indexes: Sequence[int]) -> bool:
        """Record that these images of a task this worker holds are stored."""
        args: list[str | int] = [self.lease.worker, *indexes]
        return bool(self._mark_stored(keys=[redis_keys.task(task_id)], args=args))

    def renew(self, task_ids: Sequence[str], *, hand_back: bool = False) -> list[str]:
        """Extend this worker's leases on ``task_ids`` (or, ``hand_back``, end them now, so
        that the reaper hands the tasks to other workers at once); returns the ids it no
        longer holds."""
        if not task_ids:
            return []
        records = [redis_keys.task(t) for t in task_ids]
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
        done = self._finish(keys=[redis_keys.task(task_id)], args=args)
        return bool(done)
