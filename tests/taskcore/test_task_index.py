"""The listing indexes against a real Redis: every filter is one index, kept in step with the
records (final statuses, expiry, vanished records), and pages are exact."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from fixtures.processes import RedisServer
from fixtures.tenants import cancel_many, submit_many

from taskcore import redis_keys, scripts
from taskcore.contract import GenerationRequest
from taskcore.records import TaskStatus
from taskcore.store import taskindex
from taskcore.store.tasks import UNFINISHED_TTL_SECONDS, TaskPage, TaskStore
from taskcore.store.worker import WorkerTaskStore

XL = GenerationRequest("stable-diffusion-xl", "a cat", "", 512, 512, 1, 5, 7.0, 1)
V15 = GenerationRequest("stable-diffusion-v1.5", "a dog", "", 512, 512, 1, 5, 7.0, 1)
POOL = "test.index"  # no worker serves it: the tests claim and finish the tasks themselves


@pytest.fixture
def tenant(new_tenant: Callable[..., str]) -> tuple[str, str]:
    name = "t-" + uuid.uuid4().hex[:8]
    return name, new_tenant(name)


def _list(redis_server: RedisServer, tenant: str, **query: Any) -> TaskPage:
    query = {"start_ms": None, "end_ms": None, "model": None, "status": None, **query}
    query.setdefault("offset", 0)
    query.setdefault("limit", 100)

    async def main() -> TaskPage:
        redis_client = aioredis.Redis.from_url(redis_server.url)
        try:
            return await TaskStore(redis_client, 3600).list_page(tenant, **query)
        finally:
            await redis_client.aclose()

    return asyncio.run(main())


def _ids(page: TaskPage) -> list[str]:
    return [record.task_id for record in page.records]


def _newest_first(redis_client: redis.Redis, ids: list[str]) -> list[str]:
    """The order of the indexes: submit time, then (within one ms) task id, descending."""
    submitted = {i: int(redis_client.hget(redis_keys.task(i), "submit_ms") or 0) for i in ids}
    return sorted(ids, key=lambda i: (submitted[i], i), reverse=True)


def _finish(redis_client: redis.Redis, task_id: str, status: TaskStatus, ttl: int = 3600) -> None:
    worker = WorkerTaskStore(redis_client, ttl, feed_depth=1000)
    assert worker.claim(task_id) is not None
    results = [{"key": "x/0.png"}] if status is TaskStatus.SUCCEEDED else []
    assert worker.finish(task_id, status, results, "" if results else "E", "" if results else "e")


def test_every_filter_reads_its_own_index_newest_first(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    ids = submit_many(redis_server.url, key, [XL, V15, XL, V15, XL, XL], POOL, feed_depth=1000)
    _finish(redis_client, ids[0], TaskStatus.SUCCEEDED)
    _finish(redis_client, ids[1], TaskStatus.FAILED)
    _finish(redis_client, ids[2], TaskStatus.FAILED)
    assert cancel_many(redis_server.url, name, [ids[3]]) == [TaskStatus.PENDING]
    WorkerTaskStore(redis_client, 3600, feed_depth=1000).claim(ids[4])  # RUNNING; ids[5] PENDING

    assert _ids(_list(redis_server, name)) == _newest_first(redis_client, ids)
    xl = _newest_first(redis_client, [ids[5], ids[4], ids[2], ids[0]])
    assert _ids(_list(redis_server, name, model=XL.model)) == xl
    failed = _newest_first(redis_client, [ids[2], ids[1]])
    assert _ids(_list(redis_server, name, status=TaskStatus.FAILED)) == failed
    assert _ids(_list(redis_server, name, model=XL.model, status=TaskStatus.FAILED)) == [ids[2]]
    assert _ids(_list(redis_server, name, status=TaskStatus.CANCELED)) == [ids[3]]
    assert _ids(_list(redis_server, name, status=TaskStatus.SUCCEEDED)) == [ids[0]]
    assert _ids(_list(redis_server, name, status=TaskStatus.RUNNING)) == [ids[4]]
    assert _ids(_list(redis_server, name, status=TaskStatus.PENDING)) == [ids[5]]
    assert _list(redis_server, name, status=TaskStatus.PENDING, model=V15.model).total == 0
    assert _list(redis_server, name, status=TaskStatus.UNKNOWN).total == 0
    assert _list(redis_server, name, model="no-such-model").total == 0
    assert _list(redis_server, "another-tenant").total == 0


def test_pages_and_time_ranges_are_exact(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    ids = submit_many(redis_server.url, key, [XL] * 7, POOL, feed_depth=1000)
    newest_first = _newest_first(redis_client, ids)
    for offset, limit in [(0, 3), (3, 3), (6, 3), (7, 3), (2, 100)]:
        page = _list(redis_server, name, offset=offset, limit=limit)
        assert page.total == 7 and _ids(page) == newest_first[offset : offset + limit]
    times = [r.submit_ms for r in _list(redis_server, name).records]  # newest first
    middle = _list(redis_server, name, start_ms=times[5], end_ms=times[1])
    assert _ids(middle) == [
        i for i, t in zip(newest_first, times, strict=True) if t in range(times[5], times[1] + 1)
    ]
    assert _list(redis_server, name, start_ms=times[0] + 1).total == 0


def test_unfinished_statuses_are_scanned_in_chunks(
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tenant: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, key = tenant
    ids = submit_many(redis_server.url, key, [XL] * 7, POOL, feed_depth=1000)
    for task_id in ids[::2]:  # 0, 2, 4, 6 RUNNING
        WorkerTaskStore(redis_client, 3600, feed_depth=1000).claim(task_id)
    monkeypatch.setattr(taskindex, "SCAN_CHUNK", 2)
    running = _list(redis_server, name, status=TaskStatus.RUNNING, offset=1, limit=2)
    assert running.total == 4 and _ids(running) == _newest_first(redis_client, ids[::2])[1:3]
    pending = _list(redis_server, name, status=TaskStatus.PENDING)
    assert pending.total == 3 and _ids(pending) == _newest_first(redis_client, ids[1::2])


def test_expired_records_leave_every_index(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    short, long_ = submit_many(redis_server.url, key, [XL, XL], POOL, feed_depth=1000)
    _finish(redis_client, short, TaskStatus.SUCCEEDED, ttl=1)
    _finish(redis_client, long_, TaskStatus.SUCCEEDED)
    entry = f"SUCCEEDED|{XL.model}|{short}"
    assert redis_client.zscore(redis_keys.tenant_expiring(name), entry) is not None
    indexes = [
        redis_keys.tenant_tasks(name),
        redis_keys.tenant_model_tasks(name, XL.model),
        redis_keys.tenant_status_tasks(name, "SUCCEEDED"),
        redis_keys.tenant_model_status_tasks(name, XL.model, "SUCCEEDED"),
    ]
    assert all(redis_client.zscore(index, short) is not None for index in indexes)
    time.sleep(1.2)
    page = _list(redis_server, name, status=TaskStatus.SUCCEEDED)
    assert page.total == 1 and _ids(page) == [long_]
    assert all(redis_client.zscore(index, short) is None for index in indexes)
    assert redis_client.zscore(redis_keys.tenant_expiring(name), entry) is None
    assert _list(redis_server, name).total == 1


def test_a_vanished_record_is_dropped_from_the_index_its_page_read(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    ids = submit_many(redis_server.url, key, [XL] * 3, POOL, feed_depth=1000)
    redis_client.delete(redis_keys.task(ids[1]))
    # A page wide enough to read all three: tasks submitted within one millisecond are
    # ordered by id, so a page of two might not come to the vanished one.
    page = _list(redis_server, name, limit=3)
    assert _ids(page) == _newest_first(redis_client, [ids[2], ids[0]]) and page.total == 2
    assert redis_client.zscore(redis_keys.tenant_tasks(name), ids[1]) is None


def test_index_keys_live_as_long_as_their_records(
    redis_server: RedisServer, redis_client: redis.Redis, tenant: tuple[str, str]
) -> None:
    name, key = tenant
    (task_id,) = submit_many(redis_server.url, key, [XL], POOL, feed_depth=1000)
    for index in (redis_keys.tenant_tasks(name), redis_keys.tenant_model_tasks(name, XL.model)):
        assert UNFINISHED_TTL_SECONDS - 60 < redis_client.ttl(index) <= UNFINISHED_TTL_SECONDS
    _finish(redis_client, task_id, TaskStatus.FAILED, ttl=120)
    for index in (
        redis_keys.tenant_status_tasks(name, "FAILED"),
        redis_keys.tenant_model_status_tasks(name, XL.model, "FAILED"),
        redis_keys.tenant_expiring(name),
    ):
        assert 60 < redis_client.ttl(index) <= 120


def test_lua_builders_of_the_listing_indexes_match(redis_server: RedisServer) -> None:
    redis_client = redis_server.client()
    script = scripts.compose(
        """
return {k_tasks('acme'), k_model_tasks('acme', 'm'), k_status_tasks('acme', 'FAILED'),
        k_model_status_tasks('acme', 'm', 'FAILED'), k_expiring('acme')}
""",
        ("keys",),
    )
    assert [name.decode() for name in redis_client.eval(script, 0)] == [
        redis_keys.tenant_tasks("acme"),
        redis_keys.tenant_model_tasks("acme", "m"),
        redis_keys.tenant_status_tasks("acme", "FAILED"),
        redis_keys.tenant_model_status_tasks("acme", "m", "FAILED"),
        redis_keys.tenant_expiring("acme"),
    ]
