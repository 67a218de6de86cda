"""run_generate forming cross-request batches, with a real Redis and a backend that records
its calls (no pipeline): who joins a batch, each task's own life, and failure isolation.

A test delivers the pool's next message as Celery would (takes it off the queue) and runs
it with ``run_generate``; its pool is one no live worker serves.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import redis
from fixtures.processes import RedisServer
from fixtures.tenants import cancel_many, submit_many
from prometheus_client import REGISTRY

from taskcore import redis_keys
from taskcore.catalog import Catalog
from taskcore.contract import GenerationRequest, ImageOutcome
from taskcore.records import TaskStatus
from taskcore.settings import Settings
from taskcore.store.claims import Claim, LeaseTerms
from taskcore.store.worker import WorkerTaskStore
from workers.backends.diffusion import DiffusersBackend
from workers.generate import run_generate
from workers.runtime import LocalBackend, WorkerRuntime
from workers.storage.local import LocalStorage

V15 = "stable-diffusion-v1.5"
JOB = GenerationRequest(V15, "a cat", "", 512, 512, 1, 2, 7.0, 1)
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


class RecordingBackend(LocalBackend):
    """Makes fake images and records each call's task ids; a batch call raises when told."""

    def __init__(self, catalog: Catalog, batch_error: Exception | None = None) -> None:
        super().__init__(cast(DiffusersBackend, None), catalog)
        self.batch_error = batch_error
        self.calls: list[list[str]] = []

    def generate(self, claim: Claim) -> list[ImageOutcome]:
        self.calls.append([claim.task_id])
        return _images(claim)

    def generate_batch(self, claims: Sequence[Claim]) -> list[list[ImageOutcome]]:
        self.calls.append([claim.task_id for claim in claims])
        if self.batch_error is not None:
            raise self.batch_error
        return [_images(claim) for claim in claims]


def _images(claim: Claim) -> list[ImageOutcome]:
    assert claim.request is not None
    return [ImageOutcome(i, png=PNG) for i in range(claim.request.n) if i not in claim.stored]


@pytest.fixture
def pool() -> str:
    return "test.batches." + uuid.uuid4().hex[:8]


@pytest.fixture
def tenant(new_tenant: Callable[..., str]) -> tuple[str, str]:
    name = "t-" + uuid.uuid4().hex[:8]
    return name, new_tenant(name)


def _runtime(
    redis_server: RedisServer, tmp_path: Path, pool: str, backend_error: Exception | None = None,
    **settings: Any,
) -> tuple[WorkerRuntime, RecordingBackend]:  # fmt: skip
    config = Settings(redis_url=redis_server.url, storage_dir=tmp_path, **settings)
    backend = RecordingBackend(config.catalog, backend_error)
    store = WorkerTaskStore(redis_server.client(), config.task_ttl_seconds, feed_depth=2)
    return WorkerRuntime(config, store, LocalStorage(tmp_path), {pool: backend}), backend


def _deliver(redis_server: RedisServer, pool: str, runtime: WorkerRuntime) -> TaskStatus | None:
    """Take the next message off the pool's queue, as Celery does, and run its task."""
    raw = redis_server.client().rpop(redis_keys.celery_queue(pool))
    assert raw is not None
    task_id: str = json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0]
    return run_generate(task_id, runtime)


def _record(redis_server: RedisServer, task_id: str) -> dict[str, str]:
    raw = redis_server.client().hgetall(redis_keys.task(task_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def _batches(pool: str) -> float:
    labels = {"pool": pool, "model": V15}
    return REGISTRY.get_sample_value("synthgate_worker_batch_tasks_count", labels) or 0.0


def test_a_worker_runs_the_queued_compatible_tasks_in_one_call_each_with_its_own_life(
    redis_server: RedisServer, tmp_path: Path, pool: str, tenant: tuple[str, str]
) -> None:
    jobs = [replace(JOB, seed=i, n=1 + i % 2) for i in range(4)]  # 6 images
    ids = submit_many(redis_server.url, tenant[1], jobs, pool)
    runtime, backend = _runtime(redis_server, tmp_path, pool)
    assert _deliver(redis_server, pool, runtime) is TaskStatus.SUCCEEDED
    assert backend.calls == [ids]
    assert _batches(pool) == 1
    for task_id, job in zip(ids, jobs, strict=True):
        record = _record(redis_server, task_id)
        assert record["status"] == "SUCCEEDED"
        results = json.loads(record["results"])
        assert [image for image in results["images"]] == [f"{i}.png" for i in range(job.n)]
        assert task_id in results["dir"]
        assert record["images_done"] == str(job.n)
    assert sorted(p.parent.name for p in tmp_path.rglob("*.png")) == sorted(
        task_id for task_id, job in zip(ids, jobs, strict=True) for _ in range(job.n)
    )
    client = redis_server.client()
    assert client.zcard(redis_keys.leases(pool)) == 0
    assert client.zcard(redis_keys.starting(pool)) == 0


def test_a_batch_holds_at_most_max_batch_images_and_max_batch_1_turns_it_off(
    redis_server: RedisServer, tmp_path: Path, pool: str, tenant: tuple[str, str]
) -> None:
    ids = submit_many(redis_server.url, tenant[1], [JOB] * 5, pool)
    runtime, backend = _runtime(redis_server, tmp_path, pool, max_batch=3)
    _deliver(redis_server, pool, runtime)
    assert backend.calls == [ids[:3]]
    off, alone = _runtime(redis_server, tmp_path, pool, max_batch=1)
    _deliver(redis_server, pool, off)
    assert alone.calls == [[ids[3]]]


def test_a_worker_waits_batch_wait_ms_for_companions_while_none_is_queued(
    redis_server: RedisServer, tmp_path: Path, pool: str, tenant: tuple[str, str]
) -> None:
    (first,) = submit_many(redis_server.url, tenant[1], [JOB], pool)
    late: list[str] = []

    def submit_later() -> None:
        time.sleep(0.1)
        late.extend(submit_many(redis_server.url, tenant[1], [JOB], pool))

    runtime, backend = _runtime(redis_server, tmp_path, pool, batch_wait_ms=2000)
    thread = threading.Thread(target=submit_later)
    thread.start()
    _deliver(redis_server, pool, runtime)
    thread.join()
    assert backend.calls == [[first, *late]]


def test_a_batch_that_raises_makes_each_task_alone(
    redis_server: RedisServer, tmp_path: Path, pool: str, tenant: tuple[str, str]
) -> None:
    ids = submit_many(redis_server.url, tenant[1], [JOB] * 3, pool)
    error = ValueError("a batch the backend cannot make (simulated)")
    runtime, backend = _runtime(redis_server, tmp_path, pool, error)
    assert _deliver(redis_server, pool, runtime) is TaskStatus.SUCCEEDED
    assert backend.calls == [ids, *([task_id] for task_id in ids)]
    assert [_record(redis_server, t)["status"] for t in ids] == ["SUCCEEDED"] * 3


def test_a_task_claimed_before_runs_alone_and_takes_no_companions(
    redis_server: RedisServer,
    tmp_path: Path,
    pool: str,
    tenant: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    lost, *others = submit_many(redis_server.url, tenant[1], [JOB] * 3, pool)
    client = redis_server.client()
    # A worker took `lost` (maybe in a batch) and died; the takeover queued it again.
    client.rpop(redis_keys.celery_queue(pool))
    dead = WorkerTaskStore(client, 3600, lease=LeaseTerms("dead:1", lease_seconds=0.001))
    assert dead.claim(lost) is not None
    envelope = client.hget(redis_keys.task(lost), "envelope")
    assert envelope is not None
    client.rpush(redis_keys.celery_queue(pool), envelope)
    time.sleep(0.01)

    runtime, backend = _runtime(redis_server, tmp_path, pool)
    assert _deliver(redis_server, pool, runtime) is TaskStatus.SUCCEEDED
    assert backend.calls == [[lost]]
    assert f"task {lost}: attempt 2" in caplog.text
    _deliver(redis_server, pool, runtime)  # its former batch-mates, together
    assert backend.calls[1:] == [others]


def test_a_companion_canceled_while_pending_is_left_out(
    redis_server: RedisServer, tmp_path: Path, pool: str, tenant: tuple[str, str]
) -> None:
    first, canceled, mate = submit_many(redis_server.url, tenant[1], [JOB] * 3, pool)
    assert cancel_many(redis_server.url, tenant[0], [canceled]) == [TaskStatus.PENDING]
    runtime, backend = _runtime(redis_server, tmp_path, pool)
    _deliver(redis_server, pool, runtime)
    assert backend.calls == [[first, mate]]
    assert _record(redis_server, canceled)["status"] == "CANCELED"
    assert not list(tmp_path.rglob(f"{canceled}/*.png"))
    assert redis_server.client().llen(redis_keys.celery_queue(pool)) == 0


def test_no_batch_when_redis_refuses_the_take(
    redis_server: RedisServer,
    tmp_path: Path,
    pool: str,
    tenant: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, mate = submit_many(redis_server.url, tenant[1], [JOB] * 2, pool)
    runtime, backend = _runtime(redis_server, tmp_path, pool)

    def refused(*_: object) -> None:
        raise redis.exceptions.OutOfMemoryError(
            "command not allowed when used memory > 'maxmemory'"
        )

    monkeypatch.setattr(runtime.store, "take_batch", refused)
    assert _deliver(redis_server, pool, runtime) is TaskStatus.SUCCEEDED
    assert backend.calls == [[first]]
    assert _record(redis_server, mate)["status"] == "PENDING"
