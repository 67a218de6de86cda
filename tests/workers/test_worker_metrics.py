"""Worker metrics recorded in-process by run_generate, the uploader and the step hook, read
from prometheus_client's registry (a live worker's port is scraped in tests/e2e)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from fixtures.processes import RedisServer
from prometheus_client import REGISTRY

from taskcore.contract import GenerationRequest, ImageOutcome
from taskcore.records import TaskStatus
from taskcore.settings import Settings
from taskcore.store.claims import Claim
from taskcore.store.tasks import TaskStore
from taskcore.store.worker import WorkerTaskStore
from workers import metrics
from workers.backends import TaskFailed
from workers.generate import run_generate
from workers.metrics_http import serve_worker_metrics
from workers.runtime import WorkerRuntime
from workers.storage.local import LocalStorage

XL = "stable-diffusion-xl"
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


class ScriptedBackend:
    """Stands in for the GPU (the edge tests cannot have): image i fails when listed."""

    def __init__(self, failing: dict[int, str], task_error: TaskFailed | None = None) -> None:
        self.failing = failing
        self.task_error = task_error

    def generate(self, claim: Claim) -> list[ImageOutcome]:
        assert claim.request is not None
        if self.task_error is not None:
            raise self.task_error
        return [
            ImageOutcome(i, code=self.failing[i], message="no") if i in self.failing
            else ImageOutcome(i, png=PNG)
            for i in range(claim.request.n)
        ]  # fmt: skip


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("worker-metrics-redis"))
    server.start()
    yield server.url
    server.stop()


def _run(redis_url: str, tmp_path: Path, backend: ScriptedBackend, n: int) -> TaskStatus | None:
    task_id = str(uuid.uuid4())
    job = GenerationRequest(XL, "a cat", "", 512, 512, n, 2, 7.0, 1)

    async def create() -> None:
        redis_client = aioredis.Redis.from_url(redis_url)
        await TaskStore(redis_client, 3600).create(task_id, "acme", job, "gpu.sdxl")
        await redis_client.aclose()

    asyncio.run(create())
    settings = Settings(redis_url=redis_url, storage_dir=tmp_path)
    store = WorkerTaskStore(redis.Redis.from_url(redis_url), settings.task_ttl_seconds)
    runtime = WorkerRuntime(settings, store, LocalStorage(tmp_path), {"gpu.sdxl": backend})
    return run_generate(task_id, runtime)


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_tasks_and_images_are_counted_by_outcome_and_code(redis_url: str, tmp_path: Path) -> None:
    by_model = {"model": XL, "backend": "diffusers"}
    images, tasks = "synthgate_worker_images_total", "synthgate_worker_tasks_finished_total"
    on_pool = {"pool": "gpu.sdxl", "model": XL}
    series = {
        "images ok": (images, {**by_model, "outcome": "succeeded", "code": "none"}),
        "images algo": (images, {**by_model, "outcome": "failed", "code": "InternalError.Algo"}),
        "images upstream": (
            images,
            {**by_model, "outcome": "failed", "code": "InternalError.Upstream"},
        ),
        "tasks ok": (tasks, {**on_pool, "status": "SUCCEEDED", "code": "none"}),
        "tasks failed": (tasks, {**on_pool, "status": "FAILED", "code": "InternalError.Upstream"}),
        "runs": ("synthgate_worker_task_run_seconds_count", by_model),
        # The pool's queue wait, which the chart's alert takes the 95th percentile of.
        "waits": ("synthgate_worker_queue_wait_seconds_count", {**by_model, "pool": "gpu.sdxl"}),
    }
    before = {name: _value(metric, **labels) for name, (metric, labels) in series.items()}

    partial = ScriptedBackend({1: "InternalError.Algo"})
    assert _run(redis_url, tmp_path, partial, n=3) is TaskStatus.SUCCEEDED
    whole = ScriptedBackend({}, TaskFailed("InternalError.Upstream", "upstream said no"))
    assert _run(redis_url, tmp_path, whole, n=2) is TaskStatus.FAILED

    moved = {
        name: _value(metric, **labels) - before[name] for name, (metric, labels) in series.items()
    }
    assert moved == {
        "images ok": 2,
        "images algo": 1,
        "images upstream": 2,  # a task that failed as a whole failed each of its images
        "tasks ok": 1,
        "tasks failed": 1,
        "runs": 2,
        "waits": 2,
    }
    assert _value("synthgate_worker_tasks_running", pool="gpu.sdxl") == 0


def test_each_upload_attempt_is_timed_and_failed_ones_counted(tmp_path: Path) -> None:
    from workers.storage import StorageError
    from workers.storage.uploads import Backoff, Uploader

    class HiccupStorage(LocalStorage):
        failed = False

        def put(self, key: str, data: bytes) -> None:
            if not self.failed:
                self.failed = True
                raise StorageError("disk hiccup (simulated)", transient=True)
            super().put(key, data)

    attempts = _value("synthgate_worker_storage_upload_seconds_count", storage="hiccup")
    errors = _value("synthgate_worker_storage_errors_total", storage="hiccup", kind="transient")
    Uploader(HiccupStorage(tmp_path), Backoff(2, 0.01, 0.02), 2).put_all({"a/b/c/0.png": PNG})
    assert _value("synthgate_worker_storage_upload_seconds_count", storage="hiccup") == attempts + 2
    errors_now = _value("synthgate_worker_storage_errors_total", storage="hiccup", kind="transient")
    assert errors_now == errors + 1


def test_step_timer_times_the_steps_after_the_first() -> None:
    before = _value("synthgate_worker_diffusion_step_seconds_count", model="m-test")
    timer = metrics.StepTimer("m-test")
    for done in (1, 2, 3, 4):
        timer(done, 4)
    assert _value("synthgate_worker_diffusion_step_seconds_count", model="m-test") == before + 3


def test_error_code_labels_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_codes", set())  # this process's codes seen so far
    assert metrics.bounded_code("") == "none"
    assert metrics.bounded_code("InternalError.Algo") == "InternalError.Algo"
    assert metrics.bounded_code("a prompt with spaces, or worse") == "other"
    seen = {metrics.bounded_code(f"Code{i}") for i in range(200)}
    assert "other" in seen and len(seen) <= 65


def test_worker_metrics_refuse_to_start_once_prometheus_client_is_imported() -> None:
    assert serve_worker_metrics(Settings(worker_metrics_port=0)) is None
    with pytest.raises(RuntimeError, match="imported before"):
        serve_worker_metrics(Settings(worker_metrics_port=9))
