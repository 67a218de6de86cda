"""Local-storage images are served only through valid, unexpired signed URLs."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import redis.asyncio as aioredis
from fixtures.stack import Stack
from fixtures.tasks import body, png_size, run_task

from taskcore.url_signing import UrlSigner, shared_secret


def _image_url(api: httpx.Client) -> str:
    done = run_task(api, body("stable-diffusion-v1.5", steps=1))
    return str(done["output"]["results"][0]["url"])


def _replace_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())))


def test_signed_url_serves_the_png(api: httpx.Client) -> None:
    answer = httpx.get(_image_url(api), timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert png_size(answer.content) == (512, 512)


def test_tampered_urls_are_forbidden(api: httpx.Client) -> None:
    url = _image_url(api)
    parts = urlsplit(url)
    expires = parse_qs(parts.query)["expires"][0]
    sig = parse_qs(parts.query)["sig"][0]
    tampered = [
        _replace_query(url, sig=("B" if sig[0] == "A" else "A") + sig[1:]),  # one in 64 began so
        _replace_query(url, expires=str(int(expires) + 1)),
        urlunsplit(parts._replace(path=parts.path.replace("/0.png", "/1.png"))),
        urlunsplit(parts._replace(query="")),
        urlunsplit(parts._replace(path="/files/../../etc/passwd")),
    ]
    for bad in tampered:
        answer = httpx.get(bad, timeout=10)
        assert answer.status_code in {403, 404}, bad
        if answer.status_code == 403:
            assert answer.json()["code"] == "AccessDenied"


def test_expired_url_is_forbidden(stack: Stack, api: httpx.Client) -> None:
    url = _image_url(api)
    key = urlsplit(url).path.removeprefix("/files/")

    async def secret() -> bytes:
        redis_client = aioredis.Redis.from_url(stack.redis.url)
        value = await shared_secret(redis_client)
        await redis_client.aclose()
        return value

    signer = UrlSigner(asyncio.run(secret()), stack.base_url)
    assert httpx.get(signer.url(key, int(time.time()) + 60), timeout=10).status_code == 200
    expired = httpx.get(signer.url(key, int(time.time()) - 1), timeout=10)
    assert expired.status_code == 403
    assert expired.json()["code"] == "AccessDenied"
