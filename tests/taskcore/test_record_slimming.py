"""A finished record keeps only what its readers use, with results stored compactly, and reads
back the same (see bench/README.md, "Record size")."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer
from fixtures.tenants import submit_many

from gateway.tenancy.usage import utc_day
from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.records import TaskRecord, TaskStatus, decode_results, encode_results
from taskcore.store.tasks import TaskStore
from taskcore.store.worker import WorkerTaskStore

JOB = GenerationRequest("stable-diffusion-xl", "a cat", "", 512, 512, 4, 5, 7.0, 1)
POOL = "test.slim"  # no worker serves it
RUN_ONLY = {"stage", "claimed_ms", "attempts", "day", "n", "priority"}


def test_results_keep_keys_relative_to_their_shared_folder() -> None:
    folder = "acme/2024-01-01/t-1/"
    results = [
        {"key": folder + "0.png"},
        {"code": "InternalError.Algo", "message": "boom"},
        {"key": folder + "2.png"},
    ]
    stored = encode_results(results)
    assert stored == (
        b'{"dir":"acme/2024-01-01/t-1/","images":["0.png",'
        b'{"code":"InternalError.Algo","message":"boom"},"2.png"]}'
    )
    assert decode_results(stored) == results


@pytest.mark.parametrize(
    "results",
    [
        [],
        [{"code": "E", "message": "m"}],
        [{"key": "a/0.png"}, {"key": "b/1.png"}],  # no folder in common
        [{"key": "flat.png"}],
    ],
)
def test_results_without_a_common_folder_stay_a_plain_list(results: list[dict[str, str]]) -> None:
    stored = encode_results(results)
    assert stored.startswith(b"[") and decode_results(stored) == results


def test_records_written_before_the_compact_form_still_read() -> None:
    assert decode_results(b'[{"key":"acme/x/0.png"}]') == [{"key": "acme/x/0.png"}]


def _record(redis_server: RedisServer, task_id: str, tenant: str) -> TaskRecord | None:
    async def main() -> TaskRecord | None:
        redis_client = aioredis.Redis.from_url(redis_server.url)
        try:
            return await TaskStore(redis_client, 3600).get(task_id, tenant)
        finally:
            await redis_client.aclose()

    return asyncio.run(main())


def test_finishing_drops_what_only_an_unfinished_task_needs(
    redis_server: RedisServer, new_tenant: Callable[..., str]
) -> None:
    name = "t-" + uuid.uuid4().hex[:8]
    good, bad = submit_many(redis_server.url, new_tenant(name), [JOB, JOB], POOL)
    redis_client = redis_server.client()
    worker = WorkerTaskStore(redis_client, 3600, feed_depth=1000)
    for task_id in (good, bad):
        assert worker.claim(task_id) is not None
    folder = f"{name}/2024-01-01/{good}/"
    results = [{"key": f"{folder}{i}.png"} for i in range(4)]
    assert worker.finish(good, TaskStatus.SUCCEEDED, results)
    assert worker.finish(bad, TaskStatus.FAILED, [], "InternalError.Algo", "it broke")

    kept = {field.decode() for field in redis_client.hkeys(redis_keys.task(good))}
    assert not kept & (RUN_ONLY | {"code", "message", "envelope"}), kept
    stored = redis_client.hget(redis_keys.task(good), "results")
    assert isinstance(stored, bytes) and stored.startswith(b'{"dir":')
    record = _record(redis_server, good, name)
    assert record is not None and record.results == results and record.usage() == {"image_count": 4}
    failed = _record(redis_server, bad, name)
    assert failed is not None and (failed.code, failed.message) == (
        "InternalError.Algo",
        "it broke",
    )
    assert failed.metrics() == {"TOTAL": 4, "SUCCEEDED": 0, "FAILED": 4}
    # the day's counters were settled from the fields before they went
    usage = redis_client.hgetall(redis_keys.tenant_usage(name, utc_day(record.submit_ms)))
    assert usage[b"images_succeeded"] == b"4" and usage[b"images_failed"] == b"4"
    assert usage[b"images"] == b"4"
