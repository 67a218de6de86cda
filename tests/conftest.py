"""Session-wide real components: Redis, demo weights, a live gateway and a live worker."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from fixtures.processes import (
    RedisServer,
    SynthgateProcess,
    free_port,
    wait_http_ok,
    wait_until,
)

from gateway import keys
from gateway.catalog import LOCAL_QUEUES
from gateway.tenants import KeyDirectory, generate_api_key


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from workers.backends.demo_weights import build_demo_pipeline

    cache = tmp_path_factory.mktemp("demo-weights")
    for kind in ("sd15", "sdxl"):
        build_demo_pipeline(kind, cache)  # type: ignore[arg-type]
    return cache


@dataclass
class Stack:
    """A running gateway + worker on a private Redis."""

    base_url: str
    api_key: str
    redis: RedisServer
    storage_dir: Path
    gateway: SynthgateProcess
    worker: SynthgateProcess

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v1"

    def headers(self, api_key: str | None = None, async_: bool = True) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {api_key or self.api_key}"}
        if async_:
            headers["X-DashScope-Async"] = "enable"
        return headers

    def workers_alive(self) -> bool:
        client = self.redis.client()
        return all(
            any(True for _ in client.scan_iter(match=keys.worker_heartbeat_pattern(q)))
            for q in LOCAL_QUEUES
        )


@pytest.fixture(scope="session")
def stack(
    redis_server: RedisServer, demo_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    port = free_port()
    storage = tmp_path_factory.mktemp("storage")
    logs = tmp_path_factory.mktemp("logs")
    api_key = generate_api_key()
    env = {
        "SYNTHGATE_REDIS_URL": redis_server.url,
        "SYNTHGATE_PORT": str(port),
        "SYNTHGATE_STORAGE_DIR": str(storage),
        "SYNTHGATE_DEV_API_KEY": api_key,
        "SYNTHGATE_DEMO_WEIGHTS_DIR": str(demo_weights_dir),
        "SYNTHGATE_WORKER_HEARTBEAT_SECONDS": "0.5",
        "SYNTHGATE_LOG_LEVEL": "INFO",
    }
    gateway = SynthgateProcess("serve", env, logs / "gateway.log")
    worker = SynthgateProcess("worker", env, logs / "worker.log")
    gateway.start()
    worker.start()
    running = Stack(f"http://127.0.0.1:{port}", api_key, redis_server, storage, gateway, worker)
    try:
        wait_http_ok(f"{running.base_url}/healthz", gateway)
        wait_until(running.workers_alive, 120, "worker heartbeats")
        yield running
    finally:
        worker.stop()
        gateway.stop()


@pytest.fixture
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api, headers=stack.headers(), timeout=30) as http:
        yield http


@pytest.fixture
def new_tenant(redis_server: RedisServer) -> Callable[..., str]:
    """Make a tenant (named, or a fresh random name) with one new key; returns the key."""

    def make(name: str | None = None) -> str:
        key = generate_api_key()

        async def register() -> None:
            client = aioredis.Redis.from_url(redis_server.url)
            await KeyDirectory(client).register(name or "t-" + secrets.token_hex(4), key)
            await client.aclose()

        asyncio.run(register())
        return key

    return make
