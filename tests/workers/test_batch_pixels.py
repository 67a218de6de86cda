"""A task made in a cross-request batch equals the same task made alone, pixel by pixel
(within PNG rounding), through the worker's whole path: submit script, batch take, claims,
the tiny pipeline, storage, finish."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.processes import RedisServer
from fixtures.tenants import submit_many
from PIL import Image

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.settings import Settings
from taskcore.store.worker import WorkerTaskStore
from workers.backends.diffusion import DiffusersBackend
from workers.backends.sampling import ImageSpec, StepHook
from workers.generate import run_generate
from workers.runtime import LocalBackend, WorkerRuntime
from workers.storage.local import LocalStorage

ROUNDING = 1  # float noise may flip one PNG level


class CountingBackend(DiffusersBackend):
    """The real backend, counting the images of each batched pipeline call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_calls: list[int] = []

    def _run_batch(
        self, pipe: Any, specs: list[ImageSpec], shape: GenerationRequest, on_step: StepHook | None
    ) -> Any:
        self.batch_calls.append(len(specs))
        return super()._run_batch(pipe, specs, shape, on_step)


def _jobs(model: str) -> list[GenerationRequest]:
    return [
        GenerationRequest(model, "a lighthouse at dusk", "blurry", 512, 512, 2, 2, 7.0, 10),
        GenerationRequest(model, "a red fox in snow", "", 512, 512, 1, 2, 3.0, 99),
        GenerationRequest(model, "an empty room", "people", 512, 512, 1, 2, 1.0, 5),  # unguided
    ]


def _run_all(
    redis_server: RedisServer,
    demo_weights_dir: Path,
    folder: Path,
    api_key: str,
    jobs: list[GenerationRequest],
    max_batch: int,
) -> tuple[list[list[np.ndarray]], CountingBackend]:
    """Submit ``jobs`` to a pool of their own and deliver its messages until none is left;
    each task's stored images."""
    pool = "test.pixels." + uuid.uuid4().hex[:8]
    ids = submit_many(redis_server.url, api_key, jobs, pool)
    settings = Settings(redis_url=redis_server.url, storage_dir=folder, max_batch=max_batch)
    diffusers = CountingBackend({"sd15": None, "sdxl": None}, demo_weights_dir, device="cpu")
    store = WorkerTaskStore(redis_server.client(), settings.task_ttl_seconds)
    backend = LocalBackend(diffusers, settings.catalog)
    runtime = WorkerRuntime(settings, store, LocalStorage(folder), {pool: backend})
    client = redis_server.client()
    while (raw := client.rpop(redis_keys.celery_queue(pool))) is not None:
        run_generate(json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0], runtime)
    images = []
    for task_id, job in zip(ids, jobs, strict=True):
        files = sorted(folder.rglob(f"{task_id}/*.png"))
        assert [f.name for f in files] == [f"{i}.png" for i in range(job.n)]
        images.append([_pixels(f.read_bytes()) for f in files])
    return images, diffusers


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("model", ["stable-diffusion-v1.5", "stable-diffusion-xl"])
def test_tasks_batched_by_the_worker_equal_the_same_tasks_made_alone(
    redis_server: RedisServer,
    demo_weights_dir: Path,
    tmp_path: Path,
    new_tenant: Callable[..., str],
    model: str,
) -> None:
    key, jobs = new_tenant(), _jobs(model)
    together, batching = _run_all(redis_server, demo_weights_dir, tmp_path / "on", key, jobs, 8)
    alone, single = _run_all(redis_server, demo_weights_dir, tmp_path / "off", key, jobs, 1)
    assert batching.batch_calls == [4]  # the three tasks' four images in one call
    assert single.batch_calls == []
    for batched_images, alone_images in zip(together, alone, strict=True):
        for batched, single_image in zip(batched_images, alone_images, strict=True):
            assert int(np.abs(batched - single_image).max()) <= ROUNDING
    assert int(np.abs(together[0][0] - together[0][1]).max()) > 8  # the images do differ
