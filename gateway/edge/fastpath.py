"""The task fetch, served without FastAPI's routing and dependency resolution.

``GET /api/v1/tasks/{task_id}`` is what clients poll, many times per task: it is the
gateway's most frequent request by far. FastAPI spends most of such a request on
its own machinery (matching the route list, resolving dependencies, exit stacks,
exception middleware), several times what the fetch itself costs (one HGETALL). This
plain ASGI middleware, inside the request-id and metrics middlewares, answers that
one route directly, through the same functions the FastAPI route uses (the caller's
key, the store, the body, the error replies): the answers are the same byte for byte,
and everything else goes on to FastAPI.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.edge.deps import image_urls_of, resolve_caller, store_of
from gateway.edge.failures import failure_reply
from gateway.edge.responses import reply
from gateway.routes.tasks import task_body

PREFIX = "/api/v1/tasks/"
ROUTE_PATH = PREFIX + "{task_id}"


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """Stands for the matched route in the scope, where the metrics read its ``path``."""

    path: str


_ROUTE = RouteTemplate(ROUTE_PATH)


class TaskFetchFastPath:
    """Answers ``GET /api/v1/tasks/{task_id}``; passes every other request on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not path.startswith(PREFIX)
            or "/" in path[len(PREFIX) :]
            or len(path) == len(PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE  # the metrics' route label, as FastAPI's route would set it
        request = Request(scope, receive)
        task_id = path[len(PREFIX) :]
        try:
            caller = await resolve_caller(request)
            record = await store_of(request).get(task_id, caller.tenant)
            body = task_body(request, task_id, record, image_urls_of(request))
            response = reply(request, body)
        except Exception as exc:
            response = failure_reply(request, exc)
        await response(scope, receive, send)
