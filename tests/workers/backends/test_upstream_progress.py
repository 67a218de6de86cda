"""The upstream backend records rough progress from the upstream task's status."""

from __future__ import annotations

from fixtures.processes import RedisServer, wait_until
from fixtures.records import create_record
from fixtures.simulator import UPSTREAM_KEY, SimulatorProcess

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.settings import Settings
from taskcore.store.worker import WorkerTaskStore
from workers.backends.upstream import UpstreamBackend
from workers.progress import UPSTREAM_PROGRESS, ProgressRecorder

JOB = GenerationRequest("stable-diffusion-xl", "a cat", "", 512, 512, 1, 20, 7.0, 42)


def test_an_upstream_task_that_succeeded_upstream_shows_its_rough_progress(
    redis_server: RedisServer, simulator: SimulatorProcess
) -> None:
    task_id = create_record(redis_server.url, JOB, "upstream")
    store = WorkerTaskStore(redis_server.client(), 3600)
    claim = store.claim(task_id)
    assert claim is not None
    settings = Settings(
        redis_url=redis_server.url,
        upstream_base_url=simulator.api,
        upstream_api_key=UPSTREAM_KEY,  # type: ignore[arg-type]
        upstream_result_hosts="127.0.0.1",
    )
    backend = UpstreamBackend(
        settings, store, ProgressRecorder(redis_server.client(), store.lease.worker)
    )
    try:
        assert [o.ok for o in backend.generate(claim)] == [True]
    finally:
        backend.close()
    record = redis_server.client()

    def progress() -> int:
        return int(record.hget(redis_keys.task(task_id), "progress") or -1)

    wait_until(lambda: progress() == UPSTREAM_PROGRESS["SUCCEEDED"], 5, "the progress write")
