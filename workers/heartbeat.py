"""Worker heartbeats in Redis: the gateway's readiness (and tests) see which pools are served.

Each pool has one sorted set of its workers, scored by when each heartbeat
expires, so "is anyone serving this pool" is one ZCOUNT, however big Redis is.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis

from taskcore import redis_keys
from taskcore.redis_startup import RedisAway
from workers import health

log = logging.getLogger("synthgate.worker")


def live_workers(client: redis.Redis, pool: str) -> int:
    """How many workers of ``pool`` have a heartbeat that has not expired."""
    return int(client.zcount(redis_keys.pool_workers(pool), time.time() * 1000, "+inf"))


class Heartbeat:
    """Refreshes this worker's entry in each served pool until stopped."""

    def __init__(
        self, client: redis.Redis, pools: list[str], hostname: str, interval: float
    ) -> None:
        self._redis = client
        self._pools = [redis_keys.pool_workers(pool) for pool in pools]
        self._hostname = hostname
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthgate-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        # No backoff here: a beat is due as soon as Redis is back, or the pool looks dead.
        away = RedisAway(None, "the heartbeat waits for it")
        while not self._stop.is_set():
            health.tick(health.HEARTBEAT)
            now = time.time() * 1000
            try:
                with self._redis.pipeline(transaction=False) as pipe:
                    for key in self._pools:
                        pipe.zadd(key, {self._hostname: now + self._interval * 3000})
                        pipe.zremrangebyscore(key, "-inf", now - 3_600_000)  # long-dead workers
                    pipe.execute()
                away.answered()
            except redis.RedisError as exc:  # Redis restarting: keep beating, it comes back
                if not away.failed(exc):
                    log.warning("heartbeat failed: %s", exc)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            for key in self._pools:
                self._redis.zrem(key, self._hostname)
