"""run_generate with a real pipeline, Redis and storage, when images or the whole task fail."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from fixtures.stack import Stack
from fixtures.tenants import submit_direct

from taskcore.contract import GenerationRequest, image_key
from taskcore.records import TaskStatus
from taskcore.settings import Settings
from taskcore.store.claims import LeaseTerms
from taskcore.store.worker import WorkerTaskStore
from workers.backends.diffusion import DiffusersBackend
from workers.generate import run_generate, with_redis_retry
from workers.runtime import LocalBackend, WorkerRuntime
from workers.storage.local import LocalStorage

# A pool no live worker serves: these tests run the task themselves.
POOL = "test.direct"


class FlakyBackend(DiffusersBackend):
    """The real backend, whose pipeline call fails for batches and for chosen seeds."""

    def __init__(self, failing_seeds: set[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failing_seeds = failing_seeds
        self.on_seeds: Callable[[list[int]], None] = lambda seeds: None

    def _run_pipeline(self, pipe, generators, request, on_step):  # type: ignore[no-untyped-def]
        seeds = {g.initial_seed() for g in generators}
        self.on_seeds(sorted(seeds))
        if (len(generators) > 1 and self.failing_seeds) or seeds & self.failing_seeds:
            raise RuntimeError("CUDA out of memory (simulated)")
        result: np.ndarray = super()._run_pipeline(pipe, generators, request, on_step)
        return result


def _runtime(
    stack: Stack, demo_weights_dir: Path, tmp_path: Path, failing: set[int]
) -> WorkerRuntime:
    settings = Settings(redis_url=stack.redis.url, storage_dir=tmp_path)
    backend = FlakyBackend(
        failing, weights={"sd15": None}, demo_cache_dir=demo_weights_dir, device="cpu"
    )
    return WorkerRuntime(
        settings=settings,
        store=WorkerTaskStore(stack.redis.client(), settings.task_ttl_seconds, feed_depth=2),
        storage=LocalStorage(tmp_path),
        backends={POOL: LocalBackend(backend, settings.catalog)},
    )


def _create(stack: Stack, api_key: str, job: GenerationRequest) -> str:
    return submit_direct(stack.redis.url, api_key, job, POOL)


@pytest.fixture
def tenant(new_tenant: Callable[..., str], stack: Stack) -> tuple[str, httpx.Client]:
    """A new tenant's key, and a client of the live gateway with it."""
    key = new_tenant()
    return key, httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=10)


def test_partial_failure_succeeds_and_counts_only_good_images(
    stack: Stack, demo_weights_dir: Path, tmp_path: Path, tenant: tuple[str, httpx.Client]
) -> None:
    key, api = tenant
    job = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 3, 1, 7.0, 500)
    task_id = _create(stack, key, job)
    runtime = _runtime(stack, demo_weights_dir, tmp_path, failing={501})
    assert run_generate(task_id, runtime) is TaskStatus.SUCCEEDED
    data = api.get(f"/tasks/{task_id}").json()
    output = data["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert output["task_metrics"] == {"TOTAL": 3, "SUCCEEDED": 2, "FAILED": 1}
    assert data["usage"] == {"image_count": 2}
    assert "url" in output["results"][0] and "url" in output["results"][2]
    assert output["results"][1]["code"] == "InternalError.Algo"
    assert "out of memory" in output["results"][1]["message"]
    stored = sorted(p.name for p in tmp_path.rglob("*.png"))
    assert stored == ["0.png", "2.png"]


def test_all_images_failing_fails_the_task_with_code_and_no_usage(
    stack: Stack, demo_weights_dir: Path, tmp_path: Path, tenant: tuple[str, httpx.Client]
) -> None:
    key, api = tenant
    job = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 2, 1, 7.0, 700)
    task_id = _create(stack, key, job)
    runtime = _runtime(stack, demo_weights_dir, tmp_path, failing={700, 701})
    assert run_generate(task_id, runtime) is TaskStatus.FAILED
    data = api.get(f"/tasks/{task_id}").json()
    assert data["output"]["task_status"] == "FAILED"
    assert data["output"]["code"] == "InternalError.Algo"
    assert data["output"]["message"]
    assert data["output"]["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 2}
    assert "usage" not in data


def test_a_canceled_task_is_not_run(
    stack: Stack, demo_weights_dir: Path, tmp_path: Path, tenant: tuple[str, httpx.Client]
) -> None:
    key, api = tenant
    job = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 1, 7.0, 1)
    task_id = _create(stack, key, job)
    assert api.post(f"/tasks/{task_id}/cancel").status_code == 200
    assert run_generate(task_id, _runtime(stack, demo_weights_dir, tmp_path, set())) is None
    assert api.get(f"/tasks/{task_id}").json()["output"]["task_status"] == "CANCELED"
    assert not list(tmp_path.rglob("*.png"))


def test_a_task_taken_over_makes_and_stores_only_the_images_not_stored_before(
    stack: Stack, demo_weights_dir: Path, tmp_path: Path, tenant: tuple[str, httpx.Client]
) -> None:
    key, api = tenant
    job = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 4, 1, 7.0, 900)
    task_id = _create(stack, key, job)
    # A first worker stored images 0 and 2, then died: its lease ran out.
    dead = WorkerTaskStore(
        stack.redis.client(), 3600, lease=LeaseTerms(worker="dead:1", lease_seconds=0.001)
    )
    first = dead.claim(task_id)
    assert first is not None and first.runnable
    for index in (0, 2):
        LocalStorage(tmp_path).put(image_key(first.tenant, task_id, index, first.submit_ms), b"x")
    assert dead.mark_stored(task_id, [0, 2])
    time.sleep(0.01)

    runtime = _runtime(stack, demo_weights_dir, tmp_path, failing=set())
    backend = runtime.backends[POOL]
    assert isinstance(backend, LocalBackend) and isinstance(backend.diffusers, FlakyBackend)
    made: list[int] = []
    backend.diffusers.on_seeds = made.extend
    assert run_generate(task_id, runtime) is TaskStatus.SUCCEEDED
    assert sorted(made) == [901, 903]  # images 1 and 3 only
    output = api.get(f"/tasks/{task_id}").json()["output"]
    assert output["task_metrics"] == {"TOTAL": 4, "SUCCEEDED": 4, "FAILED": 0}
    assert [r["url"].split("?")[0].rsplit("/", 1)[1] for r in output["results"]] == [
        "0.png",
        "1.png",
        "2.png",
        "3.png",
    ]
    kept = {p.name: p.read_bytes() for p in tmp_path.rglob("*.png")}
    assert kept["0.png"] == b"x" and kept["2.png"] == b"x"  # not made or stored again


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("Connection refused"),
        redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'"),
    ],
)
def test_a_claim_waits_out_a_restarting_or_full_redis_then_gives_up(error: Exception) -> None:
    calls: list[float] = []

    def claim() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise error
        return "claimed"

    assert with_redis_retry(claim, within=10) == "claimed"
    calls.clear()

    def never() -> str:
        calls.append(time.monotonic())
        raise error

    with pytest.raises(type(error)):
        with_redis_retry(never, within=0.5)
    assert len(calls) >= 2 and calls[-1] - calls[0] >= 0.4  # it kept trying for ~0.5 s


def test_other_redis_errors_are_not_retried() -> None:
    calls: list[int] = []

    def claim() -> str:
        calls.append(1)
        raise redis.ResponseError("WRONGTYPE")

    with pytest.raises(redis.ResponseError):
        with_redis_retry(claim, within=10)
    assert calls == [1]
