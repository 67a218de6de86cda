"""Task events: ``GET /api/v1/tasks/{id}/events``, a task's life as Server-Sent Events.

Each event is ``event: status`` whose ``data`` is the body a task fetch would answer
at that moment (with this request's ``request_id``), sent when the stream opens and
whenever the status, ``output.progress`` or ``output.images_done`` changes. The stream
ends after the event of a final status (or ``UNKNOWN``: an unknown task, another
tenant's, or one whose record expired), after ``SYNTHGATE_EVENTS_MAX_SECONDS`` (the
``retry:`` line tells an ``EventSource`` to reconnect soon), when Redis fails, or once the
caller's key is revoked or its tenant disabled (looked at again before each look at the
task, through the key cache: within ``SYNTHGATE_KEY_CACHE_SECONDS``); the last three end
with ``event: error`` and a DashScope error body. A tenant holds at most
``SYNTHGATE_OPEN_STREAMS_PER_TENANT`` streams and OpenAI waits open in a gateway process
(:mod:`gateway.tenancy.streams`); one more is 429 ``Throttling``. While nothing changes, a
comment line every ``SYNTHGATE_EVENTS_HEARTBEAT_SECONDS`` keeps proxies from closing it.

The task is followed by polling (:class:`taskcore.store.watch.TaskWatcher`), so a stream
holds no Redis connection of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError

from gateway.contracts.openapi import errors
from gateway.edge.deps import CurrentCaller, Links, Store, open_streams_of, still_allowed
from gateway.edge.errors import ApiError
from gateway.edge.responses import request_id
from gateway.routes.tasks import task_body
from gateway.tenancy.auth import Caller
from taskcore.image_urls import ImageUrls
from taskcore.records import TaskStatus
from taskcore.settings import Settings
from taskcore.store.tasks import TaskStore
from taskcore.store.watch import Glimpse, TaskWatcher

router = APIRouter(prefix="/api/v1", tags=["DashScope tasks"])

RECONNECT_MS = 1_000
_HEARTBEAT = b": keep-alive\n\n"


# One event (OpenAPI 3.1 has an event stream's schema describe each event): its name, and
# its data, one line of JSON: a task fetch's body, or a DashScope error.
_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["status", "error"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/TaskAnswer"},
                    {"$ref": "#/components/schemas/DashScopeError"},
                ]
            },
        },
    },
}
_STREAM = {
    "description": "Server-Sent Events: `event: status` with a task fetch's body as `data`, "
    "until the task is final; `event: error` with a DashScope error body if the stream fails",
    "content": {"text/event-stream": {"schema": _EVENT}},
}


@router.get(
    "/tasks/{task_id}/events",
    response_class=StreamingResponse,
    responses={200: _STREAM, **errors(401, 403, 429, 503)},
)
async def task_events(
    request: Request, task_id: str, caller: CurrentCaller, store: Store, links: Links
) -> StreamingResponse:
    """Stream the caller's task as it changes, until it is final."""
    open_streams_of(request).check(caller.tenant)  # 429 before the stream starts
    stream = _events(request, task_id, caller, store, links)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE event; orjson writes no newlines, so ``data`` is one line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _events(
    request: Request, task_id: str, caller: Caller, store: TaskStore, links: ImageUrls
) -> AsyncIterator[bytes]:
    yield f"retry: {RECONNECT_MS}\n\n".encode()
    try:
        # The slot is taken here, where the stream's end always gives it back.
        with open_streams_of(request).hold(caller.tenant):
            async for chunk in _follow(request, task_id, caller, store, links):
                yield chunk
    except ApiError as exc:  # the key was revoked, the tenant disabled, or no slot was left
        failure = {"code": exc.code, "message": exc.message}
        yield event("error", {**failure, "request_id": request_id(request)})
    except RedisError:
        failure = {"code": "ServiceUnavailable", "message": "The status store is unavailable."}
        yield event("error", {**failure, "request_id": request_id(request)})


async def _follow(
    request: Request, task_id: str, caller: Caller, store: TaskStore, links: ImageUrls
) -> AsyncIterator[bytes]:
    """The stream's events and heartbeats until the task is final or the stream's time is up;
    the caller's key is looked at again before each look at the task."""
    settings: Settings = request.app.state.settings
    watcher: TaskWatcher = request.app.state.watcher
    started = last_sent = time.monotonic()
    shown: Glimpse | None = None
    while True:
        await still_allowed(request, caller)
        seen = await watcher.glimpse(task_id, caller.tenant)
        now = time.monotonic()
        if seen != shown:
            record = None
            if seen.status is not TaskStatus.UNKNOWN:
                record = await store.get(task_id, caller.tenant)
            shown, last_sent = Glimpse.of(record), now
            body = task_body(request, task_id, record, links)
            yield event("status", {**body, "request_id": request_id(request)})
            if shown.final:
                return
        elif now - last_sent >= settings.events_heartbeat_seconds:
            yield _HEARTBEAT
            last_sent = now
        if now - started >= settings.events_max_seconds:
            return
        await asyncio.sleep(watcher.poll_seconds)
