"""Worker heartbeats in Redis: the gateway's readiness (and tests) see which pools are served."""

from __future__ import annotations

import contextlib
import logging
import threading

import redis

from gateway import keys

log = logging.getLogger("synthgate.worker")


class Heartbeat:
    """Refreshes one short-lived key per served pool until stopped."""

    def __init__(
        self, client: redis.Redis, pools: list[str], hostname: str, interval: float
    ) -> None:
        self._redis = client
        self._keys = [keys.worker_heartbeat(pool, hostname) for pool in pools]
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthgate-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        ttl = max(1, int(self._interval * 3))
        while not self._stop.is_set():
            try:
                with self._redis.pipeline(transaction=False) as pipe:
                    for key in self._keys:
                        pipe.set(key, "1", ex=ttl)
                    pipe.execute()
            except redis.RedisError as exc:  # Redis restarting: keep beating, it comes back
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with contextlib.suppress(redis.RedisError):
            self._redis.delete(*self._keys)
