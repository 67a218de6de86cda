"""Storing the images of a task: concurrently, each retried with backoff, all or none."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass

from taskcore.settings import Settings
from workers import metrics
from workers.storage.base import Storage, StorageError

log = logging.getLogger("synthgate.worker.storage")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff between the attempts of one upload."""

    retries: int = 4
    base_seconds: float = 0.5
    max_seconds: float = 8.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(
            settings.storage_retries,
            settings.storage_backoff_seconds,
            settings.storage_backoff_max_seconds,
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based).

        Equal jitter: half the capped delay is fixed, half random. The random half
        spreads the retries of many workers; the fixed half guarantees a store that
        is restarting some time to come back before the budget is spent.
        """
        ceiling = min(self.max_seconds, self.base_seconds * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class _GaveUp(StorageError):
    """An upload stopped retrying because another object of its task failed for good."""


class Uploader:
    """Puts the objects of one task on a bounded pool shared by the whole worker process.

    The pool is shared because an upstream worker runs hundreds of tasks at once
    in threads; a pool per task would multiply threads and S3 connections.
    """

    def __init__(self, storage: Storage, backoff: Backoff, concurrency: int) -> None:
        self.storage = storage
        self.backoff = backoff
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="upload")
        # The metrics' label: "local" for LocalStorage, "s3" for S3Storage.
        self._label = type(storage).__name__.removesuffix("Storage").lower()

    def put_all(
        self, objects: Mapping[str, bytes], on_stored: Callable[[str], None] | None = None
    ) -> None:
        """Store every object, or raise :class:`StorageError` and leave none of them stored.
        ``on_stored(key)`` runs after each object is stored (in an upload thread)."""
        give_up = threading.Event()
        # Each upload runs in the caller's context, so its log lines name the task.
        futures = {
            key: self._pool.submit(copy_context().run, self._put_one, key, data, give_up, on_stored)
            for key, data in objects.items()
        }
        failures = {key: error for key, error in _outcomes(futures).items() if error is not None}
        if not failures:
            return
        self._discard([key for key in futures if key not in failures])
        # Name the root cause, not an upload that only stopped because of it.
        errors = list(failures.values())
        cause = next((e for e in errors if not isinstance(e, _GaveUp)), errors[0])
        raise StorageError(
            f"{len(failures)} of {len(objects)} objects could not be stored: {cause}"
        ) from cause

    def _put_one(
        self,
        key: str,
        data: bytes,
        give_up: threading.Event,
        on_stored: Callable[[str], None] | None,
    ) -> None:
        try:
            self._retry(key, data, give_up)
            if on_stored is not None:
                on_stored(key)
        except BaseException:
            give_up.set()  # the task fails anyway: its other uploads stop retrying
            raise

    def _retry(self, key: str, data: bytes, give_up: threading.Event) -> None:
        attempts = self.backoff.retries + 1
        for attempt in range(attempts):
            started = time.perf_counter()
            try:
                self.storage.put(key, data)
            except StorageError as exc:
                metrics.upload_failed(self._label, time.perf_counter() - started, exc.transient)
                if not exc.transient or attempt + 1 == attempts:
                    raise
                delay = self.backoff.delay(attempt)
                log.warning(
                    "storing %s failed (attempt %d of %d), retrying in %.2fs: %s",
                    key,
                    attempt + 1,
                    attempts,
                    delay,
                    exc,
                )
                if give_up.wait(delay):
                    raise _GaveUp(f"{key}: not retried, another object failed") from exc
            else:
                metrics.upload_done(self._label, time.perf_counter() - started)
                return

    def _discard(self, keys: list[str]) -> None:
        """Best effort: what is left (the store is down) is never listed, and expires."""
        for key in keys:
            try:
                self.storage.delete(key)
            except StorageError as exc:
                log.warning("could not remove %s after a failed task: %s", key, exc)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _outcomes(futures: Mapping[str, Future[None]]) -> dict[str, BaseException | None]:
    return {key: future.exception() for key, future in futures.items()}
