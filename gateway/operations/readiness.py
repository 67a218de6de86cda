"""Readiness checks: Redis answers, storage answers, every routed pool has a live worker.

Until the gateway's start-up is done (gateway/edge/startup.py: Redis away, or failing a
start-up check), the ``redis`` check gives what the start-up waits for.

Each check gives ``"ok"`` or what is wrong. ``/readyz?exclude=NAME`` leaves checks out,
as Kubernetes' own ``/readyz`` does: a gateway's readiness probe excludes ``workers``,
since an idle pool scaled to zero (KEDA) would otherwise take every gateway out of the
Service, and then no task could arrive to scale it up again.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Collection
from typing import Any, Protocol

import redis.asyncio as aioredis
from anyio import to_thread

from gateway.operations.pool_stats import live_workers, routed_pools
from taskcore.settings import Settings

CHECKS = ("redis", "storage", "workers")
OK = "ok"
SKIPPED = "skipped"

# Probes come every few seconds, from every kubelet and anyone who can reach the port;
# the bucket is asked at most this often per process, whatever the verdict.
STORAGE_CACHE_SECONDS = 5.0
TIMEOUT_SECONDS = 3.0


class Starting(Protocol):
    """The gateway's start-up (gateway/edge/startup.py): "" once done, else what it waits for."""

    @property
    def problem(self) -> str: ...


class Readiness:
    """Runs the checks for one gateway process (its Redis client, its storage)."""

    def __init__(
        self, settings: Settings, client: aioredis.Redis, startup: Starting | None = None
    ) -> None:
        self.settings = settings
        self.client = client
        self.startup = startup
        self._storage = (0.0, "")  # (checked at, verdict)
        self._lock = asyncio.Lock()
        self._s3: Any = None  # an S3 client, made on first use (boto3 only for s3 storage)

    async def report(self, exclude: Collection[str] = ()) -> tuple[bool, dict[str, object]]:
        """Whether ready, and the JSON body: each check's verdict and live workers per pool."""
        checks = dict.fromkeys(CHECKS, SKIPPED)
        counts: dict[str, int] = {}
        if "redis" not in exclude:
            # Until Redis was usable at start-up, what the start-up waits for.
            waiting = self.startup.problem if self.startup is not None else ""
            checks["redis"] = waiting or await _timed(self._ping())
        if "storage" not in exclude:
            checks["storage"] = await self._storage_verdict()
        if "workers" not in exclude:
            checks["workers"] = await _timed(self._count_workers(counts))
        ready = all(verdict in (OK, SKIPPED) for verdict in checks.values())
        body: dict[str, object] = {
            "status": "ok" if ready else "unavailable",
            "checks": checks,
            "workers": counts,
        }
        return ready, body

    async def _ping(self) -> str:
        await self.client.ping()
        return OK

    async def _count_workers(self, counts: dict[str, int]) -> str:
        """Fill ``counts`` with live workers per pool; ok when every routed pool has one."""
        counts.update(await live_workers(self.client, routed_pools(self.settings)))
        missing = [pool for pool in routed_pools(self.settings) if not counts[pool]]
        return f"no live worker for {', '.join(missing)}" if missing else OK

    async def _storage_verdict(self) -> str:
        async with self._lock:  # one check at a time, whatever the probe rate
            checked_at, verdict = self._storage
            if not verdict or time.monotonic() - checked_at > STORAGE_CACHE_SECONDS:
                verdict = await _timed(to_thread.run_sync(self._check_storage))
                self._storage = (time.monotonic(), verdict)
            return verdict

    def _check_storage(self) -> str:
        if self.settings.storage == "s3":
            return self._check_bucket()
        folder = self.settings.storage_dir
        folder.mkdir(parents=True, exist_ok=True)  # workers make it too; it may not exist yet
        if not os.access(folder, os.R_OK | os.X_OK):
            return f"the storage folder {folder} is not readable"
        return OK

    def _check_bucket(self) -> str:
        from taskcore.s3 import describe, s3_client

        if self._s3 is None:
            self._s3 = s3_client(self.settings)
        try:
            self._s3.head_bucket(Bucket=self.settings.s3_bucket)
        except Exception as exc:  # botocore's errors: name the bucket, as start-up does
            return f"{describe(self.settings)}: {exc}"
        return OK


async def _timed(check: Awaitable[str]) -> str:
    """A check's verdict: its result, or the error it raised or its timeout, in words."""
    try:
        verdict: str = await asyncio.wait_for(check, TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {TIMEOUT_SECONDS:g}s"
    except Exception as exc:  # any failure means "not ready", never a 500
        return f"{type(exc).__name__}: {exc}"
    return verdict


def parse_exclude(values: Collection[str]) -> set[str]:
    """The checks named in ``?exclude=`` (repeated, or comma-separated); unknown ones ignored."""
    names = {name.strip() for value in values for name in value.split(",")}
    return names & set(CHECKS)
