"""Real workers end tasks; the tenant's slots and unmade images come back each time."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import httpx
from fixtures.stack import Stack
from fixtures.tasks import SUBMIT, body, run_task

from gateway.tenancy.usage import utc_day
from taskcore import redis_keys
from taskcore.clock import now_ms


def test_slots_and_unmade_images_come_back_after_a_real_success_and_failure(
    stack: Stack, upstream: Stack, new_tenant: Callable[..., str]
) -> None:
    name = "t-" + secrets.token_hex(4)
    key = new_tenant(name, max_concurrent=1, daily_images=5)
    gpu = httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30)
    up = httpx.Client(base_url=upstream.api, headers=upstream.headers(key), timeout=30)
    done = run_task(gpu, body("stable-diffusion-v1.5", n=2, steps=1))  # the GPU worker
    assert done["output"]["task_status"] == "SUCCEEDED"
    failed = run_task(up, body("stable-diffusion-xl", prompt="sim:fail-task", n=3))  # upstream
    assert failed["output"]["task_status"] == "FAILED"
    redis_client = stack.redis.client()
    assert redis_client.zcard(redis_keys.tenant_active(name)) == 0
    usage = redis_client.hgetall(redis_keys.tenant_usage(name, utc_day(now_ms())))
    assert int(usage[b"images"]) == 2  # billed: the two images made; the failed 3 came back
    assert int(usage[b"tasks_succeeded"]) == int(usage[b"tasks_failed"]) == 1
    # The one slot and 3 of the 5 images are free again: exactly one more n=3 task fits.
    assert gpu.post(SUBMIT, json=body(n=3, steps=1)).status_code == 200
    refused = up.post(SUBMIT, json=body(n=1, steps=1))
    assert refused.json()["code"] == "Throttling.AllocationQuota"
