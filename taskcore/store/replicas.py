"""Waiting for replicas: the writes whose loss in a failover would lose a task.

Redis replicates asynchronously, so a write the primary acknowledged can vanish with it
when Sentinel promotes a replica that had not received it yet. The writes that keep a task
(the submit, a worker's claim, its images marked stored and its finish) are therefore
followed on the same connection by ``WAIT n timeout`` (``SYNTHGATE_REDIS_MIN_REPLICAS``,
``SYNTHGATE_REDIS_WAIT_TIMEOUT_MS``), sent in the same pipeline as the script, so the wait
costs no extra round trip. ``WAIT`` cannot run inside a script. What happens when fewer
replicas confirm in time is each caller's choice (docs/reliability.md); every such write
is counted in ``synthgate_redis_unconfirmed_writes_total``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from prometheus_client import Counter
from redis.exceptions import NoScriptError

from taskcore.settings import Settings

log = logging.getLogger("synthgate.redis")

UNCONFIRMED_WRITES = Counter(
    "synthgate_redis_unconfirmed_writes_total",
    "Task-keeping Redis writes (submit, claim, mark_stored, finish) that fewer replicas than "
    "SYNTHGATE_REDIS_MIN_REPLICAS confirmed within SYNTHGATE_REDIS_WAIT_TIMEOUT_MS, by write.",
    ["write"],
)
_LOG_EVERY_SECONDS = 60.0


@dataclass(slots=True)
class ReplicaWait:
    """How many replicas a task-keeping write waits for (0: none), and for how long."""

    replicas: int = 0
    timeout_ms: int = 500
    _logged: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplicaWait:
        return cls(settings.redis_replicas_to_wait, settings.redis_wait_timeout_ms)

    @property
    def active(self) -> bool:
        return self.replicas > 0

    def command(self) -> tuple[str, int, int]:
        return ("WAIT", self.replicas, self.timeout_ms)

    def confirmed(self, write: str, acked: int) -> bool:
        """Whether ``acked`` replicas are enough; counts (and now and then logs) if not."""
        if acked >= self.replicas:
            return True
        UNCONFIRMED_WRITES.labels(write).inc()
        now = time.monotonic()
        if now - self._logged.get(write, -_LOG_EVERY_SECONDS) >= _LOG_EVERY_SECONDS:
            self._logged[write] = now
            log.warning(
                "a %s write was confirmed by %d of %d replicas within %d ms "
                "(SYNTHGATE_REDIS_MIN_REPLICAS); it may be lost if the primary fails now",
                write,
                acked,
                self.replicas,
                self.timeout_ms,
            )
        return False


NO_WAIT = ReplicaWait()

# A script call: the bound script (redis.commands.core.Script), its KEYS and its ARGV.
ScriptCall = tuple[Any, Sequence[Any], Sequence[Any]]


def run_confirmed(
    client: redis.Redis, wait: ReplicaWait, write: str, calls: Sequence[ScriptCall]
) -> list[Any]:
    """Run the scripts in one pipeline followed by ``WAIT``, on one connection; each
    script's reply (or its error) in order. A script Redis lacks (a primary promoted by a
    failover starts with an empty script cache) is loaded and sent again, with its own
    ``WAIT``; the others ran once."""
    pending = list(range(len(calls)))
    replies: list[Any] = [None] * len(calls)
    for _ in range(3):
        with client.pipeline(transaction=False) as pipe:
            for i in pending:
                script, keys, args = calls[i]
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.execute_command(*wait.command())  # type: ignore[no-untyped-call]
            *results, acked = pipe.execute(raise_on_error=False)
        missing = []
        for i, result in zip(pending, results, strict=True):
            if isinstance(result, NoScriptError):
                calls[i][0].sha = client.script_load(calls[i][0].script)
                missing.append(i)
            else:
                replies[i] = result
        if isinstance(acked, Exception):
            raise acked
        if len(missing) < len(pending):  # some ran
            wait.confirmed(write, int(acked))
        if not missing:
            return replies
        pending = missing
    raise NoScriptError("a script could not be loaded")
