"""A Sentinel failover under load loses no accepted task (docs/reliability.md).

Real processes: a Redis primary, its replica and three sentinels (tests/fixtures/sentinel.py,
a failover within seconds), a gateway and two workers of the sd15 pool (tiny demo pipeline
on the CPU), all reaching Redis through the sentinels. A client submits steadily, each
submit with an Idempotency-Key of its own, retried with the same key after a 503's
Retry-After. The primary is SIGKILLed; the sentinels promote the replica. Then: every
answer was 200 or 503 with Retry-After; submits are accepted again within 15 s of the
promotion; every task that got a 200 SUCCEEDED with exactly its images, each stored once;
no slot, lease or queued message is left; and the old primary, restarted, rejoins as a
replica with nothing changed.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from fixtures.chaos import CHAOS_ENV
from fixtures.processes import RedisServer, wait_until
from fixtures.sentinel import MASTER, SentinelSetup, sentinel_setup
from fixtures.stack import Stack, start_stack
from fixtures.tasks import FINAL, SUBMIT, body
from fixtures.tenants import register_tenant

from gateway.tenancy.usage import utc_day
from taskcore import redis_connect, redis_keys
from taskcore.clock import now_ms
from taskcore.settings import Settings
from workers.storage.local import is_partial

POOL = "gpu.sd15"
SUBMITS_PER_SECOND = 3
LOAD_BEFORE_KILL_SECONDS = 5.0
LOAD_AFTER_PROMOTION_SECONDS = 8.0


class SentinelRedis(RedisServer):
    """What the stack fixtures want of a Redis (its URL, a client), through the sentinels."""

    def __init__(self, setup: SentinelSetup) -> None:  # no server of its own to start
        self.url = setup.url
        self.port = -1
        self._settings = Settings(
            redis_url=setup.url,
            redis_sentinels=setup.sentinel_list,
            redis_sentinel_master=MASTER,
        )

    def client(self) -> redis.Redis:
        return redis_connect.sync_client(self._settings, socket_timeout=5)


@dataclass
class Load:
    """What the client saw: each accepted task (id → images), every answer's status and
    when it came, and the latency of the accepted submits."""

    accepted: dict[str, int] = field(default_factory=dict)
    answers: list[tuple[float, int, str | None]] = field(default_factory=list)
    unconfirmed: list[float] = field(default_factory=list)  # 503s: no replica confirmed it
    latencies: list[tuple[float, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)


def _submit_steadily(stack: Stack, api_key: str, stop: threading.Event, load: Load) -> None:
    headers = stack.headers(api_key)
    with httpx.Client(base_url=stack.api, headers=headers, timeout=30) as api:
        i = 0
        while not stop.is_set():
            i += 1
            n = 1 + i % 2
            payload = body(prompt=f"failover {i}", n=n, steps=1)
            key = f"failover-{i}-{uuid.uuid4().hex[:6]}"
            while True:  # a 503: the same key again after Retry-After
                started = time.monotonic()
                try:
                    answer = api.post(SUBMIT, json=payload, headers={"Idempotency-Key": key})
                except httpx.HTTPError as exc:  # the gateway itself must stay up
                    load.errors.append(repr(exc))
                    break
                load.answers.append(
                    (time.monotonic(), answer.status_code, answer.headers.get("retry-after"))
                )
                if answer.status_code == 200:
                    load.accepted[answer.json()["output"]["task_id"]] = n
                    load.latencies.append((started, time.monotonic() - started))
                    load.accepted_at.append(time.monotonic())
                    break
                if answer.status_code != 503:
                    load.errors.append(answer.text)
                    break
                if "Idempotency-Key" in answer.json()["message"]:
                    load.unconfirmed.append(time.monotonic())
                time.sleep(float(answer.headers.get("retry-after", "2")) / 4)
            stop.wait(1 / SUBMITS_PER_SECOND)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with sentinel_setup(tmp_path_factory.mktemp("sentinels")) as running:
        yield running


@pytest.fixture(scope="module")
def stack(
    setup: SentinelSetup, demo_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    env = {
        **CHAOS_ENV,
        "SYNTHGATE_DEMO_WEIGHTS_DIR": str(demo_weights_dir),
        "SYNTHGATE_REDIS_SENTINELS": setup.sentinel_list,
        "SYNTHGATE_REDIS_SENTINEL_MASTER": MASTER,
    }
    workdir = tmp_path_factory.mktemp("failover")
    with start_stack(SentinelRedis(setup), workdir, env, [POOL, POOL]) as running:
        yield running


def _statuses(client: redis.Redis, task_ids: list[str]) -> dict[str, str]:
    try:
        with client.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hget(redis_keys.task(task_id), "status")
            return {t: (s or b"").decode() for t, s in zip(task_ids, pipe.execute(), strict=True)}
    except redis.RedisError:
        return {}


@pytest.mark.timeout(240)
def test_a_failover_under_load_loses_no_accepted_task(setup: SentinelSetup, stack: Stack) -> None:
    tenant = "failover"
    client = stack.redis.client()
    api_key = _register(setup, tenant)
    stop, load = threading.Event(), Load()
    loader = threading.Thread(target=_submit_steadily, args=(stack, api_key, stop, load))
    loader.start()
    try:
        time.sleep(LOAD_BEFORE_KILL_SECONDS)
        killed = time.monotonic()
        setup.primary.kill()
        wait_until(lambda: setup.master_port() == setup.replica.port, 30, "the promotion", 0.05)
        promoted = time.monotonic()
        time.sleep(LOAD_AFTER_PROMOTION_SECONDS)
    finally:
        stop.set()
        loader.join(timeout=60)

    assert load.errors == []
    assert all(code in (200, 503) for _, code, _ in load.answers), load.answers
    assert all(retry for _, code, retry in load.answers if code == 503)
    refused = [at for at, code, _ in load.answers if code == 503]
    again = min(at for at, code, _ in load.answers if code == 200 and at > promoted)
    assert again - promoted < 15

    ids = list(load.accepted)
    wait_until(
        lambda: (
            all(s in FINAL for s in _statuses(client, ids).values())
            and len(_statuses(client, ids)) == len(ids)
        ),
        120,
        "every accepted task to end",
        0.5,
    )
    statuses = _statuses(client, ids)
    assert [t for t in ids if statuses[t] != "SUCCEEDED"] == []
    # Tasks accepted after the promotion ran too: the workers' Celery consumers reconnected.
    assert sum(1 for at in load.accepted_at if at > promoted) >= 3
    _assert_images_stored_once(stack, tenant, load.accepted)
    _assert_nothing_held(client, tenant, sum(load.accepted.values()))

    # The old primary comes back (with its AOF): it rejoins as a replica, and nothing moves.
    setup.primary.start()
    wait_until(lambda: setup.synced(setup.primary), 60, "the old primary to rejoin")
    assert setup.master_port() == setup.replica.port
    assert _statuses(client, ids) == statuses
    _assert_nothing_held(client, tenant, sum(load.accepted.values()))
    _assert_images_stored_once(stack, tenant, load.accepted)

    before = [s for at, s in load.latencies if at < killed]
    print(
        f"\nsentinel failover: {len(ids)} tasks accepted, {len(refused)} submits refused (503, "
        f"{len(load.unconfirmed)} of them recorded but unconfirmed: no replica until the old "
        f"primary rejoined); "
        f"killed → promoted {promoted - killed:.1f} s, promoted → accepting again "
        f"{max(0.0, again - promoted):.1f} s; submit p50 before the kill "
        f"{statistics.median(before) * 1000:.1f} ms"
    )


def _register(setup: SentinelSetup, tenant: str) -> str:
    """A tenant and key, written on the current primary (the fixture takes a URL)."""
    primary = f"redis://127.0.0.1:{setup.master_port()}/0"
    return register_tenant(primary, tenant, max_concurrent=1000, daily_images=10_000)


def _assert_images_stored_once(stack: Stack, tenant: str, accepted: dict[str, int]) -> None:
    files = [p for p in stack.storage_dir.rglob("*") if p.is_file()]
    stored = sorted(str(p.relative_to(stack.storage_dir)) for p in files if not is_partial(p.name))
    day = time.strftime("%Y-%m-%d", time.gmtime())
    expected = sorted(f"{tenant}/{day}/{t}/{i}.png" for t, n in accepted.items() for i in range(n))
    assert stored == expected


def _assert_nothing_held(client: redis.Redis, tenant: str, images: int) -> None:
    assert client.zcard(redis_keys.tenant_active(tenant)) == 0
    assert client.zcard(redis_keys.leases(POOL)) == 0
    assert client.zcard(redis_keys.starting(POOL)) == 0
    assert client.llen(redis_keys.backlog(POOL)) == 0
    wait_until(lambda: client.llen(redis_keys.celery_queue(POOL)) == 0, 30, "an empty queue")
    usage = client.hgetall(redis_keys.tenant_usage(tenant, utc_day(now_ms())))
    assert int(usage[b"images"]) == images
    assert int(usage[b"images_succeeded"]) == images
