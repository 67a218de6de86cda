"""The gateway's API key cache: bounded, and no Redis call for a key that cannot exist."""

from __future__ import annotations

import asyncio
import secrets

import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer, free_port
from fixtures.tenants import register_tenant
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.tenancy.auth import KeyDirectory, hash_api_key
from taskcore import redis_keys


@pytest.mark.parametrize(
    "api_key", ["", "x", "sk-short", "sk-" + "a" * 20, "sk-" + "a" * 300, "sk- " + "a" * 40]
)
def test_a_malformed_key_is_refused_without_asking_redis(api_key: str) -> None:
    async def lookup() -> object:
        # Nothing listens there: a key that reached Redis would raise ConnectionError.
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        try:
            return await KeyDirectory(client, cache_seconds=60).lookup(api_key)
        finally:
            await client.aclose()

    assert asyncio.run(lookup()) is None


def test_a_well_formed_key_is_looked_up() -> None:
    async def lookup() -> object:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        try:
            return await KeyDirectory(client, cache_seconds=60).lookup("sk-" + "a" * 43)
        finally:
            await client.aclose()

    with pytest.raises(RedisConnectionError):
        asyncio.run(lookup())


def test_bogus_keys_never_push_a_live_key_out_of_the_cache(redis_server: RedisServer) -> None:
    api_key = register_tenant(redis_server.url, "t-" + secrets.token_hex(4))

    async def flood() -> object:
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            keys = KeyDirectory(client, cache_seconds=60)
            assert await keys.lookup(api_key) is not None
            for _ in range(12_000):  # well formed, unknown: each one a lookup in Redis
                assert await keys.lookup("sk-" + secrets.token_urlsafe(32)) is None
            # Gone from Redis: only the cache still knows it.
            await client.delete(redis_keys.api_key(hash_api_key(api_key)))
            return await keys.lookup(api_key)
        finally:
            await client.aclose()

    assert asyncio.run(flood()) is not None
