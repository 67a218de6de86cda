"""Tenants' API keys: stored only as SHA-256 hashes, looked up with a short in-process cache."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway import keys

KEY_PREFIX = "sk-"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the tenant an API key belongs to."""

    tenant: str
    key_id: str


def generate_api_key() -> str:
    """A new random, high-entropy API key (shown once, never stored in clear)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    # Keys are 256-bit random strings, so a fast unsalted hash cannot be brute-forced.
    return hashlib.sha256(api_key.encode()).hexdigest()


class KeyDirectory:
    """API key → tenant, with a positive/negative cache of ``cache_seconds``."""

    def __init__(self, client: aioredis.Redis, cache_seconds: float = 5.0) -> None:
        self._redis = client
        self._cache_seconds = cache_seconds
        # Process-level cache: key hash → (expires at, caller or None).
        self._cache: dict[str, tuple[float, Caller | None]] = {}

    async def register(self, tenant: str, api_key: str, key_id: str | None = None) -> Caller:
        """Give ``tenant`` this key (idempotent)."""
        digest = hash_api_key(api_key)
        caller = Caller(tenant=tenant, key_id=key_id or digest[:12])
        await self._redis.hset(
            keys.api_key(digest), mapping={"tenant": tenant, "key_id": caller.key_id}
        )
        self._cache.pop(digest, None)
        return caller

    async def lookup(self, api_key: str) -> Caller | None:
        digest = hash_api_key(api_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        tenant, key_id = await self._redis.hmget(keys.api_key(digest), ["tenant", "key_id"])
        caller = Caller(tenant=_text(tenant), key_id=_text(key_id)) if tenant else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._cache_seconds, caller)
        return caller


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
