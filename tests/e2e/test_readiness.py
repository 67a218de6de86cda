"""/readyz flips with Redis and with the workers, on a stack of its own (its own Redis, so
stopping it disturbs no other test). Every model is routed upstream, so one light
upstream worker serves every routed pool; no task reaches the (absent) upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from fixtures.metrics import scrape
from fixtures.processes import RedisServer, wait_until
from fixtures.stack import SD_MODELS, Stack, start_stack
from fixtures.tasks import body, submit
from fixtures.tenants import register_tenant

XL_POOL, V15_POOL = "upstream.stable-diffusion-xl", "upstream.stable-diffusion-v1.5"


@pytest.fixture(scope="module")
def lone_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Started once: the Redis test ends with everything up again, the workers test last."""
    tmp_path = tmp_path_factory.mktemp("lone")
    redis = RedisServer(tmp_path_factory.mktemp("lone-redis"))
    redis.start()
    env = {
        "SYNTHGATE_ROUTES": json.dumps(dict.fromkeys(SD_MODELS, "upstream")),
        "SYNTHGATE_UPSTREAM_BASE_URL": "http://127.0.0.1:9/api/v1",
        "SYNTHGATE_UPSTREAM_API_KEY": "sk-unused-upstream-key",
    }
    try:
        with start_stack(redis, tmp_path, env, ["upstream"]) as stack:
            yield stack
    finally:
        redis.stop()


def _ready(stack: Stack, query: str = "") -> httpx.Response:
    return httpx.get(f"{stack.base_url}/readyz{query}", timeout=10)


def test_readyz_flips_when_redis_stops_and_comes_back(lone_stack: Stack) -> None:
    ready = _ready(lone_stack)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": "ok", "storage": "ok", "workers": "ok"}
    assert ready.json()["workers"][XL_POOL] >= 1

    lone_stack.redis.stop()
    down = _ready(lone_stack)
    assert down.status_code == 503
    assert down.json()["checks"]["redis"] != "ok"
    assert httpx.get(f"{lone_stack.base_url}/healthz", timeout=5).status_code == 200
    assert scrape(f"{lone_stack.base_url}/metrics").value("synthgate_redis_up") == 0

    lone_stack.redis.start()  # empty: the worker's next heartbeat registers it again
    wait_until(lambda: _ready(lone_stack).status_code == 200, 30, "ready again")


def test_readyz_flips_when_the_pools_workers_stop_and_queue_gauges_grow(
    lone_stack: Stack,
) -> None:
    lone_stack.worker.stop()  # warm shutdown removes its heartbeat at once
    down = _ready(lone_stack)
    assert down.status_code == 503
    missing = down.json()["checks"]["workers"]
    assert missing.startswith("no live worker for ") and f"{V15_POOL}, {XL_POOL}" in missing
    assert _ready(lone_stack, "?exclude=workers").status_code == 200  # the gateway's own probe

    key = register_tenant(lone_stack.redis.url, "waiting")  # Redis may have restarted empty
    with httpx.Client(base_url=lone_stack.api, headers=lone_stack.headers(key), timeout=10) as api:
        submitted = time.monotonic()
        submit(api, body("stable-diffusion-xl"))
        submit(api, body("stable-diffusion-v1.5"))
    time.sleep(0.2)
    metrics = scrape(f"{lone_stack.base_url}/metrics")
    waited = time.monotonic() - submitted
    for pool in (V15_POOL, XL_POOL):  # one task each: each model is a pool of its own
        assert metrics.value("synthgate_queue_depth", pool=pool) == 1
        assert 0.2 <= metrics.value("synthgate_queue_oldest_age_seconds", pool=pool) <= waited
        assert metrics.value("synthgate_pool_workers", pool=pool) == 0
