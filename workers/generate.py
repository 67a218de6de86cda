"""The ``synthgate.generate`` task: claim the record, make the images, store them, finish."""

from __future__ import annotations

import logging
import time

from gateway.jobs import ImageOutcome, image_key
from gateway.records import TaskStatus
from gateway.store import Claim
from workers.backends import TaskFailed
from workers.runtime import WorkerRuntime
from workers.storage import StorageError

log = logging.getLogger("synthgate.worker")

STORAGE_CODE = "InternalError.Storage"
STORAGE_MESSAGE = "The images could not be stored; please retry the task."


def run_generate(task_id: str, runtime: WorkerRuntime) -> TaskStatus | None:
    """Run one task to a final status; returns it (None when there was nothing to run)."""
    claim = runtime.store.claim(task_id)
    if claim is None:
        log.warning("task %s has no record (expired or never written); dropping it", task_id)
        return None
    if not claim.runnable:
        log.info("task %s is %s; not running it", task_id, claim.previous.value)
        return None
    started = time.perf_counter()
    try:
        results = _make_and_store(task_id, claim, runtime)
    except StorageError as exc:
        log.error("task %s: its images could not be stored: %s", task_id, exc)
        runtime.store.finish(task_id, TaskStatus.FAILED, [], STORAGE_CODE, STORAGE_MESSAGE)
        return TaskStatus.FAILED
    except TaskFailed as failure:
        log.info("task %s failed: %s", task_id, failure.code)
        runtime.store.finish(task_id, TaskStatus.FAILED, [], failure.code, failure.message)
        return TaskStatus.FAILED
    except Exception as exc:  # a crash in a backend fails this task, not the worker
        log.exception("task %s failed", task_id)
        runtime.store.finish(task_id, TaskStatus.FAILED, [], "InternalError.Algo", _describe(exc))
        return TaskStatus.FAILED
    status, code, message = _verdict(results)
    runtime.store.finish(task_id, status, results, code, message)
    log.info(
        "task %s %s in %.2fs (%d images)",
        task_id,
        status.value,
        time.perf_counter() - started,
        sum("key" in r for r in results),
    )
    return status


def _make_and_store(task_id: str, claim: Claim, runtime: WorkerRuntime) -> list[dict[str, str]]:
    outcomes = sorted(runtime.backend_for(claim.pool).generate(claim), key=lambda o: o.index)
    keys = {o.index: image_key(claim.tenant, task_id, o.index, claim.submit_ms) for o in outcomes}
    # All or none: a task never lists an image that is not stored whole.
    runtime.uploader.put_all({keys[o.index]: o.png for o in outcomes if o.png is not None})
    return [_result(outcome, keys[outcome.index]) for outcome in outcomes]


def _result(outcome: ImageOutcome, key: str) -> dict[str, str]:
    if outcome.png is None:
        return {"code": outcome.code or "InternalError.Algo", "message": outcome.message or ""}
    return {"key": key}


def _verdict(results: list[dict[str, str]]) -> tuple[TaskStatus, str, str]:
    """SUCCEEDED when at least one image was made; else FAILED with the first image's error."""
    if any("key" in r for r in results):
        return TaskStatus.SUCCEEDED, "", ""
    first = results[0] if results else {}
    return (
        TaskStatus.FAILED,
        first.get("code", "InternalError.Algo"),
        first.get("message", "No image could be generated."),
    )


def _describe(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
