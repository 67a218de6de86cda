"""Progress recorded by a live worker while a task runs, read from the task record."""

from __future__ import annotations

import time

from fixtures.tasks import body, submit, wait_status
from fixtures.webhooks import HookStack

from taskcore import redis_keys


def test_progress_rises_monotonically_to_100_while_a_task_runs(hook_stack: HookStack) -> None:
    _, key, _ = hook_stack.tenant()
    redis = hook_stack.stack.redis.client()
    with hook_stack.client(key) as api:
        task_id = submit(api, body(steps=16, n=1))
        seen: list[tuple[str, int, int]] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            row: list[bytes | None] = redis.hmget(  # type: ignore[assignment]
                redis_keys.task(task_id), "status", "progress", "images_done"
            )
            status, progress, done = row
            seen.append(((status or b"").decode(), int(progress or 0), int(done or 0)))
            if seen[-1][0] not in {"PENDING", "RUNNING"}:
                break
            time.sleep(0.01)
        final = wait_status(api, task_id, {"SUCCEEDED"})
    assert seen[-1] == ("SUCCEEDED", 100, 1)
    values = [progress for _, progress, _ in seen]
    assert values == sorted(values), "progress went back"
    running = {progress for status, progress, _ in seen if status == "RUNNING"}
    assert len(running - {0, 100}) >= 3, f"too few steps seen while running: {sorted(running)}"
    assert max(running) < 100  # 100 comes with SUCCEEDED, not before
    assert [done for _, _, done in seen] == sorted(done for _, _, done in seen)
    assert final["output"]["task_status"] == "SUCCEEDED"
