"""Response helpers: orjson bodies, and the ``request_id`` every response carries."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def request_id(request: Request) -> str:
    rid: str = request.scope.get("synthgate.request_id") or str(uuid.uuid4())
    return rid


def reply(request: Request, payload: dict[str, Any], status_code: int = 200) -> JsonResponse:
    """A JSON answer with the request's ``request_id`` added."""
    payload["request_id"] = request_id(request)
    return JsonResponse(payload, status_code=status_code)


class RequestIdMiddleware:
    """Gives each HTTP request an id, echoed in ``X-Request-Id`` (plain ASGI, cheap)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = str(uuid.uuid4())
        scope["synthgate.request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)
