"""Upstream pool end to end: gateway → upstream worker → DashScope simulator (own process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures.simulator import UPSTREAM_KEY, SimulatorProcess
from fixtures.stack import Stack
from fixtures.tasks import FINAL, body, png_size, submit, wait_status

XL = "stable-diffusion-xl"


@pytest.fixture
def api(upstream: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.api, headers=upstream.headers(), timeout=30) as http:
        yield http


def _finish_all(api: httpx.Client, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = [submit(api, payload) for payload in payloads]
    return [wait_status(api, task_id, FINAL, timeout=60)["output"] for task_id in ids]


def test_upstream_success_copies_images_into_our_storage(
    upstream: Stack, api: httpx.Client
) -> None:
    done = wait_status(api, submit(api, body(XL, size="768*512", n=2, seed=5)), FINAL)
    output = done["output"]
    assert output["task_status"] == "SUCCEEDED", output
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    assert done["usage"] == {"image_count": 2}
    images = []
    for result in output["results"]:
        assert result["url"].startswith(upstream.base_url + "/files/")  # ours, not upstream's
        images.append(httpx.get(result["url"], timeout=10).content)
    assert [png_size(image) for image in images] == [(768, 512), (768, 512)]
    assert images[0] != images[1]  # seed and seed+1 went upstream


def test_partial_failure_keeps_the_good_images(api: httpx.Client) -> None:
    [output] = _finish_all(api, [body(XL, prompt="a cat sim:fail-image=1", n=3)])
    assert output["task_status"] == "SUCCEEDED"
    assert output["task_metrics"] == {"TOTAL": 3, "SUCCEEDED": 2, "FAILED": 1}
    assert output["results"][1]["code"] == "InternalError.Timeout"
    assert "url" in output["results"][0] and "url" in output["results"][2]


def test_upstream_failed_task_fails_with_its_code_and_message(api: httpx.Client) -> None:
    [output] = _finish_all(api, [body(XL, prompt="a cat sim:fail-task", n=2)])
    assert output["task_status"] == "FAILED"
    assert output["code"] == "InternalError.Algo"
    assert output["message"] == "Simulated task failure."
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 2}


@pytest.mark.parametrize(
    "faults",
    [
        {"rate_429": 0.5, "retry_after_seconds": 0.1},
        {"rate_5xx": 0.4},
        {"rate_malformed": 0.4},
    ],
    ids=["429-storm", "5xx", "malformed-json"],
)
def test_transient_upstream_faults_are_retried_to_success(
    api: httpx.Client, simulator: SimulatorProcess, faults: dict[str, float]
) -> None:
    before = simulator.stats()["requests"]
    simulator.configure(**faults)
    outputs = _finish_all(api, [body(XL, n=1, seed=i) for i in range(8)])
    assert [o["task_status"] for o in outputs] == ["SUCCEEDED"] * 8
    after = simulator.stats()["requests"]
    injected = sum(after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("fault."))
    assert injected > 0


def test_a_hanging_poll_times_out_and_is_retried(
    api: httpx.Client, simulator: SimulatorProcess
) -> None:
    hangs = simulator.stats()["requests"].get("fault.hang", 0)
    [output] = _finish_all(api, [body(XL, prompt="a cat sim:hang-polls=1")])
    assert output["task_status"] == "SUCCEEDED"
    assert simulator.stats()["requests"]["fault.hang"] == hangs + 1


def test_an_upstream_that_keeps_hanging_fails_at_the_deadline_not_never(
    api: httpx.Client,
) -> None:
    # 2 s per hung request, an 8 s deadline: the task must end FAILED, not stay RUNNING.
    [output] = _finish_all(api, [body(XL, prompt="a cat sim:hang-polls=20")])
    assert output["task_status"] == "FAILED"
    assert output["code"] == "InternalError.Timeout"


def test_an_upstream_that_never_finishes_fails_at_the_deadline(api: httpx.Client) -> None:
    [output] = _finish_all(api, [body(XL, prompt="a cat sim:never")])
    assert output["task_status"] == "FAILED"
    assert output["code"] == "InternalError.Timeout"
    assert "deadline" in output["message"]


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        ("sim:result-404", "InternalError.ResultUnavailable"),
        ("sim:oversized", "InternalError.ResultRejected"),
        ("sim:not-image", "InternalError.ResultRejected"),
    ],
)
def test_bad_result_urls_become_failed_images_not_lost_tasks(
    api: httpx.Client, directive: str, code: str
) -> None:
    [output] = _finish_all(api, [body(XL, prompt=f"a cat {directive}", n=2)])
    assert output["task_status"] == "FAILED"
    assert output["code"] == code
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 0, "FAILED": 2}


def test_rejected_service_key_fails_tasks_without_revealing_it(
    upstream: Stack, api: httpx.Client, simulator: SimulatorProcess
) -> None:
    simulator.configure(api_key="sk-some-other-key")
    [output] = _finish_all(api, [body(XL)])
    assert output["task_status"] == "FAILED"
    assert output["code"] == "InternalError.Upstream"
    assert UPSTREAM_KEY not in str(output)


def test_the_upstream_key_never_reaches_logs_or_records(upstream: Stack, api: httpx.Client) -> None:
    _finish_all(api, [body(XL, prompt="a cat sim:fail-task"), body(XL)])
    assert UPSTREAM_KEY not in upstream.logs()
    redis_client = upstream.redis.client()
    for key in redis_client.scan_iter(match="synthgate:task:*"):
        assert UPSTREAM_KEY.encode() not in b"".join(redis_client.hgetall(key).values())


def test_the_worker_keeps_its_in_flight_limit_at_the_upstream(
    api: httpx.Client, simulator: SimulatorProcess
) -> None:
    # The stack's worker runs up to 32 upstream tasks at once; a task's slot frees when
    # the upstream has finished it, while its images are still being copied.
    earlier = int(simulator.stats()["open"])  # other tests' tasks that never end upstream
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(int(simulator.stats()["open"]) - earlier)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        outputs = _finish_all(api, [body(XL, prompt="a cat sim:latency=0.5")] * 80)
    finally:
        done.set()
        sampler.join()
    assert [o["task_status"] for o in outputs] == ["SUCCEEDED"] * 80
    assert 16 <= max(samples) <= 32, samples
