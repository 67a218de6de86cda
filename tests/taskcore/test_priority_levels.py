"""Priority within a tenant's share, against a real Redis: the fair queue's Lua.

Tasks are submitted with a feed depth of 0 (nothing moves into the Celery queue at
submit), then fed in one go, so the order of the queue is the feed's order alone.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable

import pytest
import redis
from fixtures.processes import RedisServer
from fixtures.tenants import cancel_many, submit_many

from gateway.intake.admission import SubmitOptions
from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.fairqueue import PoolFeeder
from taskcore.priority import ORDER, Priority

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 1, 7.0, 1)
INTERACTIVE = SubmitOptions(Priority.INTERACTIVE)
BATCH = SubmitOptions(Priority.BATCH)
NORMAL = SubmitOptions()


@pytest.fixture
def pool() -> str:
    return "test.prio." + uuid.uuid4().hex[:8]  # no worker serves it


def _hold(url: str, key: str, pool: str, count: int, options: SubmitOptions) -> list[str]:
    """Submit ``count`` tasks that stay in their tenant's lists (feed depth 0)."""
    return submit_many(url, key, [JOB] * count, pool, 0, options)


def _fed_order(redis_client: redis.Redis, pool: str) -> list[str]:
    """Feed everything, then the task ids in the order workers will take them."""
    PoolFeeder(redis_client, 10_000).feed(pool)
    messages = redis_client.lrange(redis_keys.celery_queue(pool), 0, -1)[
        ::-1
    ]  # consumers pop the right
    return [json.loads(base64.b64decode(json.loads(m)["body"]))[0][0] for m in messages]


def test_a_tenants_interactive_tasks_go_first_then_normal_then_batch_each_in_order(
    redis_server: RedisServer, redis_client: redis.Redis, pool: str, new_tenant: Callable[..., str]
) -> None:
    key, url = new_tenant(), redis_server.url
    batch = _hold(url, key, pool, 2, BATCH)
    normal = _hold(url, key, pool, 1, NORMAL)
    interactive = _hold(url, key, pool, 1, INTERACTIVE)
    batch += _hold(url, key, pool, 1, BATCH)
    interactive += _hold(url, key, pool, 2, INTERACTIVE)
    normal += _hold(url, key, pool, 1, NORMAL)
    assert redis_client.llen(redis_keys.backlog(pool)) == 8
    assert _fed_order(redis_client, pool) == interactive + normal + batch
    assert redis_client.llen(redis_keys.backlog(pool)) == 0
    assert (
        redis_client.zcard(redis_keys.ready(pool)) == 0
    )  # every list empty: the tenant left the round
    assert redis_client.hget(redis_keys.task(batch[0]), "priority") == b"batch"


def test_priorities_do_not_change_the_share_between_tenants(
    redis_server: RedisServer, redis_client: redis.Redis, pool: str, new_tenant: Callable[..., str]
) -> None:
    url = redis_server.url
    owners = {task: "batch-only" for task in _hold(url, new_tenant(), pool, 6, BATCH)}
    owners.update({task: "urgent" for task in _hold(url, new_tenant(), pool, 6, INTERACTIVE)})
    order = [owners[task] for task in _fed_order(redis_client, pool)]
    # Equal weights take turns whatever each tenant marked its tasks.
    assert order in (["batch-only", "urgent"] * 6, ["urgent", "batch-only"] * 6)


def test_cancel_takes_a_task_out_of_its_own_level_and_the_rest_keep_their_order(
    redis_server: RedisServer, redis_client: redis.Redis, pool: str, new_tenant: Callable[..., str]
) -> None:
    tenant = "t-" + uuid.uuid4().hex[:8]
    key, url = new_tenant(tenant), redis_server.url
    batch = _hold(url, key, pool, 3, BATCH)
    interactive = _hold(url, key, pool, 2, INTERACTIVE)
    assert [s.value for s in cancel_many(url, tenant, [batch[1], interactive[0]])] == [
        "PENDING",
        "PENDING",
    ]
    handle = redis_keys.pending(pool, tenant)
    lists = {level: redis_keys.pending_level(handle, level) for level in ORDER}
    assert (
        redis_client.llen(lists[Priority.BATCH]) == 2
        and redis_client.llen(lists[Priority.INTERACTIVE]) == 1
    )
    assert redis_client.llen(redis_keys.backlog(pool)) == 3
    assert _fed_order(redis_client, pool) == [interactive[1], batch[0], batch[2]]


def test_a_tenant_whose_last_waiting_task_is_canceled_leaves_the_round(
    redis_server: RedisServer, redis_client: redis.Redis, pool: str, new_tenant: Callable[..., str]
) -> None:
    tenant = "t-" + uuid.uuid4().hex[:8]
    key, url = new_tenant(tenant), redis_server.url
    (only,) = _hold(url, key, pool, 1, INTERACTIVE)
    assert redis_client.zscore(redis_keys.ready(pool), redis_keys.pending(pool, tenant)) is not None
    cancel_many(url, tenant, [only])
    assert redis_client.zscore(redis_keys.ready(pool), redis_keys.pending(pool, tenant)) is None
    assert redis_client.llen(redis_keys.backlog(pool)) == 0
    assert _fed_order(redis_client, pool) == []
