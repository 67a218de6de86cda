"""Request bodies: a size limit on every route, and strict JSON decoding.

:class:`BodyLimitMiddleware` reads a request's body before any route sees it, counting
bytes as they arrive (so a chunked body without ``Content-Length`` is bounded too), and
answers 413 ``BadRequest.TooLarge`` past ``SYNTHGATE_MAX_BODY_BYTES``. :func:`decode_json`
accepts exactly one UTF-8 JSON document of plain values: no ``NaN``/``Infinity``, no
duplicate keys, no lone surrogates, no deep nesting; anything else is 400
``InvalidParameter`` with a message that says what is wrong.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.edge.errors import InvalidParameter, TooLarge, shown
from gateway.edge.responses import JsonResponse

# DashScope's bodies are three levels deep; nothing legitimate comes near this.
MAX_DEPTH = 32


class BodyLimitMiddleware:
    """Reads each body up to ``limit`` bytes, then hands it on; larger ones get 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        if _declared_too_large(scope, self.limit):
            await self._too_large(scope, receive, send)  # before reading: no 100-continue
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body was complete
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {
            "code": TooLarge.code,
            "message": f"The request body is larger than {self.limit} bytes.",
            "request_id": scope.get("synthgate.request_id", ""),
        }
        # The rest of the body is never read: the server closes the connection after this.
        response = JsonResponse(body, status_code=TooLarge.status_code)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _declared_too_large(scope: Scope, limit: int) -> bool:
    declared = _header(scope, b"content-length")
    if declared is None:
        return False
    return not declared.isdigit() or len(declared) > 18 or int(declared) > limit


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    return length not in (None, b"0") or _header(scope, b"transfer-encoding") is not None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the whole body once, then passes on to the server's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # e.g. http.disconnect, for streaming responses
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def decode_json(body: bytes, content_type: str = "") -> object:
    """The JSON document in ``body``, or :class:`InvalidParameter` saying what is wrong."""
    if not body.strip():
        raise InvalidParameter("The request body is empty; send a JSON object.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidParameter("The request body is not valid UTF-8 text.") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_float=_float,
        )
    except RecursionError:
        raise InvalidParameter(_too_deep()) from None
    except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
        hint = f" (Content-Type {content_type})" if _not_json_type(content_type) else ""
        raise InvalidParameter(f"The request body is not valid JSON{hint}: {exc}.") from None
    _check_values(value)
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidParameter(f"The request body has the key {shown(key)} twice.")
            seen.add(key)
    return result


def _constant(name: str) -> float:
    raise InvalidParameter(f"The request body has {name}, which JSON does not allow.")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidParameter(f"The number {shown(text)} is out of range.")
    return value


def _check_values(root: object) -> None:
    """No lone surrogates (they cannot be stored as UTF-8) and no deep nesting."""
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidParameter(_too_deep())
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key)
                stack.append((item, depth + 1))


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParameter("The request body has a string with a lone surrogate.") from None


def _too_deep() -> str:
    return f"The request body is nested more than {MAX_DEPTH} levels deep."


def _not_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return bool(media) and media != "application/json" and not media.endswith("+json")
