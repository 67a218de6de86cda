"""Redis down, hung or restarted under a running gateway: fast 503s, self-recovery, no loss.

The gateway runs alone on a private redis-server with the append-only file on (as in
production: ``appendonly yes``, ``appendfsync everysec``), which the tests SIGKILL,
restart on the same port and data folder, or SIGSTOP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.processes import RedisServer
from fixtures.stack import Stack, start_stack
from fixtures.tasks import SUBMIT, body, submit

from gateway.edge.connections import RETRY_AFTER_SECONDS
from taskcore import redis_keys
from taskcore.settings import Settings

DEV_TENANT = Settings().dev_tenant  # the tenant of the stack's dev key
TIMEOUT = 1.0  # SYNTHGATE_REDIS_TIMEOUT_SECONDS here: how long a hung Redis may hold a request


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[Stack]:
    redis_server = RedisServer(tmp_path / "redis", appendonly=True)
    (tmp_path / "redis").mkdir()
    redis_server.start()
    env = {
        "SYNTHGATE_REDIS_TIMEOUT_SECONDS": str(TIMEOUT),
        "SYNTHGATE_REDIS_CONNECT_TIMEOUT_SECONDS": str(TIMEOUT),
    }
    try:
        with start_stack(redis_server, tmp_path, env, []) as stack:
            yield stack
    finally:
        redis_server.stop()


def _calls(http: httpx.Client, task_id: str) -> list[httpx.Response]:
    return [
        http.post(SUBMIT, json=body()),
        http.get(f"/tasks/{task_id}"),
        http.get("/tasks"),
        http.post(f"/tasks/{task_id}/cancel"),
    ]


def _assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    data = answer.json()
    assert data["code"] == "ServiceUnavailable" and "retry" in data["message"]
    assert data["request_id"] == answer.headers["x-request-id"]
    assert answer.headers["retry-after"] == str(RETRY_AFTER_SECONDS)


def _snapshot(redis_server: RedisServer) -> dict[bytes, tuple[bytes, int]]:
    """Every key with its type and size: what a restart must give back."""
    redis_client = redis_server.client()
    sizes = {
        b"hash": redis_client.hlen,
        b"list": redis_client.llen,
        b"zset": redis_client.zcard,
        b"set": redis_client.scard,
    }
    snapshot = {}
    for key in redis_client.scan_iter(count=1000):
        kind = redis_client.type(key)
        measure = sizes.get(kind)
        snapshot[key] = (kind, measure(key) if measure else 1)
    return snapshot


def test_a_killed_redis_gives_fast_503s_then_a_restart_loses_no_accepted_task(
    durable: Stack,
) -> None:
    with httpx.Client(base_url=durable.api, headers=durable.headers(), timeout=30) as http:
        accepted = [submit(http, body(prompt=f"cat {i}")) for i in range(20)]
        before = _snapshot(durable.redis)
        durable.redis.kill()  # a crash right after the last accept: no shutdown save
        for answer in _calls(http, accepted[0]):
            _assert_unavailable(answer)
            assert answer.elapsed.total_seconds() < TIMEOUT + 0.5
        assert httpx.get(f"{durable.base_url}/healthz", timeout=5).status_code == 200  # alive
        assert httpx.get(f"{durable.base_url}/readyz", timeout=10).status_code == 503

        durable.redis.start()  # same port, same data folder: replays the append-only file
        assert http.get(f"/tasks/{accepted[0]}").json()["output"]["task_status"] == "PENDING"
        after = _snapshot(durable.redis)
        assert {key: after.get(key) for key in before} == before
        for task_id in accepted:
            assert http.get(f"/tasks/{task_id}").json()["output"]["task_status"] == "PENDING"
        assert http.get("/tasks", params={"page_size": 100}).json()["total"] == 20
        assert http.post(SUBMIT, json=body()).status_code == 200


def test_a_hung_redis_gives_503_within_the_timeout_and_recovers(durable: Stack) -> None:
    with httpx.Client(base_url=durable.api, headers=durable.headers(), timeout=30) as http:
        task_id = submit(http, body())
        durable.redis.pause()  # accepts connections, answers nothing
        try:
            started = time.monotonic()
            for answer in _calls(http, task_id):
                _assert_unavailable(answer)
            assert time.monotonic() - started < 4 * (TIMEOUT + 1)
        finally:
            durable.redis.resume()
        assert http.get(f"/tasks/{task_id}").json()["output"]["task_status"] == "PENDING"
        assert http.post(SUBMIT, json=body()).status_code == 200


def test_a_full_redis_refuses_submits_whole_while_reads_and_cancels_work(durable: Stack) -> None:
    redis_client = durable.redis.client()
    with httpx.Client(base_url=durable.api, headers=durable.headers(), timeout=30) as http:
        task_id = submit(http, body())
        # A submit older than the rate log's minute: the next submit's script trims it first.
        redis_client.zadd(redis_keys.tenant_rate(DEV_TENANT), {"an-old-submit": 1})
        before = _snapshot(durable.redis)
        redis_client.config_set("maxmemory-policy", "noeviction")
        redis_client.config_set("maxmemory", "1")  # Redis refuses writes that could grow it
        try:
            answer = http.post(SUBMIT, json=body())  # refused whole, trim or no trim
            _assert_unavailable(answer)
            assert "full" in answer.json()["message"]
            assert http.get(f"/tasks/{task_id}").json()["output"]["task_status"] == "PENDING"
            assert http.get("/tasks").json()["total"] == 1
            assert _snapshot(durable.redis) == before  # nothing written, nothing trimmed
            # A cancel frees what its task held (its queued message, the tenant's slot).
            assert http.post(f"/tasks/{task_id}/cancel").status_code == 200
            assert http.get(f"/tasks/{task_id}").json()["output"]["task_status"] == "CANCELED"
        finally:
            redis_client.config_set("maxmemory", "0")
        assert http.post(SUBMIT, json=body()).status_code == 200
