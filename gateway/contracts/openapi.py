"""What the OpenAPI schema says that FastAPI cannot infer.

- The request bodies the routes read themselves (see :mod:`gateway.edge.bodies`), so that
  every bad input gets a DashScope error: the submit's (:func:`submit_openapi`) and the
  OpenAI images call's (:func:`images_openapi`). They describe the body for clients and for
  the fuzz tests (schemathesis generates requests from them); fields added by other
  features stay allowed: the validator, not the schema, is the authority.
- The errors each route really answers (:func:`errors`), DashScope-shaped (OpenAI-shaped
  on ``/v1/``), with ``Retry-After`` where it comes.
- :func:`documented_schema`: FastAPI's schema finished: the ``ApiKey`` and ``AdminToken``
  Bearer schemes on the routes that need them, and without the 422 FastAPI adds for
  validation errors (the gateway answers those 400 ``InvalidParameter``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from gateway.contracts.dashscope import MAX_SEED
from gateway.contracts.schemas import DashScopeError, OpenAIError

# Which routes need which Bearer token, by path prefix.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "ApiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant's API key (sk-...): Authorization: Bearer <key>.",
    },
    "AdminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "SYNTHGATE_ADMIN_TOKEN: Authorization: Bearer <token>.",
    },
}
_SECURED = (("/api/v1/", "ApiKey"), ("/v1/", "ApiKey"), ("/admin/v1/", "AdminToken"))

_ERRORS = {
    400: "InvalidParameter, BadRequest.EmptyInput / EmptyParameters / EmptyModel, "
    "UnsupportedOperation: a bad request, refused before anything is done",
    401: "InvalidApiKey: no key, an unknown or revoked one",
    403: "AccessDenied: the tenant is disabled, the call is not allowed; "
    "AccessDenied.Unpurchased: a model the tenant may not use",
    404: "NotFound",
    409: "Conflict, or an Idempotency-Key reused with another request",
    413: "BadRequest.TooLarge: a body over SYNTHGATE_MAX_BODY_BYTES (always DashScope-shaped)",
    429: "Throttling, Throttling.RateQuota, Throttling.AllocationQuota: a limit of the "
    "tenant; Retry-After says when to try again",
    500: "The task failed (its code and message)",
    503: "ServiceUnavailable: Redis is unreachable; Retry-After says when to try again",
    504: "The task was not finished within SYNTHGATE_OPENAI_WAIT_SECONDS; follow it "
    "with GET /api/v1/tasks/{task_id} (X-Synthgate-Task-Id)",
}
# The groups of the docs pages, in their order (each router names its own).
TAGS = [
    {
        "name": "DashScope tasks",
        "description": "DashScope's task API: submit, fetch, cancel, "
        "list; task events (SSE) and the models, synthgate's additions",
    },
    {"name": "OpenAI images", "description": "OpenAI's images API, synchronous"},
    {"name": "Files", "description": "Images in local storage, behind signed, expiring URLs"},
    {"name": "Operations", "description": "Liveness, readiness and Prometheus metrics"},
    {"name": "Admin", "description": "Tenants, keys, usage and capacity (SYNTHGATE_ADMIN_TOKEN)"},
]
# Headers of the answers, in components.headers: every answer carries X-Request-Id.
HEADERS: dict[str, dict[str, Any]] = {
    "RequestId": {
        "description": "the request's id, the body's request_id (the gateway's own)",
        "schema": {"type": "string"},
    },
    "RetryAfter": {"description": "seconds to wait", "schema": {"type": "integer"}},
    "RateLimitLimit": {
        "description": "the limit that refused the call (a per-minute, concurrency or daily one)",
        "schema": {"type": "integer"},
    },
    "RateLimitRemaining": {"description": "what is left of it", "schema": {"type": "integer"}},
    "RateLimitReset": {
        "description": "seconds until it frees up again",
        "schema": {"type": "integer"},
    },
}
_RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
_RATE_LIMIT = {
    **_RETRY_AFTER,
    "X-RateLimit-Limit": {"$ref": "#/components/headers/RateLimitLimit"},
    "X-RateLimit-Remaining": {"$ref": "#/components/headers/RateLimitRemaining"},
    "X-RateLimit-Reset": {"$ref": "#/components/headers/RateLimitReset"},
}


def errors(*statuses: int, openai: bool = False) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route's error answers: DashScope's ``{"code", "message",
    "request_id"}``, or OpenAI's ``{"error": {...}}`` with ``openai`` (but 413, answered
    before any route)."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model: type[BaseModel] = OpenAIError if openai and status != 413 else DashScopeError
        answer: dict[str, Any] = {"model": model, "description": _ERRORS[status]}
        if status in (429, 503):
            answer["headers"] = _RATE_LIMIT if status == 429 else _RETRY_AFTER
        answers[status] = answer
    return answers


def documented_schema(app: FastAPI) -> dict[str, Any]:
    """``app``'s OpenAPI schema, made once: FastAPI's, with the security schemes on the
    routes that need them and no phantom 422."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
            tags=TAGS,
        )
        app.openapi_schema = _finish(schema)
    return app.openapi_schema


def _finish(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        scheme = next((name for prefix, name in _SECURED if path.startswith(prefix)), None)
        for operation in operations.values():
            operation["responses"].pop("422", None)
            if scheme is not None:
                operation["security"] = [{scheme: []}]
            for response in operation["responses"].values():
                headers = response.setdefault("headers", {})
                headers["X-Request-Id"] = {"$ref": "#/components/headers/RequestId"}
    components = schema.setdefault("components", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.get("schemas", {}).pop(unused, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    components["headers"] = HEADERS
    return schema


def _integer(low: int, high: int, description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "description": description}


def submit_openapi() -> dict[str, Any]:
    """``openapi_extra`` of the submit route: the ``X-DashScope-Async`` header and the body."""
    parameters = {
        "type": "object",
        "properties": {
            "size": {
                "type": "string",
                "pattern": r"^[0-9]{3,4}\*[0-9]{3,4}$",
                "description": "W*H; each model's sizes: GET /api/v1/models",
            },
            "n": _integer(1, 4, "images; default: the model's (GET /api/v1/models)"),
            "steps": _integer(1, 500, "denoising steps (Stable Diffusion), default 50"),
            "scale": {
                "type": "number",
                "minimum": 1,
                "maximum": 15,
                "description": "guidance scale (Stable Diffusion), default 10",
            },
            "seed": _integer(0, MAX_SEED, "random when absent; image i uses seed + i"),
        },
    }
    body = {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "description": "a model of GET /api/v1/models"},
            "input": {
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": {"type": "string", "minLength": 1},
                    "negative_prompt": {"type": "string"},
                },
            },
            "parameters": parameters,
        },
    }
    header = {
        "name": "X-DashScope-Async",
        "in": "header",
        "required": False,
        "description": "enable: answer at once with the task (PENDING); left out: wait for "
        "the result, for the models DashScope answers synchronously (GET /api/v1/models: sync)",
        "schema": {"type": "string", "enum": ["enable"]},
    }
    return {
        "parameters": [header],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
    }


def images_openapi() -> dict[str, Any]:
    """``openapi_extra`` of ``POST /v1/images/generations``: OpenAI's body, and synthgate's own
    fields (gateway/contracts/openai_mapping.py)."""
    ignored = {"type": "string", "description": "accepted and ignored"}
    properties: dict[str, Any] = {
        "model": {"type": "string", "description": "default SYNTHGATE_OPENAI_DEFAULT_MODEL"},
        "prompt": {"type": "string", "minLength": 1},
        "n": _integer(1, 4, "images, default 1"),
        "size": {
            "type": "string",
            "pattern": r"^[0-9]{3,4}x[0-9]{3,4}$|^auto$",
            "description": "WxH, one of the model's sizes (GET /api/v1/models); auto: default",
        },
        "response_format": {"type": "string", "enum": ["url", "b64_json"]},
        "output_format": {"type": "string", "enum": ["png"]},
        "quality": ignored,
        "style": ignored,
        "user": ignored,
        "negative_prompt": {"type": "string"},
        "seed": _integer(0, MAX_SEED, "random when absent; image i uses seed + i"),
        "steps": _integer(1, 500, "denoising steps (Stable Diffusion)"),
        "scale": {"type": "number", "minimum": 1, "maximum": 15},
        "priority": {"type": "string", "enum": ["interactive", "normal", "batch"]},
    }
    body = {"type": "object", "required": ["prompt"], "properties": properties}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": body}}}}
