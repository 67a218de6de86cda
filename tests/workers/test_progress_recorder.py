"""The progress writer against a real Redis: it only raises, only while RUNNING, throttled."""

from __future__ import annotations

from fixtures.processes import RedisServer
from fixtures.records import create_record

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.records import TaskStatus
from taskcore.store.worker import WorkerTaskStore
from workers.progress import DENOISED, ProgressRecorder

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 10, 7.0, 1)


def _running_task(redis_server: RedisServer) -> tuple[str, WorkerTaskStore]:
    task_id = create_record(redis_server.url, JOB, "test.progress")
    store = WorkerTaskStore(redis_server.client(), 3600)
    assert store.claim(task_id) is not None
    return task_id, store


def _progress(redis_server: RedisServer, task_id: str) -> int | None:
    raw = redis_server.client().hget(redis_keys.task(task_id), "progress")
    return None if raw is None else int(raw)


def test_progress_only_rises_and_stops_when_the_task_ends(redis_server: RedisServer) -> None:
    task_id, store = _running_task(redis_server)
    recorder = ProgressRecorder(redis_server.client(), store.lease.worker, interval_seconds=0)
    recorder.record(task_id, 40)
    recorder.record(task_id, 20)  # a retried image starts its steps again
    assert _progress(redis_server, task_id) == 40
    assert store.finish(task_id, TaskStatus.SUCCEEDED, [{"key": "acme/x/0.png"}])
    assert _progress(redis_server, task_id) == 100
    recorder.record(task_id, 60)  # late: the task has ended
    recorder.steps(task_id)(1, 2)
    assert _progress(redis_server, task_id) == 100


class CountingRecorder(ProgressRecorder):
    """The real recorder, noting each write it makes."""

    writes: list[int]

    def record(self, task_id: str, progress: int) -> None:
        self.writes.append(progress)
        super().record(task_id, progress)


def test_steps_are_written_throttled_but_the_last_one_always(redis_server: RedisServer) -> None:
    task_id, store = _running_task(redis_server)
    recorder = CountingRecorder(redis_server.client(), store.lease.worker, interval_seconds=3600)
    recorder.writes = []
    hook = recorder.steps(task_id)
    for done in range(1, 51):
        hook(done, 50)
    assert recorder.writes == [DENOISED // 50, DENOISED]
    assert _progress(redis_server, task_id) == DENOISED


def test_upstream_statuses_map_to_rough_progress(redis_server: RedisServer) -> None:
    task_id, store = _running_task(redis_server)
    recorder = ProgressRecorder(redis_server.client(), store.lease.worker)
    recorder.upstream_status(task_id, "PENDING")
    assert _progress(redis_server, task_id) == 0
    recorder.upstream_status(task_id, "RUNNING")
    assert _progress(redis_server, task_id) == 50
    recorder.upstream_status(task_id, "SUCCEEDED")
    assert _progress(redis_server, task_id) == DENOISED
