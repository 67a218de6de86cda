"""Submitting a task in one round trip: a Lua script checks the caller and the tenant's limits,
writes the task record and its index, and puts the task in its tenant's fair-queue list.

Because every check and write is one script, limits are exact with any number of
gateway replicas: two replicas can never both take the last slot. The order of the
checks: the key (not revoked), the tenant (enabled), the model (allowed), requests per
minute (a sliding log of the last 60 s of accepted submits, on Redis' clock), unfinished
tasks, images per day (see :mod:`gateway.usage`). A rejected submit counts nothing but
its rejection. A submit with an ``Idempotency-Key`` already used by its tenant (see
:mod:`gateway.idempotency`) is answered right after the key and tenant checks, with the
task that key made: no limit is looked at and nothing is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway import fairqueue, keys, taskindex
from gateway.autopipeline import AutoPipeline
from gateway.errors import AccessDenied, InvalidApiKey, Throttling
from gateway.idempotency import DEFAULT_TTL_SECONDS, conflict
from gateway.jobs import GenerationRequest
from gateway.priority import Priority
from gateway.scriptflags import REFUSED_WHEN_FULL
from gateway.store import UNFINISHED_TTL_SECONDS, now_ms
from gateway.tenants import Caller
from gateway.usage import RETENTION_SECONDS, ms_until_next_day, utc_day

# A client refused for too many unfinished tasks may retry soon: tasks end all the time.
CONCURRENCY_RETRY_MS = 1_000

_SUBMIT = (
    REFUSED_WHEN_FULL  # a full Redis answers OOM (503) before the script writes anything
    + keys.LUA
    + fairqueue.LUA
    + taskindex.LUA
    + """
-- KEYS: 1 tenant, 2 api key entry, 3 key info, 4 rate log, 5 active tasks, 6 usage of the day,
--       7 task record, 8 tenant's task index, 9 tenant's pending list, 10-14 the pool's keys,
--       15 the idempotency entry (only with an Idempotency-Key)
-- ARGV: 1 tenant, 2 model, 3 n, 4 submit ms, 5 task id, 6 pool, 7 request, 8 message, 9 day,
--       10 record ttl, 11 usage ttl, 12 feed depth, 13 ms to the end of the day,
--       14 callback URL ('' for none), 15 priority, 16 request fingerprint,
--       17 idempotency entry ttl
local function reject(reason, limit, remaining, reset)
  if reason ~= 'key' and reason ~= 'disabled' then
    redis.call('HINCRBY', KEYS[6], 'rejected_' .. reason, 1)
    redis.call('EXPIRE', KEYS[6], ARGV[11])
  end
  return {reason, limit or 0, remaining or 0, reset or 0}
end

local t = redis.call('HMGET', KEYS[1], 'enabled', 'rpm', 'max_concurrent', 'daily_images',
                     'models', 'weight')
if not t[1] or redis.call('HGET', KEYS[2], 'tenant') ~= ARGV[1] then return reject('key') end
if t[1] ~= '1' then return reject('disabled') end
if KEYS[15] then
  local seen = redis.call('HMGET', KEYS[15], 'task_id', 'fingerprint')
  -- an entry whose task record is gone names nothing: the key is free again
  if seen[1] and redis.call('EXISTS', k_task(seen[1])) == 1 then
    if seen[2] ~= ARGV[16] then return {'conflict', seen[1]} end
    return {'replay', seen[1]}
  end
end
if t[5] and t[5] ~= '' and not string.find(',' .. t[5] .. ',', ',' .. ARGV[2] .. ',', 1, true) then
  return reject('model')
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local rpm, n = tonumber(t[2] or 0), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - 60000)
local recent = redis.call('ZCARD', KEYS[4])
local reset = 60000
if recent > 0 then
  reset = tonumber(redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')[2]) + 60000 - now
end
if rpm > 0 and recent >= rpm then return reject('rate', rpm, 0, reset) end
local most = tonumber(t[3] or 0)
if most > 0 and redis.call('ZCARD', KEYS[5]) >= most then
  return reject('concurrency', most, 0, 0)
end
local daily, used = tonumber(t[4] or 0), tonumber(redis.call('HGET', KEYS[6], 'images') or 0)
if daily > 0 and used + n > daily then
  return reject('daily', daily, math.max(daily - used, 0), tonumber(ARGV[13]))
end

redis.call('ZADD', KEYS[4], now, ARGV[5])
redis.call('PEXPIRE', KEYS[4], 60000)
redis.call('ZADD', KEYS[5], ARGV[4], KEYS[7])
redis.call('HINCRBY', KEYS[6], 'tasks', 1)
redis.call('HINCRBY', KEYS[6], 'images', n)
redis.call('EXPIRE', KEYS[6], ARGV[11])
redis.call('HSET', KEYS[7], 'tenant', ARGV[1], 'status', 'PENDING', 'model', ARGV[2],
           'pool', ARGV[6], 'request', ARGV[7], 'submit_ms', ARGV[4], 'n', ARGV[3],
           'day', ARGV[9], 'envelope', ARGV[8], 'stage', 'queued')
if ARGV[14] ~= '' then redis.call('HSET', KEYS[7], 'callback', ARGV[14]) end
redis.call('HSET', KEYS[7], 'priority', ARGV[15])
redis.call('EXPIRE', KEYS[7], ARGV[10])
if KEYS[15] then
  redis.call('HSET', KEYS[15], 'task_id', ARGV[5], 'fingerprint', ARGV[16])
  redis.call('EXPIRE', KEYS[15], ARGV[17])
end
-- listed (KEYS[8] is k_tasks(tenant)), and a few expired finished tasks unlisted
ix_submitted(ARGV[1], ARGV[2], ARGV[5], tonumber(ARGV[4]), tonumber(ARGV[10]) * 1000)
ix_prune(ARGV[1], tonumber(ARGV[4]), 4)
redis.call('HSET', KEYS[3], 'last_used_ms', ARGV[4])
local stride = fq_stride(tonumber(t[6] or 1))
fq_enqueue(KEYS[9], KEYS[11], KEYS[12], KEYS[13], KEYS[7], stride, ARGV[15])
fq_feed(KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14], tonumber(ARGV[12]), tonumber(ARGV[4]))
return {'ok', rpm, math.max(rpm - recent - 1, 0), reset}
"""
)


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
    ) -> None:
        self._script = client.register_script(_SUBMIT)
        # Submits come many at once: one pipeline per loop turn carries their scripts.
        self._calls = AutoPipeline(client)
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
        ``callback``: a checked webhook URL for this task (see gateway/callbacks.py).
        With an idempotency key already used, the earlier task (``Accepted.replayed``)."""
        submitted = now_ms()
        tenant = caller.tenant
        script_keys = [
            keys.tenant(tenant),
            keys.api_key(caller.key_hash),
            keys.key_info(caller.key_id),
            keys.tenant_rate(tenant),
            keys.tenant_active(tenant),
            keys.tenant_usage(tenant, utc_day(submitted)),
            keys.task(task_id),
            keys.tenant_tasks(tenant),
            keys.pending(pool, tenant),
            *fairqueue.pool_keys(pool),
        ]
        if options.idempotency_key is not None:
            script_keys.append(keys.idempotency(tenant, options.idempotency_key))
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
        reply = await self._calls.script(self._script, script_keys, args)
        verdict = reply[0].decode()
        if verdict in ("replay", "conflict"):
            return _replay(verdict, reply[1].decode(), options)
        quota = Quota(int(reply[1]), int(reply[2]), int(reply[3]))
        if verdict != "ok":
            raise _rejection(verdict, tenant, job, quota)
        return Accepted(submitted, quota if quota.limit else None, task_id)


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
