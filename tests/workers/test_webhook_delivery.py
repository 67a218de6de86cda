"""Webhook deliveries against a private Redis: queued with the final status, leased, retaken."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer, running_redis
from fixtures.tenants import register_tenant
from fixtures.webhooks import WebhookReceiver, running_receiver

from gateway.intake.admission import Submitter
from gateway.tenancy.auth import KeyDirectory
from gateway.tenancy.directory import TenantDirectory
from taskcore import redis_keys, scripts
from taskcore.contract import GenerationRequest
from taskcore.records import TaskStatus
from taskcore.settings import Settings
from taskcore.store.worker import WorkerTaskStore
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


def _submit(redis_url: str, callback: str) -> str:
    """A task of a new tenant that may call back 127.0.0.1, submitted with ``callback``."""
    name = "t-" + uuid.uuid4().hex[:8]
    api_key = register_tenant(redis_url, name)
    task_id = str(uuid.uuid4())

    async def submit() -> None:
        redis_client = aioredis.Redis.from_url(redis_url)
        try:
            await TenantDirectory(redis_client).update(name, callback_hosts=["127.0.0.1"])
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
    assert redis_client.eval(
        scripts.source("webhook_claim_due"), 1, redis_keys.webhooks_due(), 500, 16
    ) == [redis_keys.task(task_id).encode()]
    loop = WebhookLoop(
        redis_client, Settings(redis_url=private_redis.url, webhook_allow_private=False)
    )
    try:
        assert loop.tick() == 0  # leased to the dead worker
        time.sleep(0.6)
        assert loop.tick() == 1
    finally:
        loop.stop()
    [received] = receiver.take("/lease", 1)
    assert b'"task_status":"SUCCEEDED"' in received.body
    assert (
        redis_client.zscore(redis_keys.webhooks_due(), redis_keys.task(task_id)) is None
    )  # delivered: done
    assert b'"status_code":200' in (redis_client.hget(redis_keys.task(task_id), "webhook") or b"")


def test_the_lua_due_set_name_is_the_python_one(private_redis: RedisServer) -> None:
    script = scripts.compose("return k_webhooks_due()", ("keys",))
    assert private_redis.client().eval(script, 0) == redis_keys.webhooks_due().encode()
