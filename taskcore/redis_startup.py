"""Starting while Redis is away, and what a Redis must offer (docs/reliability.md).

Every process kind (the gateway, GPU and upstream workers) waits for Redis at start-up
through :class:`StartupWait`: it tries ``INFO`` with a growing, capped backoff
(:data:`BACKOFF`), says so in one line naming the setting and the error (again at growing
intervals while it lasts, never once per try), and, once Redis answers, checks it with
:func:`examine`: Redis 7.0 or later (the scripts' ``#!lua flags=`` need it) and
``maxmemory-policy noeviction`` (any eviction loses accepted tasks). A Redis that fails
a check is waited on like one that is away: the process serves nothing, says what is
wrong and how to fix it, and looks again, so fixing it (``CONFIG SET``, an upgrade) needs
no restart. A Redis whose data neither the append-only file nor a connected replica
protects only gets a warning.

The checks read ``INFO`` only (``server``, ``memory``, ``persistence`` and
``replication``), which managed services that refuse ``CONFIG GET`` answer; a field
that is missing leaves its check undone, with a warning.

Once running, the loops of a worker (:class:`RedisAway`) back off the same way while
Redis is unreachable and share one :class:`OutageReport` per process, so an outage is one
line at once, one now and then while it lasts, and one when Redis answers again.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from taskcore.redis_connect import describe_target, sync_client
from taskcore.settings import Settings

log = logging.getLogger("synthgate.redis")

MIN_VERSION = (7, 0)
# Lines about one outage: at once, then after 10 s, 20 s, 40 s ..., at most every 5 min.
FIRST_REPEAT_SECONDS = 10.0
MAX_REPEAT_SECONDS = 300.0
# Redis errors that mean "away for now": refused, reset, timed out, still loading its data.
AWAY_ERRORS: tuple[type[redis.RedisError], ...] = (redis.ConnectionError, redis.TimeoutError)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped, doubling delays with jitter: 0.5 s, 1 s, 2 s ... 10 s, each drawn in
    [80 %, 100 %] of its value so that many processes do not retry in step."""

    first_seconds: float = 0.5
    max_seconds: float = 10.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed tries in a row (from 1)."""
        ceiling = min(self.max_seconds, self.first_seconds * 2.0 ** max(0, failures - 1))
        return ceiling * random.uniform(0.8, 1.0)


BACKOFF = Backoff()


class OutageReport:
    """What a process says about one Redis being away or unusable: a line at once, then
    one at growing intervals while the same trouble lasts, and one when it is over."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._since: float | None = None  # when the trouble began
        self._kind = ""  # what it is: a new kind is said at once
        self._next = 0.0  # when the next line is due
        self._repeat = FIRST_REPEAT_SECONDS

    def trouble(self, kind: str, message: str) -> None:
        """Say ``message`` (``kind`` names the trouble) if a line is due."""
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = now
            elif kind == self._kind and now < self._next:
                return
            elif kind == self._kind:
                message = f"{message} (for {now - self._since:.0f} s now)"
                self._repeat = min(MAX_REPEAT_SECONDS, self._repeat * 2)
            else:
                self._repeat = FIRST_REPEAT_SECONDS
            self._kind = kind
            self._next = now + self._repeat
        log.warning("%s", message)

    def away(self, exc: BaseException, waiting: str) -> None:
        """Redis did not answer; ``waiting`` says what waits for it."""
        self.trouble(
            "away",  # refused, then timing out, is one outage: no new line for each kind
            f"Redis unreachable at {self.target}: {_error_text(exc)}; {waiting}",
        )

    def over(self, say: bool = True) -> float | None:
        """Redis answers: one line (unless not ``say``) if trouble was said; returns how
        long the trouble lasted (None: there was none)."""
        with self._lock:
            since, self._since, self._kind = self._since, None, ""
            self._repeat = FIRST_REPEAT_SECONDS
        if since is None:
            return None
        lasted = time.monotonic() - since
        if say:
            log.warning("Redis at %s answers again (after %.0f s)", self.target, lasted)
        return lasted

    @property
    def in_trouble(self) -> bool:
        return self._since is not None


# Process-level: one report for all the loops of a process (a process uses one Redis),
# made on first use; a forked child (a Celery pool process) starts a fresh one.
_PROCESS_REPORT: list[OutageReport] = []


def _fresh_report_after_fork() -> None:
    if _PROCESS_REPORT:
        _PROCESS_REPORT[0] = OutageReport(_PROCESS_REPORT[0].target)


os.register_at_fork(after_in_child=_fresh_report_after_fork)


def outage_report(settings: Settings | None = None) -> OutageReport:
    """This process's report; ``settings`` names the Redis in its lines (a report first
    made without them says "the status store" until then)."""
    if not _PROCESS_REPORT:
        _PROCESS_REPORT.append(OutageReport("the status store"))
    if settings is not None:
        _PROCESS_REPORT[0].target = describe_target(settings)
    return _PROCESS_REPORT[0]


class RedisAway:
    """One loop's retries while Redis is unreachable: it backs off, and says so through
    the process's :class:`OutageReport` instead of a line per try."""

    def __init__(self, settings: Settings | None, waiting: str) -> None:
        self._report = outage_report(settings)
        self._waiting = waiting
        self._failures = 0

    def failed(self, exc: redis.RedisError) -> bool:
        """Count ``exc``; True when it means Redis is away (it was reported, if due), False
        for any other Redis error, which the caller reports itself."""
        if not isinstance(exc, AWAY_ERRORS):
            return False
        self._failures += 1
        self._report.away(exc, f"{self._waiting}, retrying")
        return True

    def answered(self) -> None:
        """A call went through: no more backoff."""
        if self._failures or self._report.in_trouble:
            self._failures = 0
            self._report.over()

    def pause(self, normal: float) -> float:
        """How long to wait before the loop's next round: ``normal``, or the backoff's
        delay while Redis is away, whichever is longer."""
        return max(normal, BACKOFF.delay(self._failures)) if self._failures else normal


@dataclass(frozen=True, slots=True)
class Verdict:
    """What :func:`examine` found: ``problems`` keep synthgate from using this Redis."""

    summary: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def examine(info: Mapping[str, Any]) -> Verdict:
    """Check an ``INFO`` answer (redis-py's dict): version, eviction policy, and whether
    the data survives a restart."""
    problems: list[str] = []
    warnings: list[str] = []
    unknown: list[str] = []
    version = str(info.get("redis_version", ""))
    numbers = _version(version)
    if numbers is None:
        unknown.append("redis_version")
    elif numbers < MIN_VERSION:
        problems.append(
            f"Redis {version} is too old: synthgate needs Redis "
            f"{'.'.join(map(str, MIN_VERSION))} or later (its Lua scripts declare flags); "
            "upgrade the server"
        )
    policy = info.get("maxmemory_policy")
    if policy is None:
        unknown.append("maxmemory_policy")
    elif policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}: when full, Redis would evict task records and "
            "queued tasks; set it to noeviction (redis-cli CONFIG SET maxmemory-policy "
            "noeviction, and in redis.conf or your provider's parameter group)"
        )
    if info.get("loading") in (1, "1"):
        problems.append("Redis is still loading its data into memory")
    aof, replicas = info.get("aof_enabled"), info.get("connected_slaves")
    if aof is None and replicas is None:
        unknown.append("aof_enabled and connected_slaves")
    elif not _count(aof) and not _count(replicas):
        warnings.append(
            "neither the append-only file (appendonly yes) nor a connected replica protects "
            "the data: a Redis restart loses every task accepted since the last snapshot; "
            "set appendonly yes (docs/reliability.md)"
        )
    if unknown:
        warnings.append(f"INFO does not show {', '.join(unknown)}: not checked")
    summary = (
        f"Redis {version or '?'}, maxmemory-policy {policy or '?'}, "
        f"AOF {'?' if aof is None else 'on' if _count(aof) else 'off'}, "
        f"{'?' if replicas is None else _count(replicas)} connected replicas"
    )
    return Verdict(summary, problems, warnings)


def _version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return None


def _count(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).rstrip('.')}"


class StartupWait:
    """One process's wait for a usable Redis, shared by :func:`wait_until_usable` and
    :func:`attempt_async`: the lines it logs, its backoff, and where it stands."""

    def __init__(self, settings: Settings, who: str) -> None:
        self.who = who
        self.report = outage_report(settings)
        self.failures = 0
        # What keeps the process from serving ("" once Redis is usable): /readyz says it.
        self.problem = f"waiting for Redis at {self.report.target}"

    def failed(self, exc: redis.RedisError) -> float:
        """Redis did not answer ``INFO``: the seconds to wait before the next try."""
        self.failures += 1
        self.problem = f"Redis unreachable at {self.report.target}: {_error_text(exc)}"
        self.report.away(
            exc,
            f"{self.who} waits for it, retrying with backoff "
            f"(at most {BACKOFF.max_seconds:g} s apart)",
        )
        return BACKOFF.delay(self.failures)

    def answered(self, info: Mapping[str, Any]) -> float | None:
        """Redis answered ``INFO``: None when it is usable, else the seconds to wait."""
        verdict = examine(info)
        if verdict.problems:
            self.failures += 1
            self.problem = f"Redis at {self.report.target} is not usable: " + "; ".join(
                verdict.problems
            )
            self.report.trouble(
                "; ".join(verdict.problems), f"{self.problem}; {self.who} waits until it is"
            )
            return BACKOFF.delay(self.failures)
        lasted = self.report.over(say=False)
        self.problem = ""
        after = "" if lasted is None else f" (after {lasted:.0f} s)"
        log.log(
            logging.INFO if lasted is None else logging.WARNING,  # said as loudly as the wait
            "Redis at %s answers%s: %s",
            self.report.target,
            after,
            verdict.summary,
        )
        for warning in verdict.warnings:
            log.warning("Redis at %s: %s", self.report.target, warning)
        return None


def wait_until_usable(settings: Settings, who: str) -> None:
    """Block until the Redis of ``settings`` answers and passes :func:`examine` (a worker's
    start-up; SIGTERM ends the process meanwhile)."""
    client = sync_client(
        settings,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
    )
    wait = StartupWait(settings, who)
    try:
        while True:
            try:
                delay = wait.answered(_info(client))
            except redis.RedisError as exc:
                delay = wait.failed(exc)
            if delay is None:
                return
            time.sleep(delay)
    finally:
        client.close()


async def attempt_async(wait: StartupWait, client: aioredis.Redis) -> float | None:
    """One try of :func:`wait_until_usable` on an event loop, with the caller's client:
    None when Redis is usable, else the seconds to wait before the next."""
    try:
        return wait.answered(await _info_async(client))
    except redis.RedisError as exc:
        return wait.failed(exc)


def _info(client: redis.Redis) -> dict[str, Any]:
    try:
        info: dict[str, Any] = client.info()
    except redis.ResponseError:  # INFO refused (ACLs, a renamed command): only a PING then
        client.ping()
        return {}
    return info


async def _info_async(client: aioredis.Redis) -> dict[str, Any]:
    try:
        info: dict[str, Any] = await client.info()
    except redis.ResponseError:
        await client.ping()
        return {}
    return info
