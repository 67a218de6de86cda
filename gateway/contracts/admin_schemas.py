"""The admin API's answers (``/admin/v1``), as models for the OpenAPI schema; see
:mod:`gateway.contracts.schemas` for why the routes do not build them. Where an answer is a
dataclass of the code as it is (a key, a pool, an account), the schema is that dataclass."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from gateway.operations.pool_stats import AccountStats, PoolStats
from gateway.tenancy.models import KeyInfo


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


@dataclass(frozen=True, slots=True, kw_only=True)
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


class PoolList(BaseModel):
    pools: list[PoolStats]
    request_id: str


class AccountList(BaseModel):
    accounts: list[AccountStats]
    request_id: str
