"""Taking a validated job in, as every submitting API does: the options a request asks
for (priority, idempotency), then the pool, the Celery message and the submit script.

The DashScope submit route and the OpenAI-compatible images route both come through
here, so both get the same limits, fair queue, idempotency and metrics.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from fastapi import Request

from gateway import idempotency, priority
from gateway.jobs import GenerationRequest
from gateway.logs import bind
from gateway.metrics import record_submit
from gateway.submit import PLAIN, Accepted, SubmitOptions, Submitter
from gateway.tenants import Caller

log = logging.getLogger("synthgate.gateway")


def submit_options(headers: Mapping[str, str], body: object, api: str) -> SubmitOptions:
    """The request's priority and ``Idempotency-Key`` (validated), with the fingerprint of
    ``body`` as it came through ``api`` (``dashscope`` or ``openai``) when there is a key.
    DashScope's extra fields live in ``parameters``, OpenAI's at the top of the body."""
    key = idempotency.parse_key(headers.get(idempotency.HEADER))
    if api == "openai":
        value, field = _field(body, "priority"), "priority"
    else:
        value, field = _field(_field(body, "parameters"), "priority"), "parameters.priority"
    level = priority.parse_priority(headers.get(priority.HEADER), value, field)
    return SubmitOptions(level, key, idempotency.fingerprint(api, body) if key else "")


def _field(body: object, name: str) -> object:
    return body.get(name) if isinstance(body, dict) else None


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
