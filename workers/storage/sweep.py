"""Retention for local storage: files older than the retention period are deleted.

S3 buckets get the same retention from a lifecycle rule (``synthgate storage
apply-lifecycle``); a folder has no such thing, so each worker's main process
sweeps it periodically while it runs, and ``synthgate storage sweep`` does it once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path

from taskcore.settings import Settings
from workers.storage.local import is_partial

log = logging.getLogger("synthgate.worker.sweep")

# A partial file (a put interrupted by a killed worker) older than this is garbage: a put
# takes seconds at most. The retention period may be far longer.
PARTIAL_MAX_AGE_SECONDS = 3_600.0


def sweep_local(root: Path, max_age_seconds: float, now: float | None = None) -> int:
    """Delete files under ``root`` last written over ``max_age_seconds`` ago; returns how many.

    Partial files that a killed worker left go once they are an hour old
    (:data:`PARTIAL_MAX_AGE_SECONDS`), whatever the retention. Emptied folders go too. A
    worker writing into a folder just removed gets a transient error and retries, which
    recreates it.
    """
    if not root.is_dir():
        return 0
    now = time.time() if now is None else now
    cutoff = now - max_age_seconds
    partial_cutoff = now - min(max_age_seconds, PARTIAL_MAX_AGE_SECONDS)
    removed = 0
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder, name)
            try:
                limit = partial_cutoff if is_partial(name) else cutoff
                if path.lstat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another sweeper got there first
                continue
        if Path(folder) != root:
            with contextlib.suppress(OSError):  # not empty (or already gone): keep it
                os.rmdir(folder)
    return removed


class LocalSweeper:
    """Sweeps one folder now and then every ``interval`` seconds, in a daemon thread."""

    def __init__(self, root: Path, max_age_seconds: float, interval: float) -> None:
        self._root = root
        self._max_age = max_age_seconds
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="synthgate-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                removed = sweep_local(self._root, self._max_age)
                if removed:
                    log.info("storage sweep removed %d expired files", removed)
            except OSError as exc:  # an unreadable folder: report it, try again next time
                log.warning("storage sweep failed: %s", exc)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def build_sweeper(settings: Settings) -> LocalSweeper | None:
    """The sweeper of local storage (None for S3, whose lifecycle rules expire objects)."""
    if settings.storage != "local":
        return None
    return LocalSweeper(
        settings.storage_dir,
        settings.retention_days() * 86_400,
        settings.storage_sweep_interval_seconds,
    )
