"""Progress of a running task, written into its record for fetches and event streams.

The record's ``progress`` (0-100) rises while the task runs: the denoising steps of
the diffusers backend fill it up to :data:`DENOISED`, the upstream backend maps the
upstream task's status to rough values (:data:`UPSTREAM_PROGRESS`); the finish
script sets 100 on SUCCEEDED (``images_done`` rises as images are stored, see
``WorkerTaskStore.mark_stored``). A write is one small script that only raises the
value, and only while the task is RUNNING under the writer's lease: a late write after
the task ended, or one of a worker that lost its task to another, changes nothing, and a
retried image never makes the bar go back. Writes are throttled, so the cost is a few per
second whatever the step rate.
"""

from __future__ import annotations

import logging
import time

import redis

from taskcore import redis_keys, scripts

log = logging.getLogger("synthgate.worker")

DENOISED = 90  # progress when the last denoising step is done (decoding and storing follow)
UPSTREAM_PROGRESS = {"PENDING": 0, "RUNNING": 50, "SUCCEEDED": DENOISED}


class ProgressRecorder:
    """Writes tasks' progress into their records (one per worker process)."""

    def __init__(self, client: redis.Redis, worker: str, interval_seconds: float = 0.25) -> None:
        self._raise = scripts.bind(client, "progress_raise")
        self._worker = worker  # the lease holder's name: only its writes count
        self.interval_seconds = interval_seconds

    def record(self, task_id: str, progress: int) -> None:
        """Raise the task's progress to ``progress`` (0-100) while it runs; never fails it."""
        value = max(0, min(100, int(progress)))
        try:
            self._raise(keys=[redis_keys.task(task_id)], args=[self._worker, value])
        except redis.RedisError as exc:  # progress is a courtesy: the task goes on
            log.warning("task %s: progress not recorded: %s", task_id, exc)

    def steps(self, task_id: str) -> StepProgress:
        """A diffusers ``on_step`` hook for one task."""
        return StepProgress(self, task_id)

    def upstream_status(self, task_id: str, status: str) -> None:
        """The upstream task's status, as rough progress."""
        if status in UPSTREAM_PROGRESS:
            self.record(task_id, UPSTREAM_PROGRESS[status])


class StepProgress:
    """``hook(done, total)`` after each denoising step: records ``DENOISED * done / total``
    when it rose and ``interval_seconds`` passed since the last write, and the last step."""

    def __init__(self, recorder: ProgressRecorder, task_id: str) -> None:
        self._recorder = recorder
        self._task_id = task_id
        self._written = -1
        self._last = float("-inf")

    def __call__(self, done: int, total: int) -> None:
        value = DENOISED * done // max(total, 1)
        now = time.monotonic()
        if value <= self._written:
            return
        if done < total and now - self._last < self._recorder.interval_seconds:
            return
        self._written, self._last = value, now
        self._recorder.record(self._task_id, value)
