"""A worker's periodic duties, from its main process: feed its pools, and reap.

Submits and claims feed the pools' Celery queues from the fair queue as they happen
(see taskcore/fairqueue.py); this tick is the safety net for a pool whose queue has
room while nothing is submitted or claimed (after a reaped entry, a Redis restart, a
change of depth). The reaper (taskcore/reaper.py) runs every ``reap_interval``.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from taskcore import redis_connect
from taskcore.fairqueue import PoolFeeder
from taskcore.reaper import Reaper, ReaperTerms
from taskcore.redis_startup import RedisAway
from taskcore.settings import Settings
from workers import health

log = logging.getLogger("synthgate.worker")


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
        self._lease_seconds = settings.lease_seconds
        self._last_error = float("-inf")  # when a tick last failed on Redis
        self._away = RedisAway(settings, "feeding and reaping wait for it")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthgate-upkeep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_reap = time.monotonic()
        while not self._stop.is_set():
            health.tick(health.UPKEEP)
            try:
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + self._reap_interval
                    self._reap()
                for pool in self._pools:
                    self._feeder.feed(pool)
                self._away.answered()
            except redis.RedisError as exc:  # Redis restarting: try again next tick
                self._last_error = time.monotonic()
                if not self._away.failed(exc):  # away: said once now and then, backing off
                    log.warning("upkeep failed: %s", exc)
            self._stop.wait(self._away.pause(self._feed_interval))

    def _reap(self) -> None:
        # Leases held by workers that were cut off from Redis with this one are renewed within
        # a lease of the reconnection: expired leases are taken over only after that.
        connected_for = time.monotonic() - self._last_error
        reaped = self._reaper.run(self._pools, take_over=connected_for >= self._lease_seconds)
        if reaped.tasks or reaped.unstuck or reaped.taken_over or reaped.poisoned:
            log.warning(
                "reaper: %d slots released or tasks failed past their deadline, %d unclaimed "
                "tasks requeued or dropped, %d tasks taken over, %d poison tasks failed",
                reaped.tasks,
                reaped.unstuck,
                reaped.taken_over,
                reaped.poisoned,
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def reaper_terms(settings: Settings) -> ReaperTerms:
    return ReaperTerms(
        ttl_seconds=settings.task_ttl_seconds,
        deadline_seconds=settings.task_deadline_seconds,
        requeue_after_seconds=settings.requeue_after_seconds,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
    )


def build_upkeep(settings: Settings, pools: list[str]) -> Upkeep:
    client = redis_connect.sync_client(settings)
    return Upkeep(client, pools, settings, Reaper(client, reaper_terms(settings)))
