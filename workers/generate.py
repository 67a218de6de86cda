"""The ``synthgate.generate`` task: claim the record, make the images, store them, finish."""

from __future__ import annotations

import logging
import time

from gateway.jobs import ImageOutcome, image_key
from gateway.logs import log_context
from gateway.records import TaskStatus
from gateway.store import Claim
from workers import metrics
from workers.backends import TaskFailed
from workers.runtime import WorkerRuntime
from workers.storage import StorageError

log = logging.getLogger("synthgate.worker")

STORAGE_CODE = "InternalError.Storage"
STORAGE_MESSAGE = "The images could not be stored; please retry the task."

# A final status, the results to record, and the failure's code and message ('' on success).
_Verdict = tuple[TaskStatus, list[dict[str, str]], str, str]


def run_generate(task_id: str, runtime: WorkerRuntime) -> TaskStatus | None:
    """Run one task to a final status; returns it (None when there was nothing to run)."""
    claim = runtime.store.claim(task_id)
    if claim is None:
        log.warning("task %s has no record (expired or never written); dropping it", task_id)
        return None
    if claim.request is None:
        log.info("task %s is %s; not running it", task_id, claim.previous.value)
        return None
    context = log_context(task_id=task_id, tenant=claim.tenant, model=claim.request.model)
    with context, metrics.task_running(claim) as started:
        status, results, code, message = _execute(task_id, claim, runtime)
        runtime.store.finish(task_id, status, results, code, message)
        metrics.task_finished(claim, status, code, results, started)
        log.info(
            "task %s %s in %.2fs (%d images)",
            task_id,
            status.value,
            time.perf_counter() - started,
            sum("key" in r for r in results),
            extra={"status": status.value, "code": code, "pool": claim.pool},
        )
    return status


def _execute(task_id: str, claim: Claim, runtime: WorkerRuntime) -> _Verdict:
    """Make and store the images; every failure becomes a FAILED verdict with a code."""
    try:
        results = _make_and_store(task_id, claim, runtime)
    except StorageError as exc:
        log.error("task %s: its images could not be stored: %s", task_id, exc)
        return TaskStatus.FAILED, [], STORAGE_CODE, STORAGE_MESSAGE
    except TaskFailed as failure:
        return TaskStatus.FAILED, [], failure.code, failure.message
    except Exception as exc:  # a crash in a backend fails this task, not the worker
        log.exception("task %s failed", task_id)
        return TaskStatus.FAILED, [], "InternalError.Algo", _describe(exc)
    return _verdict(results)


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


def _verdict(results: list[dict[str, str]]) -> _Verdict:
    """SUCCEEDED when at least one image was made; else FAILED with the first image's error."""
    if any("key" in r for r in results):
        return TaskStatus.SUCCEEDED, results, "", ""
    first = results[0] if results else {}
    return (
        TaskStatus.FAILED,
        results,
        first.get("code", "InternalError.Algo"),
        first.get("message", "No image could be generated."),
    )


def _describe(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."
