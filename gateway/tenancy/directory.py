"""The tenant directory: tenants and API keys created, listed, changed and revoked in Redis.

The admin API (``gateway/routes/admin.py``) and the CLI (``synthgate/admin_commands.py``) both
call this class, so they behave alike. See :mod:`gateway.tenancy.models` for the data.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Collection, Sequence
from datetime import date
from typing import Any

import redis.asyncio as aioredis

from gateway.tenancy.auth import generate_api_key, hash_api_key
from gateway.tenancy.models import (
    DevKeyRefused,
    KeyInfo,
    Limits,
    NewKey,
    Tenant,
    TenantExists,
    UnknownKey,
    UnknownTenant,
    Webhooks,
    validate_key_id,
    validate_name,
)
from gateway.tenancy.usage import DayUsage, read_usage
from taskcore import redis_keys, scripts
from taskcore.clock import now_ms
from taskcore.webhooks.payload import new_secret

# An audit trail of every change: tenant names and key ids, never a key.
log = logging.getLogger("synthgate.tenants")


def _audited(fields: dict[str, str]) -> dict[str, str]:
    """Changed fields as the audit log shows them: a webhook URL may carry a secret in its
    path or query, so only whether it is set is written down."""
    if "webhook_url" in fields:
        fields = {**fields, "webhook_url": "(set)" if fields["webhook_url"] else "(none)"}
    return fields


def _new_key_id() -> str:
    return "k-" + secrets.token_hex(8)


class TenantDirectory:
    """Tenants and keys: every admin operation, atomic in Redis."""

    def __init__(self, client: aioredis.Redis, models: Collection[str] = ()) -> None:
        self._redis = client
        self._models = models  # the catalog's names, which a tenant's models must be among
        self._create = scripts.bind(client, "tenant_create")
        self._ensure = scripts.bind(client, "tenant_ensure")
        self._add_key = scripts.bind(client, "key_add")
        self._update = scripts.bind(client, "tenant_update")
        self._revoke = scripts.bind(client, "key_revoke")
        self._set_secret = scripts.bind(client, "webhook_secret_set")

    def _check_models(self, limits: Limits) -> None:
        if self._models:
            limits.check_models(self._models)

    def _key_args(
        self,
        name: str,
        key_id: str,
        label: str,
        api_key: str,
        limits: Limits,
        webhooks: Webhooks | None = None,
    ) -> tuple[list[str], list[str]]:
        digest = hash_api_key(api_key)
        script_keys = [
            redis_keys.tenants(),
            redis_keys.tenant(name),
            redis_keys.tenant_keys(name),
            redis_keys.api_key(digest),
            redis_keys.key_info(key_id),
        ]
        settings = {**limits.fields(), **(webhooks.fields() if webhooks else {})}
        fields = [item for pair in settings.items() for item in pair]
        return script_keys, [name, str(now_ms()), key_id, label, digest, *fields]

    async def create(
        self, name: str, limits: Limits, label: str = "default", webhooks: Webhooks | None = None
    ) -> tuple[Tenant, NewKey]:
        """A new tenant with one new key; raises :class:`TenantExists`."""
        validate_name(name)
        self._check_models(limits)
        api_key, key_id = generate_api_key(), _new_key_id()
        script_keys, args = self._key_args(name, key_id, label, api_key, limits, webhooks)
        if not await self._create(keys=script_keys, args=args):
            raise TenantExists(f"tenant {name!r} exists already")
        log.info("tenant %s created with key %s", name, key_id, extra={"tenant": name})
        return await self.get(name), NewKey(await self._key(key_id), api_key)

    async def ensure_dev(self, name: str, api_key: str) -> KeyInfo:
        """The dev tenant (made unlimited if missing; kept as it is if not) and its key.
        Raises :class:`DevKeyRefused` for a key that was revoked or is another tenant's, and
        for a tenant ``name`` that exists but was not made for a dev key."""
        validate_name(name)
        key_id = "dev-" + hash_api_key(api_key)[:8]
        script_keys, args = self._key_args(name, key_id, "dev", api_key, Limits.unlimited())
        verdict = (await self._ensure(keys=script_keys, args=args)).decode()
        if verdict == "revoked":
            raise DevKeyRefused(f"the dev API key ({key_id}) was revoked; it stays revoked")
        if verdict == "taken":
            raise DevKeyRefused(f"the dev API key ({key_id}) belongs to another tenant")
        if verdict != "ok":
            raise DevKeyRefused(
                f"tenant {name!r} exists and was not made for a dev key; it gets none "
                "(name another SYNTHGATE_DEV_TENANT)"
            )
        return await self._key(key_id)

    async def create_key(self, name: str, label: str = "") -> NewKey:
        """A new key for an existing tenant."""
        validate_name(name)
        api_key, key_id = generate_api_key(), _new_key_id()
        script_keys, args = self._key_args(name, key_id, label, api_key, Limits())
        if not await self._add_key(keys=script_keys, args=args[:5]):
            raise UnknownTenant(name)
        log.info("tenant %s has a new key %s", name, key_id, extra={"tenant": name})
        return NewKey(await self._key(key_id), api_key)

    async def revoke_key(self, key_id: str) -> KeyInfo:
        """Revoke a key (idempotent); gateways refuse it within their key cache's lifetime."""
        validate_key_id(key_id)
        if not await self._revoke(keys=[redis_keys.key_info(key_id)], args=[now_ms()]):
            raise UnknownKey(key_id)
        info = await self._key(key_id)
        log.info("key %s of tenant %s revoked", key_id, info.tenant, extra={"tenant": info.tenant})
        return info

    async def update(
        self,
        name: str,
        *,
        enabled: bool | None = None,
        webhook_url: str | None = None,
        callback_hosts: Sequence[str] | None = None,
        **changes: Any,
    ) -> Tenant:
        """Change some limits (named as :class:`Limits`' fields), the webhook settings, and/or
        switch the tenant on or off. Only the changed fields are written, so concurrent
        updates of different fields both hold."""
        current = await self.get(name)
        limits = dataclasses.replace(current.limits, **changes)  # validates the result
        if "models" in changes:
            self._check_models(limits)
        fields = {key: value for key, value in limits.fields().items() if key in changes}
        hooks = Webhooks(
            current.webhooks.url if webhook_url is None else webhook_url.strip(),
            current.webhooks.callback_hosts if callback_hosts is None else tuple(callback_hosts),
        )
        if webhook_url is not None:
            fields["webhook_url"] = hooks.fields()["webhook_url"]
        if callback_hosts is not None:
            fields["callback_hosts"] = hooks.fields()["callback_hosts"]
        if enabled is not None:
            fields["enabled"] = "1" if enabled else "0"
        args = [str(now_ms()), *[item for pair in fields.items() for item in pair]]
        if not await self._update(keys=[redis_keys.tenant(name)], args=args):
            raise UnknownTenant(name)
        log.info("tenant %s updated: %s", name, _audited(fields), extra={"tenant": name})
        return await self.get(name)

    async def new_webhook_secret(self, name: str) -> str:
        """A new secret signing the tenant's webhooks, replacing the old one at once; it is
        returned only now."""
        validate_name(name)
        secret = new_secret()
        script_keys = [redis_keys.tenant(name), redis_keys.tenant_webhook_secret(name)]
        if not await self._set_secret(keys=script_keys, args=[secret]):
            raise UnknownTenant(name)
        log.info("tenant %s has a new webhook secret", name, extra={"tenant": name})
        return secret

    async def get(self, name: str) -> Tenant:
        """Tenant ``name``: :class:`AccountError` for a name no tenant can have,
        :class:`UnknownTenant` for one no tenant has."""
        validate_name(name)
        data: dict[bytes, bytes] = await self._redis.hgetall(redis_keys.tenant(name))  # type: ignore[assignment]
        if not data:
            raise UnknownTenant(name)
        return Tenant.from_hash(name, data)

    async def tenants(self) -> list[Tenant]:
        """Every tenant, by name."""
        names = sorted(n.decode() for n in await self._redis.smembers(redis_keys.tenants()))  # type: ignore[union-attr]
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(redis_keys.tenant(name))
            rows = await pipe.execute()
        return [Tenant.from_hash(n, row) for n, row in zip(names, rows, strict=True) if row]

    async def keys_of(self, name: str) -> list[KeyInfo]:
        """The tenant's keys (revoked ones too), oldest first."""
        await self.get(name)
        ids = sorted(i.decode() for i in await self._redis.smembers(redis_keys.tenant_keys(name)))  # type: ignore[union-attr]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in ids:
                pipe.hgetall(redis_keys.key_info(key_id))
            rows = await pipe.execute()
        found = [KeyInfo.from_hash(i, row) for i, row in zip(ids, rows, strict=True) if row]
        return sorted(found, key=lambda info: (info.created_ms, info.key_id))

    async def usage(self, name: str, first: date, last: date) -> list[DayUsage]:
        """The tenant's counters for each UTC day from ``first`` to ``last``."""
        await self.get(name)
        return await read_usage(self._redis, name, first, last)

    async def active_tasks(self, name: str) -> int:
        """The tenant's unfinished tasks (what ``max_concurrent`` limits)."""
        validate_name(name)
        return int(await self._redis.zcard(redis_keys.tenant_active(name)))

    async def _key(self, key_id: str) -> KeyInfo:
        data: dict[bytes, bytes] = await self._redis.hgetall(redis_keys.key_info(key_id))  # type: ignore[assignment]
        if not data:
            raise UnknownKey(key_id)
        return KeyInfo.from_hash(key_id, data)
