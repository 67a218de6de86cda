"""API keys → callers: keys are stored only as SHA-256 hashes, looked up with a short cache.

The lookup is a hash-table read by the key's SHA-256, never a comparison of the key
itself, so its timing says nothing about a guessed key. A key that cannot be one (not 32
to 256 visible ASCII characters, :data:`taskcore.settings.API_KEY_FORM`) is refused
without asking Redis. Each gateway caches a lookup (the key's tenant and whether the
tenant is enabled) for ``cache_seconds``: a revoked key or a disabled tenant is refused by
every replica within that time, and by every submit at once (the submit script checks both
again in Redis). The cache is two bounded LRUs, one of known keys and a smaller one of
unknown keys, so a flood of bogus keys never pushes a live key out.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import redis.asyncio as aioredis

from taskcore import redis_keys, scripts
from taskcore.settings import API_KEY_FORM

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


def well_formed(api_key: str) -> bool:
    """Whether ``api_key`` has the form of a key (any key synthgate makes or accepts)."""
    return API_KEY_FORM.fullmatch(api_key) is not None


class _Lru:
    """A bounded cache, least recently used out first (process-level, explicit about it)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[float, Caller | None]] = OrderedDict()

    def get(self, digest: str, now: float) -> tuple[float, Caller | None] | None:
        entry = self._entries.get(digest)
        if entry is None or entry[0] <= now:
            return None
        self._entries.move_to_end(digest)
        return entry

    def put(self, digest: str, entry: tuple[float, Caller | None]) -> None:
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def pop(self, digest: str) -> None:
        self._entries.pop(digest, None)


KNOWN_KEYS_CACHED = 10_000
UNKNOWN_KEYS_CACHED = 1_000


class KeyDirectory:
    """API key → caller, with a positive/negative cache of ``cache_seconds``."""

    def __init__(self, client: aioredis.Redis, cache_seconds: float = 5.0) -> None:
        self._lookup = scripts.bind(client, "key_lookup")
        self._cache_seconds = cache_seconds
        self._known = _Lru(KNOWN_KEYS_CACHED)
        self._unknown = _Lru(UNKNOWN_KEYS_CACHED)

    async def lookup(self, api_key: str) -> Caller | None:
        """The caller ``api_key`` stands for, or None for an unknown or revoked key."""
        if not well_formed(api_key):
            return None
        return await self._by_digest(hash_api_key(api_key))

    async def recheck(self, caller: Caller) -> Caller | None:
        """``caller``'s key looked up again (through the cache), for requests that stay open:
        None once it was revoked; ``enabled`` False once its tenant was disabled."""
        return await self._by_digest(caller.key_hash)

    async def _by_digest(self, digest: str) -> Caller | None:
        now = time.monotonic()
        cached = self._known.get(digest, now) or self._unknown.get(digest, now)
        if cached is not None:
            return cached[1]
        row = await self._lookup(
            keys=[redis_keys.api_key(digest)], args=[time.time_ns() // 1_000_000]
        )
        caller = None
        if row:
            tenant, key_id, enabled = (part.decode() for part in row)
            caller = Caller(tenant, key_id, digest, enabled == "1")
        entry = (now + self._cache_seconds, caller)
        (self._known if caller else self._unknown).put(digest, entry)
        (self._unknown if caller else self._known).pop(digest)
        return caller


async def allowed_models(client: aioredis.Redis, tenant: str, names: list[str]) -> list[str]:
    """Those of ``names`` the tenant may call (its ``models`` limit; empty: every model)."""
    raw = await client.hget(redis_keys.tenant(tenant), "models")
    text = raw.decode() if isinstance(raw, bytes) else (raw or "")
    allowed = {name for name in text.split(",") if name}
    return [name for name in names if not allowed or name in allowed]
