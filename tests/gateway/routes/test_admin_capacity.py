"""``GET /admin/v1/pools`` and ``GET /admin/v1/upstream-accounts``: the console's view of
the pools and the DashScope accounts, behind the admin token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.processes import RedisServer, running_redis

from gateway.edge.app import create_app
from gateway.operations.pool_stats import routed_pools
from taskcore import redis_keys
from taskcore.settings import Settings, UpstreamAccount
from taskcore.upstream_accounts import describe

TOKEN = "admin-test-token-0123456789abcdefghij"
MODEL = "wanx2.1-t2i-turbo"


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of its own: the accounts registered here concern no other test."""
    with running_redis(tmp_path_factory.mktemp("capacity-redis")) as server:
        yield server


def _settings(redis: RedisServer, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=redis.url,
        storage_dir=tmp_path,
        admin_token=TOKEN,  # type: ignore[arg-type]
        upstream_api_key="sk-upstream",  # type: ignore[arg-type]
    )


def _get(settings: Settings, path: str, token: str = TOKEN) -> httpx.Response:
    async def run() -> httpx.Response:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                return await http.get(path, headers={"Authorization": f"Bearer {token}"})

    return asyncio.run(run())


def test_pools_lists_every_routed_pool(own_redis: RedisServer, tmp_path: Path) -> None:
    settings = _settings(own_redis, tmp_path)
    own_redis.client().lpush(redis_keys.backlog("gpu.sd15"), "t1", "t2")
    answer = _get(settings, "/admin/v1/pools")
    assert answer.status_code == 200 and answer.json()["request_id"]
    pools: list[dict[str, Any]] = answer.json()["pools"]
    assert [p["pool"] for p in pools] == routed_pools(settings)
    sd15 = next(p for p in pools if p["pool"] == "gpu.sd15")
    assert sd15 == {"pool": "gpu.sd15", "depth": 2, "oldest_age_seconds": 0.0, "live_workers": 0}


def test_upstream_accounts_show_running_limits_waiting_and_rest(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    settings = _settings(own_redis, tmp_path)
    client = own_redis.client()
    account = UpstreamAccount(name="team-a", api_key="sk-a", max_running=3, models=(MODEL,))  # type: ignore[arg-type]
    client.hset(redis_keys.upstream_accounts(), "team-a", describe(account))
    client.sadd(redis_keys.upstream_running("team-a", MODEL), "task-1")
    client.set(redis_keys.upstream_rest("team-a"), 1, px=30_000)  # throttled by DashScope
    [shown] = _get(settings, "/admin/v1/upstream-accounts").json()["accounts"]
    assert shown["account"] == "team-a"
    assert shown["running"] == {MODEL: 1} and shown["max_running"] == {MODEL: 3}
    assert shown["waiting"] == 0
    assert 25 < shown["resting_seconds"] <= 30
    assert "sk-a" not in str(shown)


@pytest.mark.parametrize("path", ["/admin/v1/pools", "/admin/v1/upstream-accounts"])
def test_capacity_needs_the_admin_token(own_redis: RedisServer, tmp_path: Path, path: str) -> None:
    answer = _get(_settings(own_redis, tmp_path), path, token="sk-a-tenant-key")
    assert answer.status_code == 401 and answer.json()["code"] == "InvalidApiKey"
