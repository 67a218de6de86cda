"""Routing a job: which pool a task goes to, the Celery message that will run it there, and
the submit that takes it in (:func:`enqueue`, for every submitting API)."""

from __future__ import annotations

import logging
import uuid

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Request

from gateway.intake.admission import PLAIN, Accepted, SubmitOptions, Submitter
from gateway.operations.metrics import record_submit
from gateway.operations.pool_stats import pool_depth
from gateway.tenancy.auth import Caller
from taskcore.celery_queue import TaskMessages
from taskcore.contract import GenerationRequest
from taskcore.logs import bind
from taskcore.settings import Settings


class Dispatcher:
    """Routes a model to its local GPU pool, the upstream pool, or local with spill-over."""

    def __init__(self, celery: Celery, client: aioredis.Redis, settings: Settings) -> None:
        self._messages = TaskMessages(celery)
        self._redis = client
        self._settings = settings

    async def queue_for(self, model: str) -> str:
        spec = self._settings.catalog[model]
        if spec.runs == "local":
            return spec.pool
        if spec.runs == "upstream":
            return spec.upstream_pool
        # "both": what waits for the local pool, in its Celery queue and its fair queue.
        depth = await pool_depth(self._redis, spec.pool)
        return spec.upstream_pool if depth > self._settings.spillover_queue_depth else spec.pool

    def message(self, task_id: str, queue: str) -> bytes:
        """The message that runs the task on ``queue`` (only the task id: the record is the
        truth); the fair queue moves it into the Celery queue when the task's turn comes."""
        return self._messages.message(task_id, queue)


log = logging.getLogger("synthgate.gateway")


async def enqueue(
    request: Request,
    submitter: Submitter,
    caller: Caller,
    job: GenerationRequest,
    *,
    callback: str = "",
    options: SubmitOptions = PLAIN,
) -> Accepted:
    """Route ``job`` to its pool and submit it; the accepted (or replayed) task."""
    task_id = str(uuid.uuid4())
    dispatcher = request.app.state.dispatcher
    queue = await dispatcher.queue_for(job.model)
    message = dispatcher.message(task_id, queue)
    accepted = await submitter.submit(caller, task_id, job, queue, message, callback, options)
    bind(task_id=accepted.task_id, model=job.model)
    if accepted.replayed:
        log.info("task %s answered again for its idempotency key", accepted.task_id)
    else:
        record_submit(caller.tenant, job.model, queue)
        log.info("task %s submitted to %s", task_id, queue, extra={"pool": queue})
    return accepted
