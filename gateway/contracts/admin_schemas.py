"""The admin API's answers (``/admin/v1``), as models for the OpenAPI schema; see
:mod:`gateway.contracts.schemas` for why the routes do not build them."""

from __future__ import annotations

from pydantic import BaseModel


class TenantInfo(BaseModel):
    name: str
    enabled: bool
    rpm: int
    max_concurrent: int
    daily_images: int
    models: list[str]
    weight: float
    webhook_url: str
    callback_hosts: list[str]
    created_ms: int
    updated_ms: int


class KeyInfo(BaseModel):
    """An API key as listed: never the key itself."""

    key_id: str
    tenant: str
    label: str
    created_ms: int
    last_used_ms: int | None = None
    revoked_ms: int | None = None


class NewKeyInfo(KeyInfo):
    """A key just made: the only answer that carries ``api_key``."""

    api_key: str


class TenantCreated(BaseModel):
    tenant: TenantInfo
    key: NewKeyInfo
    webhook_secret: str
    request_id: str


class TenantAnswer(BaseModel):
    tenant: TenantInfo
    request_id: str


class TenantList(BaseModel):
    tenants: list[TenantInfo]
    request_id: str


class TenantDetail(BaseModel):
    tenant: TenantInfo
    active_tasks: int
    keys: list[KeyInfo]
    request_id: str


class WebhookSecretAnswer(BaseModel):
    tenant: str
    webhook_secret: str
    request_id: str


class KeyCreated(BaseModel):
    key: NewKeyInfo
    request_id: str


class KeyAnswer(BaseModel):
    key: KeyInfo
    request_id: str


class KeyList(BaseModel):
    keys: list[KeyInfo]
    request_id: str


class DayUsage(BaseModel):
    date: str
    tasks: int
    images: int
    images_succeeded: int
    images_failed: int
    tasks_succeeded: int
    tasks_failed: int
    tasks_canceled: int
    rejected_rate: int
    rejected_concurrency: int
    rejected_daily: int
    rejected_model: int


class UsageAnswer(BaseModel):
    tenant: str
    usage: list[DayUsage]
    request_id: str


class PoolInfo(BaseModel):
    pool: str
    depth: int
    oldest_age_seconds: float
    live_workers: int


class PoolList(BaseModel):
    pools: list[PoolInfo]
    request_id: str


class AccountInfo(BaseModel):
    account: str
    running: dict[str, int]
    max_running: dict[str, int]
    waiting: int
    resting_seconds: float


class AccountList(BaseModel):
    accounts: list[AccountInfo]
    request_id: str
