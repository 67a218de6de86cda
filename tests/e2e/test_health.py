"""Liveness and readiness of a live gateway."""

from __future__ import annotations

import httpx
from fixtures.stack import LOCAL_POOLS, Stack


def test_healthz_and_readyz_report_redis_storage_and_live_worker_pools(stack: Stack) -> None:
    assert httpx.get(f"{stack.base_url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{stack.base_url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": "ok", "storage": "ok", "workers": "ok"}
    assert all(ready.json()["workers"][queue] >= 1 for queue in LOCAL_POOLS)


def test_readyz_leaves_out_the_checks_it_is_asked_to(stack: Stack) -> None:
    ready = httpx.get(f"{stack.base_url}/readyz?exclude=workers,storage", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "storage": "skipped", "workers": "skipped"}
    assert ready.json()["workers"] == {}
