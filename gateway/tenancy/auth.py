"""API keys → callers: keys are stored only as SHA-256 hashes, looked up with a short cache.

The lookup is a hash-table read by the key's SHA-256, never a comparison of the key
itself, so its timing says nothing about a guessed key. Each gateway caches a
lookup (the key's tenant and whether the tenant is enabled) for ``cache_seconds``:
a revoked key or a disabled tenant is refused by every replica within that time,
and by every submit at once (the submit script checks both again in Redis).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from taskcore import redis_keys, scripts

KEY_PREFIX = "sk-"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the tenant an API key belongs to."""

    tenant: str
    key_id: str
    key_hash: str
    enabled: bool = True


def generate_api_key() -> str:
    """A new random, high-entropy API key (shown once, never stored in clear)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> str:
    # Keys are 256-bit random strings, so a fast unsalted hash cannot be brute-forced.
    return hashlib.sha256(api_key.encode()).hexdigest()


class KeyDirectory:
    """API key → caller, with a positive/negative cache of ``cache_seconds``."""

    def __init__(self, client: aioredis.Redis, cache_seconds: float = 5.0) -> None:
        self._lookup = scripts.bind(client, "key_lookup")
        self._cache_seconds = cache_seconds
        # Process-level cache: key hash → (expires at, caller or None).
        self._cache: dict[str, tuple[float, Caller | None]] = {}

    async def lookup(self, api_key: str) -> Caller | None:
        """The caller ``api_key`` stands for, or None for an unknown or revoked key."""
        digest = hash_api_key(api_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        row = await self._lookup(
            keys=[redis_keys.api_key(digest)], args=[time.time_ns() // 1_000_000]
        )
        caller = None
        if row:
            tenant, key_id, enabled = (part.decode() for part in row)
            caller = Caller(tenant, key_id, digest, enabled == "1")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self._cache_seconds, caller)
        return caller


async def allowed_models(client: aioredis.Redis, tenant: str, names: list[str]) -> list[str]:
    """Those of ``names`` the tenant may call (its ``models`` limit; empty: every model)."""
    raw = await client.hget(redis_keys.tenant(tenant), "models")
    text = raw.decode() if isinstance(raw, bytes) else (raw or "")
    allowed = {name for name in text.split(",") if name}
    return [name for name in names if not allowed or name in allowed]
