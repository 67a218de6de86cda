"""Keeping a worker's leases on the tasks it runs alive (see :mod:`taskcore.reaper`).

One thread per worker process renews, in one Lua call, the leases of every task the
process holds. It beats independently of the work, so a long pipeline call keeps
its task; when the process dies the beats stop, the leases expire and the reaper
hands the tasks to other workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from taskcore.redis_startup import RedisAway
from taskcore.store.worker import WorkerTaskStore
from workers import health

log = logging.getLogger("synthgate.worker")


class LeaseKeeper:
    """Renews this process's leases every ``interval`` seconds while it holds any."""

    def __init__(self, store: WorkerTaskStore, interval: float) -> None:
        self._store = store
        self._interval = interval
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def hold(self, *task_ids: str) -> Iterator[None]:
        """Keep the leases on ``task_ids`` (claimed by this process) for the block, or until
        :meth:`release` lets go of one."""
        with self._lock:
            self._held.update(task_ids)
            if self._thread is None:  # started lazily: after a prefork pool's fork
                self._thread = threading.Thread(
                    target=self._run, name="synthgate-leases", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            self.release(*task_ids)

    def release(self, *task_ids: str) -> None:
        """Stop renewing these leases (their tasks ended)."""
        with self._lock:
            self._held.difference_update(task_ids)

    def renew_now(self) -> None:
        with self._lock:
            held = sorted(self._held)
        lost = self._store.renew(held)  # one that ended meanwhile is not in it
        if lost:  # its finish will be refused: the new holder ends the task
            log.warning("lost the lease on %s: another worker has it now", ", ".join(lost))

    def _run(self) -> None:
        stop = threading.Event()
        away = RedisAway(None, "lease renewals wait for it")  # no backoff: leases run out
        health.tick(health.LEASES)
        while not stop.wait(self._interval):
            health.tick(health.LEASES)  # the thread turns, whether or not Redis answers
            try:
                self.renew_now()
                if self._held:  # else Redis was not asked
                    away.answered()
            except redis.RedisError as exc:  # Redis restarting: renew on the next beat
                if not away.failed(exc):
                    log.warning("could not renew leases: %s", exc)
