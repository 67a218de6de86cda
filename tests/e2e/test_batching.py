"""Cross-request batching in a live worker (the session stack: one Celery process serving
both GPU pools, SYNTHGATE_MAX_BATCH at its default of 8): tasks queued while the worker is
busy run in one pipeline call, each one a task of its own to its client, and each image
equal to the same task's made alone."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import numpy as np
from fixtures.metrics import scrape
from fixtures.processes import wait_until
from fixtures.stack import Stack
from fixtures.tasks import body, submit, wait_status
from PIL import Image

from taskcore import redis_keys

V15, XL = "stable-diffusion-v1.5", "stable-diffusion-xl"
ROUNDING = 1


def _jobs() -> list[dict[str, Any]]:
    """Four SD1.5 tasks of one size and steps; prompts, negatives, scales and seeds differ."""
    return [
        {
            "model": V15,
            "input": {
                "prompt": f"a lighthouse {i}",
                **({"negative_prompt": "fog"} if i % 2 else {}),
            },
            "parameters": {"size": "512*512", "steps": 2, "seed": 40 + i, "scale": 3 + i},
        }
        for i in range(4)
    ]


def _ms(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp() * 1000


def _pixels(url: str) -> np.ndarray:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as image:
        return np.asarray(image, dtype=np.int16)


def test_tasks_queued_behind_a_busy_worker_run_as_one_batch_each_as_if_alone(
    stack: Stack, new_tenant: Callable[..., str]
) -> None:
    key = new_tenant()
    metrics_before = scrape(stack.worker_metrics_url())
    with httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30) as api:
        # The worker's one process is busy with a slower SDXL task while the four queue up.
        blocker = submit(api, body(XL, "a slow one", size="1024*1024", steps=8, seed=1))
        redis_client = stack.redis.client()
        wait_until(
            lambda: redis_client.hget(redis_keys.task(blocker), "status") == b"RUNNING",
            60,
            "the blocker to start",
            interval=0.02,
        )
        queued = [submit(api, job) for job in _jobs()]
        batched = [wait_status(api, task_id, {"SUCCEEDED"}, timeout=120) for task_id in queued]
        assert redis_client.hget(redis_keys.task(blocker), "status") == b"SUCCEEDED"
        # The same tasks again, one at a time: each alone in its pipeline call.
        alone = []
        for job in _jobs():
            alone.append(wait_status(api, submit(api, job), {"SUCCEEDED"}, timeout=60))
    metrics_after = scrape(stack.worker_metrics_url())

    on_pool = {"pool": "gpu.sd15", "model": V15}
    assert metrics_after.delta(metrics_before, "synthgate_worker_batch_tasks_count", **on_pool) == 1
    assert metrics_after.delta(metrics_before, "synthgate_worker_batch_tasks_sum", **on_pool) == 4
    assert "batch of 4 tasks (4 images) in one pipeline call" in stack.worker.log_text()
    for task_id, together, single in zip(queued, batched, alone, strict=True):
        output = together["output"]
        assert output["task_id"] == task_id
        assert output["task_metrics"] == {"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0}
        assert together["usage"] == {"image_count": 1}
        (result,) = output["results"]
        assert f"/{task_id}/0.png" in result["url"]
        difference = _pixels(result["url"]) - _pixels(single["output"]["results"][0]["url"])
        assert int(np.abs(difference).max()) <= ROUNDING
    started = sorted(_ms(answer["output"]["scheduled_time"]) for answer in batched)
    assert started[-1] - started[0] < 1000  # claimed together, not one after another's run
