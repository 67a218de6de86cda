"""The DashScope task API: submit, fetch, cancel, list."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from gateway.deps import CurrentCaller, JsonBody, Links, Store, Submissions
from gateway.errors import AccessDenied, InvalidParameter, UnsupportedOperation
from gateway.image_urls import ImageUrls
from gateway.logs import bind
from gateway.metrics import record_submit
from gateway.records import TaskRecord, TaskStatus, format_time
from gateway.responses import JsonResponse, reply
from gateway.validation import parse_submit

router = APIRouter(prefix="/api/v1")

log = logging.getLogger("synthgate.gateway")


@router.post("/services/aigc/text2image/image-synthesis")
async def submit(
    request: Request, caller: CurrentCaller, submitter: Submissions, body: JsonBody
) -> JsonResponse:
    """Validate, then (within the tenant's limits) record a PENDING task and queue it."""
    if request.headers.get("x-dashscope-async", "").strip().lower() != "enable":
        raise AccessDenied(
            "current user api does not support synchronous calls; "
            "send the header 'X-DashScope-Async: enable'."
        )
    job = parse_submit(body)
    task_id = str(uuid.uuid4())
    bind(task_id=task_id, model=job.model)
    dispatcher = request.app.state.dispatcher
    queue = await dispatcher.queue_for(job.model)
    message = dispatcher.message(task_id, queue)
    accepted = await submitter.submit(caller, task_id, job, queue, message)
    record_submit(caller.tenant, job.model, queue)
    log.info("task %s submitted to %s", task_id, queue, extra={"pool": queue})
    response = reply(request, {"output": {"task_id": task_id, "task_status": "PENDING"}})
    response.headers.update(accepted.headers())
    return response


@router.get("/tasks/{task_id}")
async def fetch(
    request: Request, task_id: str, caller: CurrentCaller, store: Store, links: Links
) -> JsonResponse:
    record = await store.get(task_id, caller.tenant)
    if record is None:
        return reply(request, {"output": {"task_id": task_id, "task_status": "UNKNOWN"}})
    payload: dict[str, object] = {"output": record.output(_url_maker(record, links, request))}
    usage = record.usage()
    if usage is not None:
        payload["usage"] = usage
    return reply(request, payload)


@router.post("/tasks/{task_id}/cancel")
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


@router.get("/tasks")
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
    if not raw.isdigit() or not low <= int(raw) <= high:
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
