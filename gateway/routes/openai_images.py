"""OpenAI-compatible images: ``POST /v1/images/generations`` (and ``GET /v1/models``).

Synchronous for the caller: the request is submitted like any task (the tenant's key
as ``Authorization: Bearer``, its limits, the fair queue, the storage), then the
gateway waits for the task to end, up to ``SYNTHGATE_OPENAI_WAIT_SECONDS``, and answers
``{"created", "data": [{"url"} | {"b64_json"}]}``. Every answer names its task in
``X-Synthgate-Task-Id``, so a caller whose wait ran out (504) can follow the task
through the DashScope API. With an ``Idempotency-Key``, a retried call waits for the
same task instead of making a new one (the OpenAI SDK retries 5xx answers by itself).
Each call holds one of its tenant's open-request slots (:mod:`gateway.tenancy.streams`)
while it waits, and ends (401, 403) once its key is revoked or its tenant disabled.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from redis.exceptions import RedisError

from gateway.contracts.openai_mapping import (
    ImagesRequest,
    error_body,
    error_response,
    parse_images_request,
)
from gateway.contracts.openapi import errors, images_openapi
from gateway.contracts.schemas import ImagesAnswer, OpenAIModelList
from gateway.edge.connections import UNAVAILABLE_ERRORS, unavailable
from gateway.edge.deps import (
    CurrentCaller,
    JsonBody,
    Links,
    Store,
    Submissions,
    open_streams_of,
    still_allowed,
)
from gateway.edge.errors import ApiError
from gateway.edge.image_reader import ImageMissing, ImageReader
from gateway.edge.responses import JsonResponse
from gateway.intake.idempotency import REPLAYED_HEADER
from gateway.intake.options import submit_options
from gateway.intake.routing import enqueue
from gateway.operations.metrics import record_rejection
from gateway.routes.tasks import task_body
from gateway.tenancy.auth import allowed_models
from taskcore.image_urls import ImageUrls
from taskcore.logs import context_value
from taskcore.records import TaskRecord, TaskStatus
from taskcore.store.watch import TaskWatcher

log = logging.getLogger("synthgate.gateway")

TASK_HEADER = "X-Synthgate-Task-Id"


class OpenAIRoute(APIRoute):
    """Answers every error of its routes the OpenAI way, those raised while resolving the
    dependencies (the key, the body) included."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer_openai_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                if exc.status_code in (403, 429):
                    record_rejection(context_value("tenant"), exc.code)
                return error_response(exc)
            except RedisError as exc:
                if not isinstance(exc, UNAVAILABLE_ERRORS):
                    raise
                log.warning("Redis unavailable: %s: %s", type(exc).__name__, exc)
                return error_response(unavailable(exc))

        return answer_openai_errors


router = APIRouter(prefix="/v1", tags=["OpenAI images"], route_class=OpenAIRoute)


@router.post(
    "/images/generations",
    response_model=ImagesAnswer,
    responses=errors(400, 401, 403, 409, 413, 429, 500, 503, 504, openai=True),
    openapi_extra=images_openapi(),
)
async def generate_images(
    request: Request,
    caller: CurrentCaller,
    submitter: Submissions,
    store: Store,
    links: Links,
    body: JsonBody,
) -> JsonResponse:
    """Make the images and answer when they are stored (or the wait runs out)."""
    settings = request.app.state.settings
    wanted = parse_images_request(body, settings.openai_default_model, settings.catalog)
    options = submit_options(request.headers, body, "openai")
    # A slot of the tenant's open requests first: a refused call submits nothing.
    with open_streams_of(request).hold(caller.tenant):
        accepted = await enqueue(request, submitter, caller, wanted.job, options=options)
        headers = {TASK_HEADER: accepted.task_id, **accepted.headers()}
        if accepted.replayed:
            headers[REPLAYED_HEADER] = "true"
        watcher: TaskWatcher = request.app.state.watcher
        seen = await watcher.until_final(
            accepted.task_id,
            caller.tenant,
            settings.openai_wait_seconds,
            check=lambda: still_allowed(request, caller),
        )
    record = await store.get(accepted.task_id, caller.tenant) if seen.final else None
    if record is None or record.status is not TaskStatus.SUCCEEDED:
        wait = settings.openai_wait_seconds
        status, code, message = _not_made(accepted.task_id, record, seen.status, wait)
        return JsonResponse(error_body(status, code, message), status_code=status, headers=headers)
    data = await _images(request, record, links, wanted)
    return JsonResponse({"created": record.submit_ms // 1000, "data": data}, headers=headers)


@router.get("/models", response_model=OpenAIModelList, responses=errors(401, 403, 503, openai=True))
async def list_models(request: Request, caller: CurrentCaller) -> JsonResponse:
    """The models the images endpoint accepts for this tenant, in OpenAI's list shape."""
    catalog = request.app.state.settings.catalog
    names = await allowed_models(request.app.state.redis, caller.tenant, catalog.names())
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "synthgate"} for name in names
    ]
    return JsonResponse({"object": "list", "data": data})


def _not_made(
    task_id: str, record: TaskRecord | None, status: TaskStatus, wait_seconds: float
) -> tuple[int, str, str]:
    """The HTTP status, code and message of a task that gave no images."""
    if record is None and not status.final and status is not TaskStatus.UNKNOWN:
        return (
            504,
            "timeout",
            f"Task {task_id} is still {status.value} after {wait_seconds:g} s; "
            f"follow it with GET /api/v1/tasks/{task_id}.",
        )
    if record is None:
        return 500, "server_error", f"Task {task_id} is gone: its record expired."
    if record.status is TaskStatus.CANCELED:
        return 400, "task_canceled", f"Task {task_id} was canceled."
    return 500, record.code or "server_error", record.message or f"Task {task_id} failed."


async def _images(
    request: Request, record: TaskRecord, links: ImageUrls, wanted: ImagesRequest
) -> list[dict[str, str]]:
    """The images made, as URLs (signed or presigned) or as base64 PNG bytes."""
    if wanted.response_format == "url":
        output = task_body(request, record.task_id, record, links)["output"]
        return [{"url": item["url"]} for item in output.get("results", []) if "url" in item]
    reader: ImageReader = request.app.state.image_reader
    data = []
    for item in record.results:
        if "key" not in item:
            continue
        try:
            png = await reader.read(item["key"])
        except ImageMissing:
            log.warning("image %s of task %s is no longer stored", item["key"], record.task_id)
            continue
        encoded = await to_thread.run_sync(base64.b64encode, png)
        data.append({"b64_json": encoded.decode("ascii")})
    return data
