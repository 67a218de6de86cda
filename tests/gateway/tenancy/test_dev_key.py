"""The dev key (``SYNTHGATE_DEV_API_KEY``): registered at a gateway's start for a tenant made for
it, never brought back once revoked, never given to another tenant."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from fixtures.asgi import app_client
from fixtures.processes import running_redis
from fixtures.tenants import register_tenant

from gateway.tenancy.auth import generate_api_key
from gateway.tenancy.directory import TenantDirectory
from taskcore.settings import Settings, SettingsError


def _answer(settings: Settings, api_key: str) -> int:
    """The status of a task list with ``api_key`` from a gateway just started."""

    async def call() -> int:
        async with app_client(settings, headers={"Authorization": f"Bearer {api_key}"}) as http:
            return (await http.get("/api/v1/tasks")).status_code

    return asyncio.run(call())


def _revoke(redis_url: str, tenant: str) -> None:
    async def revoke() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            directory = TenantDirectory(client)
            for key in await directory.keys_of(tenant):
                await directory.revoke_key(key.key_id)
        finally:
            await client.aclose()

    asyncio.run(revoke())


def test_a_revoked_dev_key_stays_revoked_after_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dev_key = generate_api_key()
    with running_redis(tmp_path) as server:
        settings = Settings(redis_url=server.url, dev_api_key=dev_key, key_cache_seconds=0)
        assert _answer(settings, dev_key) == 200
        _revoke(server.url, settings.dev_tenant)
        with caplog.at_level(logging.WARNING, "synthgate.gateway"):
            assert _answer(settings, dev_key) == 401  # the restart brought it not back
    assert "revoked" in caplog.text


def test_the_dev_key_goes_to_no_tenant_that_was_not_made_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dev_key = generate_api_key()
    with running_redis(tmp_path) as server:
        own_key = register_tenant(server.url, "acme")
        settings = Settings(redis_url=server.url, dev_api_key=dev_key, dev_tenant="acme")
        with caplog.at_level(logging.WARNING, "synthgate.gateway"):
            assert _answer(settings, dev_key) == 401
            assert _answer(settings, own_key) == 200
    assert "acme" in caplog.text


@pytest.mark.parametrize("dev_key", ["dev", "sk-dev-0123456789", "sk dev key with spaces ok?!"])
def test_a_short_or_spaced_dev_key_is_refused_at_start(dev_key: str) -> None:
    with pytest.raises(SettingsError, match="SYNTHGATE_DEV_API_KEY"):
        Settings.from_env(dev_api_key=dev_key)
