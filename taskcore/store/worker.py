"""The worker's face of the status store, for Celery's prefork children (blocking client)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from taskcore import fairqueue, redis_keys, scripts
from taskcore.contract import GenerationRequest
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
from taskcore.store.replicas import NO_WAIT, ReplicaWait, run_confirmed


@dataclass(frozen=True, slots=True)
class BatchTake:
    """The tasks a batch take handed over (their messages left the queue, unclaimed yet),
    and why it stopped: ``full`` (no room left), ``blocked`` (the next task may not join,
    so nothing behind it may either) or ``empty`` (nothing waits for the pool)."""

    task_ids: list[str]
    stopped: str


class WorkerTaskStore:
    """The worker's side of the status store (blocking client)."""

    def __init__(
        self,
        client: redis.Redis,
        ttl_seconds: int,
        *,
        feed_depth: int = fairqueue.DEFAULT_DEPTH,
        lease: LeaseTerms | None = None,
        replicas: ReplicaWait = NO_WAIT,
    ) -> None:
        self._redis = client
        self._replicas = replicas
        self._ttl = ttl_seconds
        self._feed_depth = feed_depth
        self.lease = lease or LeaseTerms(worker=f"{socket.gethostname()}:{os.getpid()}")
        self._claim = scripts.bind(client, "claim")
        self._finish = scripts.bind(client, "finish")
        self._annotate = scripts.bind(client, "annotate")
        self._mark_stored = scripts.bind(client, "mark_stored")
        self._renew = scripts.bind(client, "renew")
        self._batch_take = scripts.bind(client, "batch_take")

    def claim(self, task_id: str) -> Claim | None:
        """PENDING (or RUNNING with an expired lease) → RUNNING under this worker's lease.
        None when the record is gone."""
        args = claim_args(self.lease, self._feed_depth, self._ttl)
        reply = self._confirmed("claim", self._claim, [redis_keys.task(task_id)], args)
        return parse_claim(task_id, reply)

    def claim_many(self, task_ids: Sequence[str]) -> list[Claim | redis.RedisError | None]:
        """:meth:`claim` each task, in one round trip; a failed claim's error in its place."""
        args = claim_args(self.lease, self._feed_depth, self._ttl)
        calls = [(self._claim, [redis_keys.task(task_id)], args) for task_id in task_ids]
        if self._replicas.active:
            replies = run_confirmed(self._redis, self._replicas, "claim", calls)
        else:
            with self._redis.pipeline(transaction=False) as pipe:
                for script, keys, arguments in calls:
                    script(keys=keys, args=arguments, client=pipe)
                replies = pipe.execute(raise_on_error=False)
        return [
            reply if isinstance(reply, redis.RedisError) else parse_claim(task_id, reply)
            for task_id, reply in zip(task_ids, replies, strict=True)
        ]

    def take_batch(self, pool: str, first: GenerationRequest, room: int) -> BatchTake:
        """Take off ``pool``'s queue the tasks fed next that may share ``first``'s pipeline
        call (same model, size and steps, never claimed before), ``room`` images at most, in
        fed order up to the first that may not (``batch_take.lua``); claim them next."""
        # At most twice ``room`` messages: those of canceled tasks take no room.
        shape = [first.model, first.width, first.height, first.steps]
        reply = self._batch_take(keys=fairqueue.pool_keys(pool), args=[*shape, room, 2 * room])
        return BatchTake([raw.decode() for raw in reply[1:]], reply[0].decode())

    def annotate(self, task_id: str, field: str, value: str) -> bool:
        """Set one field of a RUNNING task this worker holds (e.g. the upstream task id, to
        resume after a crash); False if it holds the task no longer."""
        args = [self.lease.worker, field, value]
        return bool(self._annotate(keys=[redis_keys.task(task_id)], args=args))

    def mark_stored(self, task_id: str, indexes: Sequence[int]) -> bool:
        """Record that these images of a task this worker holds are stored."""
        args: list[str | int] = [self.lease.worker, *indexes]
        keys = [redis_keys.task(task_id)]
        return bool(self._confirmed("mark_stored", self._mark_stored, keys, args))

    def renew(self, task_ids: Sequence[str], *, hand_back: bool = False) -> list[str]:
        """Extend this worker's leases on ``task_ids`` (or, ``hand_back``, end them now, so
        that the reaper hands the tasks to other workers at once); returns the ids it lost
        (another worker holds them, or their records are gone; a task that ended was not lost)."""
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
        return bool(self._confirmed("finish", self._finish, [redis_keys.task(task_id)], args))

    def _confirmed(self, write: str, script: Any, keys: list[str], args: Sequence[Any]) -> Any:
        """``script``'s reply, after the replicas confirmed it (see :mod:`.replicas`); a
        write they did not confirm in time stands (it is on the primary) and is counted."""
        if not self._replicas.active:
            return script(keys=keys, args=args)
        reply = run_confirmed(self._redis, self._replicas, write, [(script, keys, args)])[0]
        if isinstance(reply, Exception):
            raise reply
        return reply
