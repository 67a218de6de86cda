"""The tenant directory's audit log: every change named, no secret written down."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer
from fixtures.tenants import register_tenant

from gateway.tenancy.directory import TenantDirectory

HOOK = "https://hooks.example.com/in/T0KEN-s3cr3t-in-the-path?sig=also-secret"


def test_a_webhook_url_is_never_logged(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    register_tenant(redis_server.url, "audited")

    async def update() -> None:
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            await TenantDirectory(client).update("audited", webhook_url=HOOK, rpm=7)
        finally:
            await client.aclose()

    with caplog.at_level(logging.INFO, "synthgate.tenants"):
        asyncio.run(update())
    assert (
        "audited updated" in caplog.text and "rpm" in caplog.text and "webhook_url" in caplog.text
    )
    assert "s3cr3t" not in caplog.text and "also-secret" not in caplog.text
