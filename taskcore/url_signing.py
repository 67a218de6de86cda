"""HMAC-signed, expiring URLs for images in local storage."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import quote, urlencode

import redis.asyncio as aioredis

from taskcore import redis_keys


async def shared_secret(client: aioredis.Redis) -> bytes:
    """The signing secret all gateway replicas share, created on first use."""
    await client.set(redis_keys.signing_secret(), secrets.token_hex(32), nx=True)
    value = await client.get(redis_keys.signing_secret())
    assert value is not None, "the signing secret vanished between SET NX and GET"
    return value if isinstance(value, bytes) else value.encode()


class UrlSigner:
    """Signs ``/files/{key}?expires=..&sig=..`` URLs and checks them."""

    def __init__(self, secret: bytes, base_url: str) -> None:
        self._secret = secret
        self._base = base_url.rstrip("/")

    def _signature(self, key: str, expires: int) -> str:
        mac = hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def url(self, key: str, expires: int) -> str:
        query = urlencode({"expires": expires, "sig": self._signature(key, expires)})
        return f"{self._base}/files/{quote(key)}?{query}"

    def valid(self, key: str, expires: str, signature: str) -> bool:
        """True when the signature matches and the URL has not expired."""
        # ASCII digits only, and few: int() raises on "²" and on 5,000 digits.
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            return False
        if int(expires) < time.time():
            return False
        # As bytes: compare_digest raises on str with non-ASCII characters.
        expected = self._signature(key, int(expires)).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))
