"""A real worker's probes on its metrics port: ``/readyz`` turns 200 once the consumer is
connected and the pipelines are warm; ``/livez`` is 200 while its loops turn, 503 once a pool
process's lease thread stops (the process is SIGSTOPped) or once the consumer loop is blocked
(``tests/fixtures/stalling_worker.py``), and 200 again when they turn again; the same for the
upstream worker's asyncio loop."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.processes import SynthgateProcess, free_port, running_redis, wait_until
from fixtures.simulator import account_json
from fixtures.stack import Stack, start_stack
from fixtures.stalling_worker import SIGNAL
from fixtures.tasks import FINAL, body, submit, wait_status

LEASE_STALL_SECONDS = 3.0
LOOP_STALL_SECONDS = 2.0
STALLING_WORKER = "tests.fixtures.stalling_worker"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, demo_weights_dir: Path) -> Iterator[Stack]:
    """A gateway on a Redis of its own, with no worker yet: the test starts it."""
    workdir = tmp_path_factory.mktemp("probes")
    env = {"SYNTHGATE_DEMO_WEIGHTS_DIR": str(demo_weights_dir)}
    with running_redis(workdir) as redis, start_stack(redis, workdir, env, []) as stack:
        yield stack


def _probe(url: str) -> tuple[int, dict[str, Any]] | None:
    try:
        answer = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return answer.status_code, answer.json()


def _status(url: str) -> int:
    return (_probe(url) or (0, {}))[0]


def _start_worker(gateway: Stack, tmp_path: Path, **env: str) -> tuple[SynthgateProcess, str]:
    """A worker (the stalling launcher) with the gateway's settings and ``env``, started;
    and the base URL of its metrics port."""
    port = free_port()
    worker = SynthgateProcess(
        "worker",
        {
            **{k: v for k, v in gateway.gateway.env.items() if k.startswith("SYNTHGATE_")},
            "SYNTHGATE_WORKER_METRICS_PORT": str(port),
            "SYNTHGATE_WORKER_LOOP_STALL_SECONDS": str(LOOP_STALL_SECONDS),
            "STALL_SECONDS": "8",
            **env,
        },
        tmp_path / "worker.log",
        module=STALLING_WORKER,
    )
    worker.start()
    return worker, f"http://127.0.0.1:{port}"


def _stall_loop_and_see_livez_fail_then_recover(worker: SynthgateProcess, base: str) -> None:
    assert worker.process is not None
    os.kill(worker.process.pid, SIGNAL)  # the loop sleeps 8 s
    wait_until(lambda: _status(f"{base}/livez") == 503, 6, "livez 503 on a stalled loop")
    status, live = _probe(f"{base}/livez") or (0, {})
    assert status == 503, live
    assert live["loop_tick_age_seconds"] > LOOP_STALL_SECONDS, live
    assert any(p.startswith("loop last ticked") for p in live["problems"]), live
    wait_until(lambda: _status(f"{base}/livez") == 200, 20, "livez 200 once the loop turns")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def test_a_gpu_workers_probes_follow_its_start_and_a_stalled_lease_thread(
    gateway: Stack, tmp_path: Path
) -> None:
    worker, base = _start_worker(
        gateway,
        tmp_path,
        SYNTHGATE_WORKER_QUEUES="gpu.sd15",
        SYNTHGATE_LEASE_SECONDS="2",  # renewed every 0.5 s
        SYNTHGATE_WORKER_LEASE_STALL_SECONDS=str(LEASE_STALL_SECONDS),
    )
    assert worker.process is not None
    stopped: list[int] = []
    try:
        readiness: list[tuple[int, dict[str, Any]]] = []

        def ready() -> bool:
            assert worker.process is not None and worker.process.poll() is None, worker.log_text()
            answer = _probe(f"{base}/readyz")
            if answer is not None:
                readiness.append(answer)
            return answer is not None and answer[0] == 200

        wait_until(ready, 180, "the worker's /readyz", interval=0.05)
        assert readiness[0][0] == 503, readiness[0]  # loading: not ready at first
        assert readiness[0][1]["reason"], readiness[0]
        assert readiness[-1][1] == {
            "ok": True,
            "ready": {"consumer": "1/1", "pipelines": "1/1"},
            "reason": "",
        }
        status, live = _probe(f"{base}/livez") or (0, {})
        assert status == 200, live
        assert (
            live["loop_tick_age_seconds"] is not None and live["heartbeat_age_seconds"] is not None
        )

        # A task starts the pool process's lease thread.
        with httpx.Client(base_url=gateway.api, headers=gateway.headers(), timeout=30) as api:
            task_id = submit(api, body(steps=2))
            assert wait_status(api, task_id, FINAL)["output"]["task_status"] == "SUCCEEDED"
        time.sleep(LEASE_STALL_SECONDS + 1)  # longer than the bounds: everything keeps ticking
        status, live = _probe(f"{base}/livez") or (0, {})
        assert status == 200, live
        assert live["lease_renewal_age_seconds"] < LEASE_STALL_SECONDS, live
        # Celery's event loop ticks every heartbeat (0.5 s here), not only at start.
        assert live["loop_tick_age_seconds"] < LOOP_STALL_SECONDS, live
        assert live["heartbeat_age_seconds"] < LOOP_STALL_SECONDS, live
        assert live["services"]["upkeep"] is not None, live

        _stall_loop_and_see_livez_fail_then_recover(worker, base)

        (child,) = _children(worker.process.pid)
        os.kill(child, signal.SIGSTOP)
        stopped.append(child)
        wait_until(lambda: _status(f"{base}/livez") == 503, 30, "livez 503")
        status, live = _probe(f"{base}/livez") or (0, {})
        assert status == 503
        assert live["lease_renewal_age_seconds"] > LEASE_STALL_SECONDS, live
        assert f"pid {child}" in " ".join(live["problems"]), live
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200

        os.kill(child, signal.SIGCONT)
        stopped.remove(child)
        wait_until(lambda: _status(f"{base}/livez") == 200, 30, "livez 200 again")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        worker.stop()


def test_the_upstream_workers_probes_follow_its_asyncio_loop(
    gateway: Stack, tmp_path: Path
) -> None:
    worker, base = _start_worker(
        gateway,
        tmp_path,
        SYNTHGATE_WORKER_QUEUES="upstream",
        SYNTHGATE_UPSTREAM_ACCOUNTS=account_json(),
        SYNTHGATE_UPSTREAM_BASE_URL="http://127.0.0.1:9/api/v1",  # idle: never called
    )
    try:
        wait_until(lambda: _status(f"{base}/readyz") == 200, 60, "upstream /readyz")
        assert (_probe(f"{base}/readyz") or (0, {}))[1]["ready"] == {"consumer": "1/1"}
        time.sleep(LOOP_STALL_SECONDS + 1)
        status, live = _probe(f"{base}/livez") or (0, {})
        assert status == 200, live
        assert live["loop_tick_age_seconds"] < LOOP_STALL_SECONDS, live
        assert live["lease_renewal_age_seconds"] is not None, live
        assert live["task_age_seconds"] is None  # its tasks are coroutines: the deadline ends them

        _stall_loop_and_see_livez_fail_then_recover(worker, base)
        assert _status(f"{base}/readyz") == 200
    finally:
        worker.stop()
