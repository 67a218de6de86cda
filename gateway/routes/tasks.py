"""The DashScope task API: submit, fetch, cancel, list."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from gateway.contracts.dashscope import parse_submit
from gateway.contracts.openapi import errors, submit_openapi
from gateway.contracts.schemas import RequestOnly, TaskAnswer, TaskList
from gateway.edge.deps import CurrentCaller, Store, image_urls_of, json_body, store_of, submitter_of
from gateway.edge.errors import AccessDenied, InvalidParameter, UnsupportedOperation
from gateway.edge.responses import JsonResponse, reply
from gateway.intake.idempotency import REPLAYED_HEADER
from gateway.intake.options import requested_callback, submit_options, vet_submit_callback
from gateway.intake.routing import enqueue
from taskcore.catalog import Catalog
from taskcore.image_urls import ImageUrls
from taskcore.records import TaskRecord, TaskStatus, format_time

router = APIRouter(prefix="/api/v1", tags=["DashScope tasks"])

log = logging.getLogger("synthgate.gateway")


@router.post(
    "/services/aigc/text2image/image-synthesis",
    response_model=TaskAnswer,
    responses=errors(400, 401, 403, 409, 413, 429, 503),
    openapi_extra=submit_openapi(),
)
async def submit(request: Request, caller: CurrentCaller) -> JsonResponse:
    """Validate, then (within the tenant's limits) record a PENDING task and queue it; for a
    synchronous call (no ``X-DashScope-Async``, a model DashScope answers so) wait for it."""
    body = await json_body(request)
    settings = request.app.state.settings
    synchronous = request.headers.get("x-dashscope-async", "").strip().lower() != "enable"
    if synchronous and not _answers_synchronously(settings.catalog, body):
        raise AccessDenied(
            "current user api does not support synchronous calls; "
            "send the header 'X-DashScope-Async: enable'."
        )
    submitter = submitter_of(request)
    job = parse_submit(body, settings.catalog, request.headers)
    options = submit_options(request.headers, body, "dashscope")
    callback = requested_callback(request.headers, body)
    if callback:
        redis = request.app.state.redis
        await vet_submit_callback(callback, caller.tenant, redis, settings.webhook_allow_private)
    accepted = await enqueue(request, submitter, caller, job, callback=callback, options=options)
    if synchronous:
        watcher = request.app.state.watcher
        await watcher.until_final(accepted.task_id, caller.tenant, settings.sync_wait_seconds)
        record = await store_of(request).get(accepted.task_id, caller.tenant)
        answer = task_body(request, accepted.task_id, record, image_urls_of(request))
    else:
        answer = {"output": {"task_id": accepted.task_id, "task_status": "PENDING"}}
    response = reply(request, answer)
    response.headers.update(accepted.headers())
    if accepted.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


def _answers_synchronously(catalog: Catalog, body: object) -> bool:
    model = body.get("model") if isinstance(body, dict) else None
    spec = catalog.get(model) if isinstance(model, str) else None
    return spec is not None and spec.sync


@router.get("/tasks/{task_id}", response_model=TaskAnswer, responses=errors(401, 403, 503))
async def fetch(request: Request, task_id: str, caller: CurrentCaller) -> JsonResponse:
    record = await store_of(request).get(task_id, caller.tenant)
    return reply(request, task_body(request, task_id, record, image_urls_of(request)))


def task_body(
    request: Request, task_id: str, record: TaskRecord | None, links: ImageUrls
) -> dict[str, Any]:
    """The body of a task fetch (without ``request_id``): ``UNKNOWN`` when ``record`` is
    None. Also what each task event carries (see gateway/routes/events.py)."""
    if record is None:
        return {"output": {"task_id": task_id, "task_status": TaskStatus.UNKNOWN.value}}
    payload: dict[str, Any] = {"output": record.output(_url_maker(record, links, request))}
    usage = record.usage()
    if usage is not None:
        payload["usage"] = usage
    return payload


@router.post(
    "/tasks/{task_id}/cancel", response_model=RequestOnly, responses=errors(400, 401, 403, 503)
)
async def cancel(
    request: Request, task_id: str, caller: CurrentCaller, store: Store
) -> JsonResponse:
    previous = await store.cancel(task_id, caller.tenant)
    if previous is not TaskStatus.PENDING:
        raise UnsupportedOperation(
            f"Failed to cancel the task: it is {previous.value}; "
            "only PENDING tasks can be canceled."
        )
    return reply(request, {})


_COMPACT_TIME = re.compile(r"^\d{14}$")


def _parse_time(name: str, value: str | None) -> int | None:
    """The SDK's ``20230420000000`` form, or ``2023-04-20 00:00:00``; UTC; to ms."""
    if value is None or value == "":
        return None
    fmt = "%Y%m%d%H%M%S" if _COMPACT_TIME.match(value) else "%Y-%m-%d %H:%M:%S"
    try:
        moment = datetime.strptime(value, fmt).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidParameter(
            f"Parameter '{name}' must look like 20230420000000 or '2023-04-20 00:00:00'."
        ) from None
    return int(moment.timestamp() * 1000)


@router.get("/tasks", response_model=TaskList, responses=errors(400, 401, 403, 503))
async def list_tasks(
    request: Request,
    caller: CurrentCaller,
    store: Store,
    start_time: str | None = None,
    end_time: str | None = None,
    model_name: str | None = None,
    status: str | None = None,
    page_no: Annotated[str, Query()] = "1",
    page_size: Annotated[str, Query()] = "10",
) -> JsonResponse:
    """The caller's own tasks, newest first, in DashScope's list shape."""
    page, size = (
        _page_number("page_no", page_no, 1, 10**6),
        _page_number("page_size", page_size, 1, 100),
    )
    wanted: TaskStatus | None = None
    if status:
        try:
            wanted = TaskStatus(status.upper())
        except ValueError:
            raise InvalidParameter(f"Parameter 'status' has an unknown value {status!r}.") from None
    result = await store.list_page(
        caller.tenant,
        start_ms=_parse_time("start_time", start_time),
        end_ms=_parse_time("end_time", end_time),
        model=model_name or None,
        status=wanted,
        offset=(page - 1) * size,
        limit=size,
    )
    return reply(
        request,
        {
            "data": [_list_item(record) for record in result.records],
            "total": result.total,
            "total_page": (result.total + size - 1) // size,
            "page_no": page,
            "page_size": size,
        },
    )


def _page_number(name: str, raw: str, low: int, high: int) -> int:
    # ASCII digits, and few: int() refuses "²" and 5,000-digit strings.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or not low <= int(raw) <= high:
        raise InvalidParameter(f"Parameter '{name}' must be an integer between {low} and {high}.")
    return int(raw)


def _list_item(record: TaskRecord) -> dict[str, object]:
    return {
        "task_id": record.task_id,
        "status": record.status.value,
        "task_status": record.status.value,
        "model_name": record.request.model,
        "gmt_create": format_time(record.submit_ms),
        "submit_time": format_time(record.submit_ms),
        "start_time": format_time(record.scheduled_ms),
        "end_time": format_time(record.end_ms),
    }


def _url_maker(record: TaskRecord, links: ImageUrls, request: Request) -> Callable[[str], str]:
    """URLs for the record's images (signed or presigned), valid as long as the record lives."""
    ttl: int = request.app.state.settings.task_ttl_seconds
    expires = (record.end_ms or record.submit_ms) // 1000 + ttl

    def url_for(key: str) -> str:
        return links.url(key, expires)

    return url_for
