"""The ``synthgate.generate`` task: claim the record, make the images, store them, finish."""

from __future__ import annotations

import logging
import time

from gateway.catalog import MODELS
from gateway.jobs import ImageOutcome, image_key
from gateway.records import TaskStatus
from gateway.store import Claim
from workers.runtime import WorkerRuntime

log = logging.getLogger("synthgate.worker")


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
    except Exception as exc:  # a crash in the pipeline fails this task, not the worker
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
    assert claim.request is not None
    request = claim.request
    outcomes = runtime.backend.generate(MODELS[request.model].kind, request)
    results: list[dict[str, str]] = []
    for outcome in sorted(outcomes, key=lambda o: o.index):
        results.append(_store_one(task_id, claim.tenant, claim.submit_ms, outcome, runtime))
    return results


def _store_one(
    task_id: str, tenant: str, submit_ms: int, outcome: ImageOutcome, runtime: WorkerRuntime
) -> dict[str, str]:
    if outcome.png is None:
        return {"code": outcome.code or "InternalError.Algo", "message": outcome.message or ""}
    key = image_key(tenant, task_id, outcome.index, submit_ms)
    try:
        runtime.storage.put(key, outcome.png)
    except OSError as exc:
        log.error("task %s: storing image %d failed: %s", task_id, outcome.index, exc)
        return {"code": "InternalError.Storage", "message": "The image could not be stored."}
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
