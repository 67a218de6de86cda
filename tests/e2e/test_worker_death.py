"""Workers that die or stop in the middle of a task: the task is finished anyway, once.

Real processes: a gateway and two workers of the sd15 pool (tiny demo pipeline on the
CPU), on a private Redis; a worker is killed with SIGKILL (its whole process group, as
when a pod dies), or stopped with SIGTERM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.chaos import (
    chaos_stack,
    finished_attempt,
    restart_dead_workers,
    wait_running_on_a_worker,
)
from fixtures.crashing_worker import CRASH
from fixtures.stack import Stack
from fixtures.tasks import FINAL, body, submit, wait_status

from taskcore import redis_keys
from taskcore.store.claims import POISON_CODE


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_weights_dir: Path) -> Iterator[Stack]:
    with chaos_stack(tmp_path_factory.mktemp("death"), demo_weights_dir) as running:
        yield running


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api, headers=stack.headers(), timeout=30) as http:
        yield http


@pytest.fixture
def revive(stack: Stack) -> Iterator[None]:
    """Restarts, after the test, any worker the test killed or stopped."""
    yield
    restart_dead_workers(stack)


def _record(stack: Stack, task_id: str, *fields: str) -> list[str | None]:
    redis_client = stack.redis.client()
    try:
        values = redis_client.hmget(redis_keys.task(task_id), list(fields))
    finally:
        redis_client.close()
    return [v.decode() if v is not None else None for v in values]


def _stored(stack: Stack, task_id: str) -> list[str]:
    return sorted(p.name for p in stack.storage_dir.rglob(f"{task_id}/*.png"))


def test_a_task_whose_worker_is_killed_is_finished_by_another_within_60s(
    stack: Stack, api: httpx.Client, revive: None
) -> None:
    task_id = submit(api, body(steps=60, n=4, seed=11))
    worker = wait_running_on_a_worker(stack, task_id)
    time.sleep(0.5)  # well into the pipeline call
    killed = time.time()
    worker.kill()

    data = wait_status(api, task_id, FINAL, timeout=90)
    output = data["output"]
    assert output["task_status"] == "SUCCEEDED", output
    assert output["task_metrics"] == {"TOTAL": 4, "SUCCEEDED": 4, "FAILED": 0}
    ended = int(_record(stack, task_id, "end_ms")[0] or 0) / 1000
    assert ended - killed < 60
    assert finished_attempt(stack, task_id) == 2
    assert _stored(stack, task_id) == ["0.png", "1.png", "2.png", "3.png"]
    for url in (r["url"] for r in output["results"]):
        assert httpx.get(url, timeout=10).status_code == 200


def test_a_poison_task_fails_after_max_attempts_while_the_others_finish(
    stack: Stack, api: httpx.Client, revive: None
) -> None:
    poison = submit(api, body(prompt=f"a cat {CRASH}", steps=2))
    others = [submit(api, body(prompt=f"a dog {i}", steps=4, seed=i)) for i in range(4)]

    output = wait_status(api, poison, FINAL, timeout=120)["output"]
    assert output["task_status"] == "FAILED"
    assert output["code"] == POISON_CODE
    assert "3 times" in output["message"]
    for task_id in others:
        assert wait_status(api, task_id, FINAL, timeout=120)["output"]["task_status"] == (
            "SUCCEEDED"
        )
    redis_client = stack.redis.client()
    try:
        assert redis_client.zcard(redis_keys.leases("gpu.sd15")) == 0
    finally:
        redis_client.close()


def test_a_poison_task_in_a_batch_costs_its_batch_mates_one_attempt_only(
    stack: Stack, api: httpx.Client, revive: None
) -> None:
    # Both workers busy (the second for longer), so the first to free takes the poison task
    # and its three queued companions as one batch, which kills its process.
    blockers = [submit(api, body(prompt="a slow one", steps=steps)) for steps in (20, 120)]
    for blocker in blockers:
        wait_running_on_a_worker(stack, blocker)
    poison = submit(api, body(prompt=f"a cat {CRASH}", steps=2))
    mates = [submit(api, body(prompt=f"a dog {i}", steps=2, seed=i)) for i in range(3)]

    output = wait_status(api, poison, FINAL, timeout=120)["output"]
    assert (output["task_status"], output["code"]) == ("FAILED", POISON_CODE)
    for task_id in mates:
        assert wait_status(api, task_id, FINAL, timeout=120)["output"]["task_status"] == (
            "SUCCEEDED"
        )
        # claimed in the lost batch, then once more, alone; never as many as the poison task
        assert finished_attempt(stack, task_id) == 2
    batches = [
        json.loads(line)["tasks"]
        for worker in stack.workers
        for line in worker.log_text().splitlines()
        if '"message": "batch of' in line or '"message":"batch of' in line
    ]
    assert [poison, *mates] in batches
    assert not any(poison in tasks for tasks in batches if tasks != [poison, *mates])


def test_sigterm_lets_the_running_task_finish_before_the_worker_exits(
    stack: Stack, api: httpx.Client, revive: None
) -> None:
    task_id = submit(api, body(steps=60, n=2, seed=5))
    worker = wait_running_on_a_worker(stack, task_id)
    process = worker.process
    assert process is not None
    worker.stop()  # SIGTERM: Celery's warm shutdown; waits for the process to exit
    assert process.returncode == 0
    output = wait_status(api, task_id, FINAL, timeout=30)["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert finished_attempt(stack, task_id) == 1  # finished by the worker it ran on
