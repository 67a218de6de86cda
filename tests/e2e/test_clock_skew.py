"""Workers whose clocks disagree: every lease, deadline and requeue is judged on Redis' clock.

Two workers of the sd15 pool (tiny demo pipeline on the CPU, short leases, a reap every
0.5 s) on a private Redis; one runs under libfaketime 40 s ahead (Debian's ``faketime``
package, which ``make test`` installs), as a node whose clock drifted or stepped would. A
worker that judged leases by its own clock would see every lease of the other worker as
expired and take its tasks over.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.chaos import CHAOS_ENV, POOL, finished_attempt
from fixtures.processes import running_redis
from fixtures.stack import Stack, start_stack
from fixtures.tasks import FINAL, body, submit, wait_status

# Debian puts it under the architecture's folder: /usr/lib/x86_64-linux-gnu/faketime/...
LIBFAKETIME = next(iter(sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))), None)
AHEAD_SECONDS = 40


@pytest.fixture(scope="module")
def skewed_stack(
    tmp_path_factory: pytest.TempPathFactory, demo_weights_dir: Path
) -> Iterator[Stack]:
    assert LIBFAKETIME is not None, "libfaketime is not installed (make test installs it)"
    skewed = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": f"+{AHEAD_SECONDS}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_DONT_RESET": "1",  # forked pool processes keep the offset
    }
    env = {**CHAOS_ENV, "SYNTHGATE_DEMO_WEIGHTS_DIR": str(demo_weights_dir)}
    workdir = tmp_path_factory.mktemp("skew")
    with (
        running_redis(tmp_path_factory.mktemp("skew-redis")) as redis,
        start_stack(redis, workdir, env, [POOL, POOL], worker_envs=[{}, skewed]) as stack,
    ):
        yield stack


def test_a_worker_whose_clock_is_40s_ahead_starts_no_task_twice(skewed_stack: Stack) -> None:
    stack = skewed_stack
    ahead = stack.workers[1]
    assert ahead.process is not None
    environ = Path(f"/proc/{ahead.process.pid}/environ").read_bytes()
    assert f"FAKETIME=+{AHEAD_SECONDS}s".encode() in environ  # the skewed one is running
    with httpx.Client(base_url=stack.api, headers=stack.headers(), timeout=30) as api:
        # Each task runs for a few leases, so both reapers look at it while it runs; steps
        # differ, so no two share a pipeline call and both workers get tasks.
        tasks = [submit(api, body(prompt=f"skew {i}", steps=25 + i, seed=i)) for i in range(8)]
        for task_id in tasks:
            output = wait_status(api, task_id, FINAL, timeout=240)["output"]
            assert output["task_status"] == "SUCCEEDED", output
    time.sleep(1)  # the last log lines flushed
    attempts = {task_id: finished_attempt(stack, task_id) for task_id in tasks}
    assert attempts == dict.fromkeys(tasks, 1)
    logs = stack.logs()
    assert "taking over" not in logs
    assert "lost the lease" not in logs
    assert "another worker took it over" not in logs
    # Both workers finished tasks: the skewed one was not simply idle.
    finished = [_finished_by(worker.log_text(), tasks) for worker in stack.workers]
    assert all(finished), finished


def _finished_by(log: str, tasks: list[str]) -> int:
    """How many of ``tasks`` this worker's JSON log says it finished."""
    return sum(
        any(task_id in line and '"attempt"' in line for line in log.splitlines())
        for task_id in tasks
    )
