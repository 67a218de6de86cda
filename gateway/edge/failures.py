"""How an exception in a request becomes a DashScope-shaped answer.

The app's exception handlers and the fast fetch path (:mod:`gateway.edge.fastpath`) both
answer through :func:`failure_reply`, so an error looks the same whichever served it.
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.edge.connections import UNAVAILABLE_ERRORS, unavailable
from gateway.edge.errors import ApiError
from gateway.edge.responses import JsonResponse, reply
from gateway.operations.metrics import record_rejection
from taskcore.logs import context_value

log = logging.getLogger("synthgate.gateway")

_HTTP_CODES = {404: "NotFound", 405: "UnsupportedOperation", 413: "BadRequest.TooLarge"}


def _api_error_reply(request: Request, exc: ApiError) -> JsonResponse:
    if exc.status_code in (403, 429):  # limits, quotas and access rules, per tenant
        record_rejection(context_value("tenant"), exc.code)
    response = reply(request, {"code": exc.code, "message": exc.message}, exc.status_code)
    response.headers.update(exc.headers)  # Retry-After, X-RateLimit-*
    return response


def failure_reply(request: Request, exc: Exception) -> JsonResponse:
    """The answer to ``exc`` raised while serving ``request``."""
    if isinstance(exc, ApiError):
        return _api_error_reply(request, exc)
    if isinstance(exc, StarletteHTTPException):
        code = _HTTP_CODES.get(
            exc.status_code, "BadRequest" if exc.status_code < 500 else "InternalError"
        )
        return reply(request, {"code": code, "message": str(exc.detail)}, exc.status_code)
    if isinstance(exc, RequestValidationError):
        return reply(request, {"code": "InvalidParameter", "message": str(exc.errors())}, 400)
    if isinstance(exc, UNAVAILABLE_ERRORS):
        # Redis down, timing out, full or read-only: 503 with Retry-After, never a 500.
        log.warning("Redis unavailable: %s: %s", type(exc).__name__, exc)
        return _api_error_reply(request, unavailable(exc))
    log.exception("unhandled error", exc_info=exc)
    return reply(request, {"code": "InternalError", "message": "An internal error occurred."}, 500)
