"""What a worker learns when it claims a task, and the ARGV of the claim, finish and renew
scripts that both worker faces of the store send (see :mod:`taskcore.scripts.registry`).

A worker holds a lease on each task it runs (``LeaseTerms``): while it runs, a second
delivery of the task's message is skipped; once it expired, whoever claims the task takes
it over. The scripts read every time from Redis' clock (``lib/clock.lua``), never from the
worker's: the arguments carry durations only, so workers whose clocks disagree still agree
on whose lease runs. A task claimed more than ``max_attempts`` times kept killing its workers and
FAILS with :data:`POISON_CODE` instead of running again.
"""

from __future__ import annotations

from dataclasses import dataclass

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.records import TaskStatus, encode_results

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
    """The claim script's ARGV (see ``claim.lua``)."""
    return [
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
    """The finish script's ARGV (see ``finish.lua``)."""
    succeeded = sum(1 for result in results if "key" in result)
    return [
        status.value,
        encode_results(results),
        code,
        message,
        ttl,
        succeeded,
        lease.worker,
    ]


def renew_args(lease: LeaseTerms, hand_back: bool) -> list[str | int]:
    """The renew script's ARGV (see ``renew.lua``); its KEYS are the tasks' records."""
    return [lease.worker, 0 if hand_back else int(lease.lease_seconds * 1000)]


def parse_lost(lost: list[bytes]) -> list[str]:
    prefix = len(redis_keys.task(""))
    return [raw.decode()[prefix:] for raw in lost]


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """Who claims (a worker id unique to the process) and the lease and attempt limits."""

    worker: str
    lease_seconds: float = 20.0
    max_attempts: int = 3
