"""The API error tree. Every error a client sees is one of these, as DashScope shapes it.

``ApiError`` (code, message, HTTP status)
├── ``InvalidParameter``      400 InvalidParameter (and the ``BadRequest.Empty*`` codes)
├── ``UnsupportedOperation``  400 UnsupportedOperation
├── ``InvalidApiKey``         401 InvalidApiKey
├── ``AccessDenied``          403 AccessDenied (and ``AccessDenied.Unpurchased``)
├── ``NotFound``              404 NotFound
├── ``Conflict``              409 Conflict
├── ``TooLarge``              413 BadRequest.TooLarge
├── ``Throttling``            429 Throttling (``.RateQuota``, ``.AllocationQuota``)
├── ``InternalError``         500 InternalError
└── ``ServiceUnavailable``    503 ServiceUnavailable (Redis unreachable; with ``Retry-After``)

One handler (:func:`gateway.edge.app.create_app`) turns each into
``{"code", "message", "request_id"}``, with the error's ``headers`` (``Retry-After``,
``X-RateLimit-*``) added to the response.
"""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """An error answered to the client with a DashScope code and HTTP status."""

    status_code = 500
    code = "InternalError"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})
        if code is not None:
            self.code = code


class InvalidParameter(ApiError):
    status_code = 400
    code = "InvalidParameter"


class UnsupportedOperation(ApiError):
    status_code = 400
    code = "UnsupportedOperation"


class InvalidApiKey(ApiError):
    status_code = 401
    code = "InvalidApiKey"

    def __init__(self, message: str = "Invalid API-key provided.") -> None:
        super().__init__(message)


class AccessDenied(ApiError):
    status_code = 403
    code = "AccessDenied"


class NotFound(ApiError):
    status_code = 404
    code = "NotFound"


class Conflict(ApiError):
    status_code = 409
    code = "Conflict"


class TooLarge(ApiError):
    status_code = 413
    code = "BadRequest.TooLarge"


class Throttling(ApiError):
    status_code = 429
    code = "Throttling"


class InternalError(ApiError):
    status_code = 500
    code = "InternalError"


class ServiceUnavailable(ApiError):
    """Redis is unreachable or not answering in time; the client may retry after ``Retry-After``."""

    status_code = 503
    code = "ServiceUnavailable"


def shown(value: object, limit: int = 60) -> str:
    """A client's value for an error message: its repr, clipped (a body may be 64 KiB)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int of over 4,300 digits, deep nesting
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."
