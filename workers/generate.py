"""The ``synthgate.generate`` task: claim the record, make the images, store them, finish."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TypeVar

import redis

from taskcore.contract import ImageOutcome, image_key
from taskcore.logs import log_context
from taskcore.records import TaskStatus
from taskcore.store.claims import Claim
from workers import metrics
from workers.backends import TaskFailed
from workers.batches import gather
from workers.runtime import LocalBackend, WorkerRuntime
from workers.storage import StorageError

log = logging.getLogger("synthgate.worker")

STORAGE_CODE = "InternalError.Storage"
STORAGE_MESSAGE = "The images could not be stored; please retry the task."
CRASH_MESSAGE = "The image generation failed on the worker; please retry the task."

_T = TypeVar("_T")

# A final status, the results to record, and the failure's code and message ('' on success).
Verdict = tuple[TaskStatus, list[dict[str, str]], str, str]


def run_generate(task_id: str, runtime: WorkerRuntime) -> TaskStatus | None:
    """Run the delivered task to a final status, with the companions it takes to share its
    pipeline call (:mod:`workers.batches`); returns its status (None when there was nothing
    to run)."""
    store = runtime.store
    claim = with_redis_retry(lambda: store.claim(task_id), runtime.settings.lease_seconds)
    if claim is None or claim.request is None:
        log_not_runnable(task_id, claim)
        return None
    companions = gather(claim, runtime)
    for left_id, left_out in companions.left_out:
        log_not_runnable(left_id, left_out)
    claims = [claim, *companions.claimed]
    # Every lease is held from the claim (those running alone after the batch wait for it);
    # each task lets go of its own when it ends.
    with runtime.leases.hold(*(c.task_id for c in claims)):
        if companions.batch:
            status = run_batch([claim, *companions.batch], runtime)[0]
        else:
            status = run_claimed(claim, runtime)
        for alone in companions.alone:
            run_claimed(alone, runtime)
    return status


def run_claimed(claim: Claim, runtime: WorkerRuntime) -> TaskStatus | None:
    """Run a task this worker claimed, alone, to a final status (None: another worker took
    it over meanwhile)."""
    with _task_context(claim), metrics.task_running(claim) as started:
        if claim.attempts > 1:
            log.warning(
                "task %s: attempt %d, taking over (%d images stored before)",
                claim.task_id,
                claim.attempts,
                len(claim.stored),
            )
        return _end(claim, _conclude(claim, _make(claim, runtime), runtime), started, runtime)


def run_batch(claims: list[Claim], runtime: WorkerRuntime) -> list[TaskStatus | None]:
    """Run claimed tasks of one model, size and steps in one pipeline call, each then stored,
    finished and counted on its own; a batch that fails is made again task by task."""
    with ExitStack() as running:
        started = [running.enter_context(metrics.task_running(claim)) for claim in claims]
        images = sum(claim.request.n for claim in claims if claim.request is not None)
        metrics.batch_made(claims[0], len(claims))
        log.info(
            "batch of %d tasks (%d images) in one pipeline call",
            len(claims),
            images,
            extra={"tasks": [claim.task_id for claim in claims], "pool": claims[0].pool},
        )
        made = _make_batch(claims, runtime)
        ends = []
        for claim, outcomes, start in zip(claims, made, started, strict=True):
            with _task_context(claim):
                ends.append(_end(claim, _conclude(claim, outcomes, runtime), start, runtime))
        return ends


def _task_context(claim: Claim) -> log_context:
    assert claim.request is not None
    return log_context(task_id=claim.task_id, tenant=claim.tenant, model=claim.request.model)


def _end(
    claim: Claim, ending: Verdict, started: float, runtime: WorkerRuntime
) -> TaskStatus | None:
    """Finish the task as ``ending`` says, let go of its lease, count it."""
    status, results, code, message = ending
    finished = with_redis_retry(
        lambda: runtime.store.finish(claim.task_id, status, results, code, message),
        runtime.settings.lease_seconds,
    )
    runtime.leases.release(claim.task_id)
    if not finished:
        log.warning("task %s: another worker took it over; leaving it to that one", claim.task_id)
        return None
    report_finished(claim.task_id, claim, ending, started)
    return status


def report_finished(task_id: str, claim: Claim, ending: Verdict, started: float) -> None:
    """Count a finished task in the metrics and log its end (with the attempt that ended it)."""
    status, results, code, _ = ending
    metrics.task_finished(claim, status, code, results, started)
    log.info(
        "task %s %s in %.2fs (%d images)",
        task_id,
        status.value,
        time.perf_counter() - started,
        sum("key" in r for r in results),
        extra={"status": status.value, "code": code, "pool": claim.pool, "attempt": claim.attempts},
    )


def log_not_runnable(task_id: str, claim: Claim | None) -> None:
    """Say why a delivered task is not run."""
    if claim is None:
        log.warning("task %s has no record (expired or never written); dropping it", task_id)
    elif claim.attempts < 0:
        log.info("task %s is running on another worker; skipping this copy", task_id)
    elif claim.previous.final:
        log.info("task %s is %s; not running it", task_id, claim.previous.value)
    else:
        log.error("task %s FAILED: it was claimed too many times", task_id)


def with_redis_retry(call: Callable[[], _T], within: float) -> _T:
    """``call()``, retried while Redis is unreachable (restarting), or full and refusing to
    start new work (the claim, see :mod:`taskcore.scripts.registry`), for up to ``within`` s.
    Past that the error rises: the task's message is dropped, and the reaper queues the
    unclaimed task again."""
    give_up = time.monotonic() + within
    delay = 0.2
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.exceptions.OutOfMemoryError) as exc:
            if time.monotonic() >= give_up:
                raise
            log.warning("Redis is unreachable or full (%s); retrying in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


# What a backend made of a task: its images' outcomes, or what it raised.
Made = list[ImageOutcome] | Exception


def _make(claim: Claim, runtime: WorkerRuntime) -> Made:
    try:
        return runtime.backend_for(claim.pool).generate(claim)
    except Exception as exc:  # a crash in a backend fails this task, not the worker
        return exc


def _make_batch(claims: list[Claim], runtime: WorkerRuntime) -> list[Made]:
    """The batch's images per task; each task made alone when the batch call raises (the
    backend already makes each alone after a failed pipeline call)."""
    backend = runtime.backend_for(claims[0].pool)
    assert isinstance(backend, LocalBackend)
    try:
        return list(backend.generate_batch(claims))
    except Exception as exc:
        log.warning("a batch of %d tasks failed, making each alone: %s", len(claims), exc)
        return [_make(claim, runtime) for claim in claims]


def _conclude(claim: Claim, made: Made, runtime: WorkerRuntime) -> Verdict:
    """Store what was made; every failure becomes a FAILED verdict with a code."""
    if isinstance(made, Exception):
        return failure_verdict(claim.task_id, made)
    try:
        results = store_images(claim.task_id, claim, made, runtime)
    except Exception as exc:
        return failure_verdict(claim.task_id, exc)
    return verdict(results)


def failure_verdict(task_id: str, exc: Exception) -> Verdict:
    """What a task that raised ``exc`` ends as."""
    if isinstance(exc, StorageError):
        log.error("task %s: its images could not be stored: %s", task_id, exc)
        return TaskStatus.FAILED, [], STORAGE_CODE, STORAGE_MESSAGE
    if isinstance(exc, TaskFailed):
        return TaskStatus.FAILED, [], exc.code, exc.message
    # A crash in a backend fails this task, not the worker. Its text (paths, addresses,
    # settings) stays in the log: the tenant gets the code and a short message.
    log.error("task %s failed", task_id, exc_info=exc)
    return TaskStatus.FAILED, [], "InternalError.Algo", CRASH_MESSAGE


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """What to store of a task's images, and the results once stored. Images a previous
    attempt stored are neither made (backends skip them) nor stored again."""

    objects: dict[str, bytes]  # storage key -> PNG
    indexes: dict[str, int]  # storage key -> image index
    results: list[dict[str, str]]


def plan_images(task_id: str, claim: Claim, made: list[ImageOutcome]) -> ImagePlan:
    assert claim.request is not None
    keys = {i: image_key(claim.tenant, task_id, i, claim.submit_ms) for i in range(claim.request.n)}
    outcomes = {o.index: o for o in made if o.index not in claim.stored}
    return ImagePlan(
        objects={keys[i]: o.png for i, o in outcomes.items() if o.png is not None},
        indexes={keys[i]: i for i in outcomes},
        results=[
            {"key": keys[i]} if i in claim.stored else _result(outcomes[i], keys[i])
            for i in sorted(set(outcomes) | claim.stored)
        ],
    )


def store_images(
    task_id: str, claim: Claim, made: list[ImageOutcome], runtime: WorkerRuntime
) -> list[dict[str, str]]:
    """Store the images ``made`` (all or none: a task never lists an image that is not
    stored whole), marking each stored as soon as it is; returns the task's results."""
    plan = plan_images(task_id, claim, made)

    def stored(key: str) -> None:
        try:
            runtime.store.mark_stored(task_id, [plan.indexes[key]])
        except redis.RedisError as exc:  # only a takeover would make it again
            log.warning("could not mark %s stored: %s", key, exc)

    runtime.uploader.put_all(plan.objects, on_stored=stored)
    return plan.results


def _result(outcome: ImageOutcome, key: str) -> dict[str, str]:
    if outcome.png is None:
        return {"code": outcome.code or "InternalError.Algo", "message": outcome.message or ""}
    return {"key": key, **outcome.extra}


def verdict(results: list[dict[str, str]]) -> Verdict:
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
