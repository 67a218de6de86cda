"""The admin API, ``/admin/v1``: tenants, their API keys, and their usage per day.

Mounted only when ``SYNTHGATE_ADMIN_TOKEN`` is set (without it every admin path is
404, as if it did not exist). Each request needs ``Authorization: Bearer <token>``,
compared in constant time; a missing or wrong token is 401 ``InvalidApiKey``. The
only responses that carry an API key or a webhook secret are the ones that create it.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.contracts.admin_schemas import (
    KeyAnswer,
    KeyCreated,
    KeyList,
    TenantAnswer,
    TenantCreated,
    TenantDetail,
    TenantList,
    UsageAnswer,
    WebhookSecretAnswer,
)
from gateway.contracts.openapi import errors
from gateway.edge.errors import Conflict, InvalidApiKey, InvalidParameter, NotFound
from gateway.edge.responses import JsonResponse, reply
from gateway.tenancy.directory import TenantDirectory
from gateway.tenancy.models import (
    DEFAULT_DAILY_IMAGES,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_RPM,
    AccountError,
    Limits,
    TenantExists,
    UnknownKey,
    UnknownTenant,
    Webhooks,
)
from gateway.tenancy.usage import RETENTION_DAYS
from taskcore.settings import Settings


def require_admin(request: Request) -> None:
    """Every admin route's dependency: the configured token, or 401 ``InvalidApiKey``."""
    settings: Settings = request.app.state.settings
    expected = settings.admin_token.get_secret_value().encode()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = token.strip().encode()
    if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(given, expected):
        raise InvalidApiKey("Invalid admin token.")


def _directory(request: Request) -> TenantDirectory:
    directory: TenantDirectory = request.app.state.directory
    return directory


Directory = Annotated[TenantDirectory, Depends(_directory)]

router = APIRouter(prefix="/admin/v1", tags=["Admin"], dependencies=[Depends(require_admin)])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantCreate(_Body):
    name: str
    rpm: int = DEFAULT_RPM
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    daily_images: int = DEFAULT_DAILY_IMAGES
    models: list[str] = Field(default_factory=list)
    weight: float = 1.0
    key_label: str = Field(default="default", max_length=200)
    webhook_url: str = Field(default="", max_length=2048)
    callback_hosts: list[str] = Field(default_factory=list)


class TenantUpdate(_Body):
    rpm: int | None = None
    max_concurrent: int | None = None
    daily_images: int | None = None
    models: list[str] | None = None
    weight: float | None = None
    enabled: bool | None = None
    webhook_url: str | None = Field(default=None, max_length=2048)
    callback_hosts: list[str] | None = None


class KeyCreate(_Body):
    label: str = Field(default="", max_length=200)


@asynccontextmanager
async def _account_errors() -> AsyncIterator[None]:
    """The directory's exceptions as API errors."""
    try:
        yield
    except AccountError as exc:
        raise InvalidParameter(str(exc)) from None
    except UnknownTenant as exc:
        raise NotFound(f"There is no tenant '{exc.args[0]}'.") from None
    except UnknownKey as exc:
        raise NotFound(f"There is no API key '{exc.args[0]}'.") from None
    except TenantExists as exc:
        raise Conflict(str(exc)) from None


@router.post(
    "/tenants",
    status_code=201,
    response_model=TenantCreated,
    responses=errors(400, 401, 409, 413, 503),
)
async def create_tenant(request: Request, body: TenantCreate, directory: Directory) -> JsonResponse:
    async with _account_errors():
        limits = Limits(
            body.rpm, body.max_concurrent, body.daily_images, tuple(body.models), body.weight
        )
        webhooks = Webhooks(body.webhook_url.strip(), tuple(body.callback_hosts))
        tenant, key = await directory.create(body.name, limits, body.key_label, webhooks)
        secret = await directory.new_webhook_secret(body.name)
    created = {**key.info.to_json(), "api_key": key.api_key}
    answer = {"tenant": tenant.to_json(), "key": created, "webhook_secret": secret}
    return reply(request, answer, 201)


@router.get("/tenants", response_model=TenantList, responses=errors(401, 503))
async def list_tenants(request: Request, directory: Directory) -> JsonResponse:
    tenants = await directory.tenants()
    return reply(request, {"tenants": [tenant.to_json() for tenant in tenants]})


@router.get("/tenants/{name}", response_model=TenantDetail, responses=errors(400, 401, 404, 503))
async def show_tenant(request: Request, name: str, directory: Directory) -> JsonResponse:
    async with _account_errors():
        tenant = await directory.get(name)
        keys = await directory.keys_of(name)
    return reply(
        request,
        {
            "tenant": tenant.to_json(),
            "active_tasks": await directory.active_tasks(name),
            "keys": [key.to_json() for key in keys],
        },
    )


@router.patch(
    "/tenants/{name}", response_model=TenantAnswer, responses=errors(400, 401, 404, 413, 503)
)
async def update_tenant(
    request: Request, name: str, body: TenantUpdate, directory: Directory
) -> JsonResponse:
    changes: dict[str, Any] = body.model_dump(exclude_none=True, exclude={"enabled"})
    if "models" in changes:
        changes["models"] = tuple(changes["models"])
    async with _account_errors():
        tenant = await directory.update(name, enabled=body.enabled, **changes)
    return reply(request, {"tenant": tenant.to_json()})


@router.post(
    "/tenants/{name}/disable", response_model=TenantAnswer, responses=errors(400, 401, 404, 503)
)
async def disable_tenant(request: Request, name: str, directory: Directory) -> JsonResponse:
    async with _account_errors():
        tenant = await directory.update(name, enabled=False)
    return reply(request, {"tenant": tenant.to_json()})


@router.post(
    "/tenants/{name}/enable", response_model=TenantAnswer, responses=errors(400, 401, 404, 503)
)
async def enable_tenant(request: Request, name: str, directory: Directory) -> JsonResponse:
    async with _account_errors():
        tenant = await directory.update(name, enabled=True)
    return reply(request, {"tenant": tenant.to_json()})


@router.post(
    "/tenants/{name}/webhook-secret",
    status_code=201,
    response_model=WebhookSecretAnswer,
    responses=errors(400, 401, 404, 503),
)
async def new_webhook_secret(request: Request, name: str, directory: Directory) -> JsonResponse:
    """A new secret signing the tenant's webhooks; the old one stops at once."""
    async with _account_errors():
        secret = await directory.new_webhook_secret(name)
    return reply(request, {"tenant": name, "webhook_secret": secret}, 201)


@router.post(
    "/tenants/{name}/keys",
    status_code=201,
    response_model=KeyCreated,
    responses=errors(400, 401, 404, 413, 503),
)
async def create_key(
    request: Request, name: str, directory: Directory, body: KeyCreate | None = None
) -> JsonResponse:
    async with _account_errors():
        key = await directory.create_key(name, body.label if body else "")
    return reply(request, {"key": {**key.info.to_json(), "api_key": key.api_key}}, 201)


@router.get("/tenants/{name}/keys", response_model=KeyList, responses=errors(400, 401, 404, 503))
async def list_keys(request: Request, name: str, directory: Directory) -> JsonResponse:
    async with _account_errors():
        keys = await directory.keys_of(name)
    return reply(request, {"keys": [key.to_json() for key in keys]})


@router.post("/keys/{key_id}/revoke", response_model=KeyAnswer, responses=errors(401, 404, 503))
async def revoke_key(request: Request, key_id: str, directory: Directory) -> JsonResponse:
    async with _account_errors():
        key = await directory.revoke_key(key_id)
    return reply(request, {"key": key.to_json()})


@router.get(
    "/tenants/{name}/usage", response_model=UsageAnswer, responses=errors(400, 401, 404, 503)
)
async def usage(
    request: Request,
    name: str,
    directory: Directory,
    start: str | None = None,
    end: str | None = None,
) -> JsonResponse:
    """Counters per UTC day from ``start`` to ``end`` (``YYYY-MM-DD``; default: today)."""
    today = datetime.now(UTC).date()
    first, last = _day("start", start, today), _day("end", end, today)
    if first > last or last - first > timedelta(days=RETENTION_DAYS):
        raise InvalidParameter(f"Give start <= end, at most {RETENTION_DAYS} days apart.")
    async with _account_errors():
        days = await directory.usage(name, first, last)
    return reply(request, {"tenant": name, "usage": [day.to_json() for day in days]})


def _day(name: str, value: str | None, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(f"Parameter '{name}' must be a date like 2024-01-31.") from None
