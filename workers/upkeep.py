"""A worker's periodic duties, from its main process: feed its pools, and reap.

Submits and claims feed the pools' Celery queues from the fair queue as they happen
(see gateway/fairqueue.py); this tick is the safety net for a pool whose queue has
room while nothing is submitted or claimed (after a reaped entry, a Redis restart, a
change of depth). The reaper (gateway/reaper.py) runs every ``reap_interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown

from gateway.fairqueue import PoolFeeder
from gateway.reaper import Reaper
from gateway.settings import Settings
from gateway.store import now_ms

log = logging.getLogger("synthgate.worker")

# A fed task no worker claimed within this long, whose message left the queue, is stuck.
STALE_AFTER_SECONDS = 60.0


class Upkeep:
    """Feeds ``pools`` every ``feed_interval`` s and reaps every ``reap_interval`` s."""

    def __init__(
        self, client: redis.Redis, pools: list[str], settings: Settings, reaper: Reaper
    ) -> None:
        self._pools = pools
        self._feeder = PoolFeeder(client, settings.feed_depth)
        self._reaper = reaper
        self._feed_interval = settings.feed_interval_seconds
        self._reap_interval = settings.reap_interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthgate-upkeep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_reap = time.monotonic()
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + self._reap_interval
                    self._reap()
                for pool in self._pools:
                    self._feeder.feed(pool, now_ms())
            except redis.RedisError as exc:  # Redis restarting: try again next tick
                log.warning("upkeep failed: %s", exc)
            self._stop.wait(self._feed_interval)

    def _reap(self) -> None:
        reaped = self._reaper.run(self._pools, now_ms())
        if reaped.tasks or reaped.unstuck:
            log.warning(
                "reaper: %d task slots released or lost tasks failed, %d stuck entries dropped",
                reaped.tasks,
                reaped.unstuck,
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def upkeep_while_running(settings: Settings, pools: list[str]) -> None:
    """Run the upkeep in this worker's main process from ready to shutdown."""
    client = redis.Redis.from_url(settings.redis_url)
    reaper = Reaper(
        client,
        settings.task_ttl_seconds,
        lost_after=2 * settings.visibility_timeout_seconds,
        stale_after=STALE_AFTER_SECONDS,
    )
    upkeep = Upkeep(client, pools, settings, reaper)

    def start(**_: Any) -> None:
        upkeep.start()

    def stop(**_: Any) -> None:
        upkeep.stop()

    worker_ready.connect(start, weak=False)
    worker_shutdown.connect(stop, weak=False)
