"""Submitting a task in one round trip: a Lua script checks the caller and the tenant's limits,
writes the task record and its index, and puts the task in its tenant's fair-queue list.

Because every check and write is one script, limits are exact with any number of
gateway replicas: two replicas can never both take the last slot. The order of the
checks: the key (not revoked), the tenant (enabled), the model (allowed), requests per
minute (a sliding log of the last 60 s of accepted submits, on Redis' clock), unfinished
tasks, images per day (see :mod:`gateway.tenancy.usage`). A rejected submit counts nothing but
its rejection. A submit with an ``Idempotency-Key`` already used by its tenant (see
:mod:`gateway.intake.idempotency`) is answered right after the key and tenant checks, with the
task that key made: no limit is looked at and nothing is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.edge.connections import RETRY_AFTER_SECONDS
from gateway.edge.errors import AccessDenied, InvalidApiKey, ServiceUnavailable, Throttling
from gateway.intake.idempotency import DEFAULT_TTL_SECONDS, conflict
from gateway.tenancy.auth import Caller
from gateway.tenancy.usage import RETENTION_SECONDS, ms_until_next_day, utc_day
from taskcore import fairqueue, redis_keys, scripts
from taskcore.autopipeline import AutoPipeline
from taskcore.clock import now_ms
from taskcore.contract import GenerationRequest
from taskcore.priority import Priority
from taskcore.store.replicas import NO_WAIT, ReplicaWait
from taskcore.store.tasks import UNFINISHED_TTL_SECONDS

# A client refused for too many unfinished tasks may retry soon: tasks end all the time.
CONCURRENCY_RETRY_MS = 1_000


@dataclass(frozen=True, slots=True)
class Quota:
    """Where the caller stands against one limit, as the ``X-RateLimit-*`` headers say it."""

    limit: int
    remaining: int
    reset_ms: int

    def headers(self, *, retry: bool = False) -> dict[str, str]:
        """``X-RateLimit-Reset`` and ``Retry-After`` are seconds from now (rounded up)."""
        reset = str(max(1, math.ceil(self.reset_ms / 1000)))
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": reset,
        }
        if retry:
            headers["Retry-After"] = reset
        return headers


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """What a submit asks for besides the job: its priority among the tenant's tasks, and
    an ``Idempotency-Key`` with the fingerprint of the request it names."""

    priority: Priority = Priority.NORMAL
    idempotency_key: str | None = None
    fingerprint: str = ""


PLAIN = SubmitOptions()


@dataclass(frozen=True, slots=True)
class Accepted:
    """A submit that passed: its time, and the requests-per-minute window after it; or
    the replay of an earlier submit with the same ``Idempotency-Key`` (``replayed``: its
    ``task_id``, no time and no window, since it counted nothing)."""

    submit_ms: int
    rate: Quota | None
    task_id: str = ""
    replayed: bool = False

    def headers(self) -> dict[str, str]:
        return self.rate.headers() if self.rate is not None else {}


class Submitter:
    """Runs the submit script: limits, record, index and fair queue in one round trip."""

    def __init__(
        self,
        client: aioredis.Redis,
        feed_depth: int,
        idempotency_ttl_seconds: int = DEFAULT_TTL_SECONDS,
        replicas: ReplicaWait = NO_WAIT,
    ) -> None:
        self._script = scripts.bind(client, "submit")
        # Submits come many at once: one pipeline per loop turn carries their scripts, and
        # one WAIT after them when replicas must confirm them (taskcore.store.replicas).
        self._calls = AutoPipeline(client, replicas)
        self._replicas = replicas
        self._depth = feed_depth
        self._idempotency_ttl = idempotency_ttl_seconds

    async def submit(
        self,
        caller: Caller,
        task_id: str,
        job: GenerationRequest,
        pool: str,
        message: bytes,
        callback: str = "",
        options: SubmitOptions = PLAIN,
    ) -> Accepted:
        """Record and queue the task, or raise the error of the first limit it hits.
        ``callback``: a checked webhook URL for this task (see taskcore/webhooks/targets.py).
        With an idempotency key already used, the earlier task (``Accepted.replayed``)."""
        submitted = now_ms()
        tenant = caller.tenant
        script_keys = [
            redis_keys.tenant(tenant),
            redis_keys.api_key(caller.key_hash),
            redis_keys.key_info(caller.key_id),
            redis_keys.tenant_rate(tenant),
            redis_keys.tenant_active(tenant),
            redis_keys.tenant_usage(tenant, utc_day(submitted)),
            redis_keys.task(task_id),
            redis_keys.tenant_tasks(tenant),
            redis_keys.pending(pool, tenant),
            *fairqueue.pool_keys(pool),
        ]
        if options.idempotency_key is not None:
            script_keys.append(redis_keys.idempotency(tenant, options.idempotency_key))
        args: list[str | int | bytes] = [
            tenant,
            job.model,
            job.n,
            submitted,
            task_id,
            pool,
            job.to_json(),
            message,
            utc_day(submitted),
            UNFINISHED_TTL_SECONDS,
            RETENTION_SECONDS,
            self._depth,
            ms_until_next_day(submitted),
            callback,
            options.priority.value,
            options.fingerprint,
            self._idempotency_ttl,
        ]
        reply, confirmed = await self._calls.confirmed_script(
            self._script, script_keys, args, "submit"
        )
        verdict = reply[0].decode()
        if verdict in ("replay", "conflict"):
            return _replay(verdict, reply[1].decode(), options)
        quota = Quota(int(reply[1]), int(reply[2]), int(reply[3]))
        if verdict != "ok":
            raise _rejection(verdict, tenant, job, quota)
        if not confirmed and options.idempotency_key is not None:
            raise unconfirmed(self._replicas, task_id)
        return Accepted(submitted, quota if quota.limit else None, task_id)


def unconfirmed(replicas: ReplicaWait, task_id: str) -> ServiceUnavailable:
    """The answer to a submit with an ``Idempotency-Key`` that the primary recorded but too
    few replicas confirmed in time (docs/reliability.md): the task stands and runs unless
    the primary fails right now; a retry with the same key answers with it (a replay),
    or, if the primary failed and the task went with it, records it anew. Either way the
    client ends up with one task. A submit without a key is answered 200: a 503 would
    make its client submit it again, and run it twice, whenever a replica lags."""
    return ServiceUnavailable(
        f"Service temporarily unavailable: task {task_id} was recorded but fewer than "
        f"{replicas.replicas} status-store replica(s) confirmed it within "
        f"{replicas.timeout_ms} ms; retry in {RETRY_AFTER_SECONDS} s with the same "
        "Idempotency-Key to get it.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _replay(verdict: str, earlier: str, options: SubmitOptions) -> Accepted:
    """The task an idempotency key already made, or the conflict of a different request."""
    if verdict == "conflict":
        raise conflict(options.idempotency_key or "", earlier)
    return Accepted(0, None, earlier, replayed=True)


def tenant_disabled(tenant: str) -> AccessDenied:
    """The answer to every call of a disabled tenant."""
    return AccessDenied(f"Tenant '{tenant}' is disabled; ask the service administrators.")


def _rejection(verdict: str, tenant: str, job: GenerationRequest, quota: Quota) -> Exception:
    if verdict == "disabled":
        return tenant_disabled(tenant)
    if verdict == "model":
        return AccessDenied(
            f"Model '{job.model}' is not enabled for tenant '{tenant}'.",
            code="AccessDenied.Unpurchased",
        )
    if verdict == "rate":
        return Throttling(
            f"Requests rate limit exceeded: at most {quota.limit} tasks per minute; "
            f"retry in {math.ceil(quota.reset_ms / 1000)} s.",
            code="Throttling.RateQuota",
            headers=quota.headers(retry=True),
        )
    if verdict == "concurrency":
        waiting = Quota(quota.limit, 0, CONCURRENCY_RETRY_MS)
        return Throttling(
            f"Concurrent task limit exceeded: at most {quota.limit} unfinished tasks at once; "
            "retry when one of them ends.",
            code="Throttling.AllocationQuota",
            headers=waiting.headers(retry=True),
        )
    if verdict == "daily":
        return Throttling(
            f"Daily image quota exceeded: {quota.limit} images per day (UTC), "
            f"{quota.remaining} left today, {job.n} requested.",
            code="Throttling.AllocationQuota",
            headers=quota.headers(retry=True),
        )
    return InvalidApiKey()
