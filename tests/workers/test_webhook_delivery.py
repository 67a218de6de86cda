"""Webhook deliveries against a private Redis: queued with the final status, leased, retaken;
and receivers that stall or flood, which hold up neither other tenants nor the memory."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer, running_redis
from fixtures.tenants import register_tenant
from fixtures.webhooks import WebhookReceiver, hostile_receiver, running_receiver
from standardwebhooks import Webhook

from gateway.intake.admission import Submitter
from gateway.tenancy.auth import KeyDirectory
from gateway.tenancy.directory import TenantDirectory
from taskcore import redis_keys, scripts
from taskcore.contract import GenerationRequest
from taskcore.records import TaskStatus
from taskcore.settings import Settings
from taskcore.store.worker import WorkerTaskStore
from taskcore.webhooks.payload import new_secret, standard_secret, verify_legacy
from workers.webhook_delivery import WebhookLoop

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 1, 7.0, 1)
POOL = "test.webhooks"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with running_receiver() as running:
        yield running


def _tenant(redis_url: str) -> str:
    """A new tenant that may call back 127.0.0.1; its API key."""
    name = "t-" + uuid.uuid4().hex[:8]
    api_key = register_tenant(redis_url, name)

    async def allow() -> None:
        redis_client = aioredis.Redis.from_url(redis_url)
        try:
            await TenantDirectory(redis_client).update(name, callback_hosts=["127.0.0.1"])
        finally:
            await redis_client.aclose()

    asyncio.run(allow())
    return api_key


def _submit(redis_url: str, callback: str, api_key: str = "") -> str:
    """A task submitted with ``callback``, by the tenant of ``api_key`` (default: a new one)."""
    api_key = api_key or _tenant(redis_url)
    task_id = str(uuid.uuid4())

    async def submit() -> None:
        redis_client = aioredis.Redis.from_url(redis_url)
        try:
            caller = await KeyDirectory(redis_client).lookup(api_key)
            assert caller is not None
            await Submitter(redis_client, 2).submit(caller, task_id, JOB, POOL, b"{}", callback)
        finally:
            await redis_client.aclose()

    asyncio.run(submit())
    return task_id


def test_the_final_status_queues_the_webhook_in_the_same_step(
    private_redis: RedisServer, receiver: WebhookReceiver
) -> None:
    redis_client = private_redis.client()
    task_id = _submit(private_redis.url, receiver.url("/atomic"))
    assert (
        redis_client.hget(redis_keys.task(task_id), "callback") == receiver.url("/atomic").encode()
    )
    store = WorkerTaskStore(redis_client, 3600)
    assert store.claim(task_id) is not None
    assert (
        redis_client.zscore(redis_keys.webhooks_due(), redis_keys.task(task_id)) is None
    )  # not before the end
    assert store.finish(task_id, TaskStatus.FAILED, [], "InternalError.Algo", "boom")
    assert redis_client.zscore(redis_keys.webhooks_due(), redis_keys.task(task_id)) is not None


def test_a_delivery_claimed_by_a_worker_that_died_is_sent_by_another_after_the_lease(
    private_redis: RedisServer, receiver: WebhookReceiver
) -> None:
    redis_client = private_redis.client()
    task_id = _submit(private_redis.url, receiver.url("/lease"))
    store = WorkerTaskStore(redis_client, 3600)
    assert store.claim(task_id) is not None
    assert store.finish(task_id, TaskStatus.SUCCEEDED, [{"key": "x/0.png"}])
    # A worker claims the delivery for 500 ms, then dies without sending it.
    claim = scripts.source("webhook_claim_due")
    [record, _tenant] = redis_client.eval(claim, 1, redis_keys.webhooks_due(), 500, 8, 2, 0, 16)
    assert record == redis_keys.task(task_id).encode()
    claimed = time.monotonic()
    with _delivering(private_redis.url):
        [received] = receiver.take("/lease", 1)
        assert time.monotonic() - claimed >= 0.5  # leased to the dead worker until then
    assert b'"task_status":"SUCCEEDED"' in received.body
    assert (
        redis_client.zscore(redis_keys.webhooks_due(), redis_keys.task(task_id)) is None
    )  # delivered: done
    assert b'"status_code":200' in (redis_client.hget(redis_keys.task(task_id), "webhook") or b"")


def test_the_lua_due_set_name_is_the_python_one(private_redis: RedisServer) -> None:
    script = scripts.compose("return k_webhooks_due()", ("keys",))
    assert private_redis.client().eval(script, 0) == redis_keys.webhooks_due().encode()


@contextmanager
def _delivering(redis_url: str, **settings: Any) -> Iterator[None]:
    """The webhook deliveries of one worker process, running."""
    loop = WebhookLoop(Settings(redis_url=redis_url, webhook_poll_seconds=0.1, **settings))
    loop.start()
    try:
        yield
    finally:
        loop.stop()


def _finished(server: RedisServer, callback: str, api_key: str = "", secret: str = "") -> str:
    """A task (of the tenant of ``api_key``, default a new one), SUCCEEDED, with its webhook
    to ``callback`` due now; with ``secret``, the tenant's webhook secret is that."""
    task_id = _submit(server.url, callback, api_key)
    if secret:
        tenant = _tenant_of(server.client(), task_id)
        server.client().set(redis_keys.tenant_webhook_secret(tenant), secret)
    store = WorkerTaskStore(server.client(), 3600)
    assert store.claim(task_id) is not None
    assert store.finish(task_id, TaskStatus.SUCCEEDED, [{"key": "x/0.png"}])
    return task_id


def _tenant_of(redis_client: Any, task_id: str) -> str:
    return str(redis_client.hget(redis_keys.task(task_id), "tenant").decode())


def _secret_of(redis_client: Any, task_id: str) -> str:
    """The webhook secret of the task's tenant (the worker makes one where none is)."""
    tenant = _tenant_of(redis_client, task_id)
    return str(redis_client.get(redis_keys.tenant_webhook_secret(tenant)).decode())


def test_deliveries_verify_with_the_standardwebhooks_library_and_the_old_pair_goes_when_off(
    private_redis: RedisServer, receiver: WebhookReceiver
) -> None:
    redis_client = private_redis.client()
    first = _finished(private_redis, receiver.url("/standard"))
    with _delivering(private_redis.url):
        [both] = receiver.take("/standard", 1)
    second = _finished(private_redis, receiver.url("/standard-only"))
    with _delivering(private_redis.url, webhook_legacy_signature=False):
        [standard_only] = receiver.take("/standard-only", 1)
    for task_id, received in ((first, both), (second, standard_only)):
        secret = _secret_of(redis_client, task_id)
        assert secret.startswith("whsec_")
        sent = Webhook(secret).verify(received.body, received.headers)
        assert sent["output"]["task_id"] == task_id
        assert received.headers["webhook-id"] == f"msg_{task_id}"
        assert received.headers["x-synthgate-task-id"] == task_id
    assert verify_legacy(
        _secret_of(redis_client, first),
        both.headers["x-synthgate-timestamp"],
        both.headers["x-synthgate-signature"],
        both.body,
    )
    assert "x-synthgate-signature" not in standard_only.headers
    assert "x-synthgate-timestamp" not in standard_only.headers


def test_a_secret_made_before_standard_webhooks_keeps_working_in_both_schemes(
    private_redis: RedisServer, receiver: WebhookReceiver
) -> None:
    old = "whsec_" + "Ab-_" * 10 + "xyz"  # the old form: 43 URL-safe base64 characters
    _finished(private_redis, receiver.url("/old-secret"), secret=old)
    with _delivering(private_redis.url):
        [received] = receiver.take("/old-secret", 1)
    headers = received.headers
    Webhook(standard_secret(old)).verify(received.body, headers)  # the documented conversion
    assert verify_legacy(
        old, headers["x-synthgate-timestamp"], headers["x-synthgate-signature"], received.body
    )


def test_an_unusable_secret_is_an_attempt_error_and_a_new_secret_delivers(
    private_redis: RedisServer, receiver: WebhookReceiver
) -> None:
    redis_client = private_redis.client()
    task_id = _finished(private_redis, receiver.url("/bad-secret"), secret="whsec_not base64!")
    tenant = _tenant_of(redis_client, task_id)
    with _delivering(private_redis.url, webhook_backoff_seconds=0.2):
        deadline = time.monotonic() + 30
        while not _attempts(redis_client, task_id) and time.monotonic() < deadline:
            time.sleep(0.02)
        [failed] = _attempts(redis_client, task_id)
        assert "secret is unusable" in failed["error"], failed
        secret = new_secret()  # what the admin API's webhook-secret call stores
        redis_client.set(redis_keys.tenant_webhook_secret(tenant), secret)
        [received] = receiver.take("/bad-secret", 1)
    Webhook(secret).verify(received.body, received.headers)


def _attempts(redis_client: Any, task_id: str) -> list[dict[str, Any]]:
    raw = redis_client.hget(redis_keys.task(task_id), "webhook")
    return orjson.loads(raw) if raw else []


def test_a_receiver_trickling_one_byte_a_second_is_an_error_within_the_timeout(
    private_redis: RedisServer,
) -> None:
    redis_client = private_redis.client()
    with hostile_receiver("trickle") as slow:
        task_id = _finished(private_redis, slow.url())
        with _delivering(private_redis.url, webhook_timeout_seconds=2):
            deadline = time.monotonic() + 60
            while not _attempts(redis_client, task_id) and time.monotonic() < deadline:
                time.sleep(0.02)
            recorded = time.monotonic()
    [attempt] = _attempts(redis_client, task_id)
    assert "error" in attempt and "status_code" not in attempt, attempt
    assert recorded - slow.arrived[0] <= 2 + 1, recorded - slow.arrived[0]


def test_a_huge_answer_is_not_read_into_memory(private_redis: RedisServer) -> None:
    redis_client = private_redis.client()
    with hostile_receiver("flood", flood_bytes=64 * 1024 * 1024) as flood:
        task_id = _finished(private_redis, flood.url())
        tracemalloc.start()
        try:
            with _delivering(private_redis.url, webhook_timeout_seconds=10):
                deadline = time.monotonic() + 60
                while not _attempts(redis_client, task_id) and time.monotonic() < deadline:
                    time.sleep(0.02)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    [attempt] = _attempts(redis_client, task_id)
    assert attempt["status_code"] == 500, attempt
    assert peak < 16 * 1024 * 1024, f"{peak / 2**20:.0f} MiB allocated at the peak"


def test_another_tenants_delivery_due_during_a_stall_goes_out_on_time(
    private_redis: RedisServer, receiver: WebhookReceiver
) -> None:
    with hostile_receiver("trickle", stall_seconds=20) as slow:
        # One tenant's receiver stalls: more of its deliveries are due than there are slots.
        stalling = _tenant(private_redis.url)
        for _ in range(10):
            _finished(private_redis, slow.url(), stalling)
        with _delivering(private_redis.url, webhook_timeout_seconds=3, webhook_backoff_seconds=60):
            deadline = time.monotonic() + 10
            while len(slow.arrived) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(slow.arrived) >= 2  # stalling
            time.sleep(1)
            # Another tenant's task ends during the stall: its webhook is due now.
            on_time = _finished(private_redis, receiver.url("/on-time"))
            due = time.monotonic()
            [received] = receiver.take("/on-time", 1, timeout=5)
            arrived = time.monotonic()
    assert on_time.encode() in received.body
    assert arrived - due < 1.5, arrived - due


def test_a_burst_of_one_tenants_webhooks_to_a_healthy_receiver_goes_out_at_once(
    private_redis: RedisServer, receiver: WebhookReceiver
) -> None:
    tenant = _tenant(private_redis.url)
    for _ in range(30):
        _finished(private_redis, receiver.url("/burst"), tenant)
    started = time.monotonic()
    with _delivering(private_redis.url):
        received = receiver.take("/burst", 30, timeout=20)
    # Two at a time for one tenant, but none of them put off while the others go out.
    assert len(received) == 30
    assert time.monotonic() - started < 5


def test_a_delivery_behind_a_stalled_tenants_backlog_longer_than_a_claim_looks_goes_out(
    private_redis: RedisServer, receiver: WebhookReceiver
) -> None:
    with hostile_receiver("trickle", stall_seconds=20) as slow:
        stalling = _tenant(private_redis.url)
        for _ in range(300):  # more than one claim looks at
            _finished(private_redis, slow.url(), stalling)
        behind = _finished(private_redis, receiver.url("/behind"))
        with _delivering(private_redis.url, webhook_timeout_seconds=3, webhook_backoff_seconds=60):
            started = time.monotonic()
            [received] = receiver.take("/behind", 1, timeout=5)
            arrived = time.monotonic()
    assert behind.encode() in received.body
    assert arrived - started < 2, arrived - started
