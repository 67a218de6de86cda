"""The readiness checks one by one, against a real Redis, folder and S3 server (moto)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fixtures.processes import RedisServer, free_port
from fixtures.s3 import BUCKET, MotoServer

from gateway.operations.readiness import Readiness, parse_exclude
from taskcore.settings import Settings


def _report(settings: Settings, exclude: set[str]) -> tuple[bool, dict[str, Any]]:
    async def check() -> tuple[bool, dict[str, Any]]:
        redis_client = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=1)
        try:
            return await Readiness(settings, redis_client).report(exclude)
        finally:
            await redis_client.aclose()

    return asyncio.run(check())


def test_a_storage_folder_that_cannot_exist_fails_the_storage_check(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    good = Settings(redis_url=redis_server.url, storage_dir=tmp_path / "images")
    bad = Settings(redis_url=redis_server.url, storage_dir=tmp_path / "a-file" / "images")
    ready, body = _report(good, {"workers"})
    assert ready and body["checks"] == {"redis": "ok", "storage": "ok", "workers": "skipped"}
    ready, body = _report(bad, {"workers"})
    assert not ready and body["status"] == "unavailable"
    assert "a-file" in str(body["checks"]["storage"])


def test_the_bucket_check_asks_s3_for_the_configured_bucket(
    redis_server: RedisServer, moto: MotoServer
) -> None:
    s3 = {
        "redis_url": redis_server.url,
        "storage": "s3",
        "s3_endpoint_url": moto.endpoint,
        "s3_addressing_style": "path",
    }
    assert _report(Settings(**s3, s3_bucket=BUCKET), {"workers", "redis"})[0]
    ready, body = _report(Settings(**s3, s3_bucket="no-such-bucket"), {"workers", "redis"})
    assert not ready
    assert "s3://no-such-bucket" in str(body["checks"]["storage"])


def test_without_redis_neither_redis_nor_workers_are_ready(tmp_path: Path) -> None:
    settings = Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", storage_dir=tmp_path)
    ready, body = _report(settings, set())
    checks = body["checks"]
    assert not ready
    assert checks["storage"] == "ok"
    assert checks["redis"].startswith("ConnectionError")
    assert checks["workers"].startswith("ConnectionError")


def test_exclude_accepts_repeats_and_commas_and_ignores_unknown_names() -> None:
    assert parse_exclude(["workers", "storage,redis", "bogus"]) == {"workers", "storage", "redis"}
