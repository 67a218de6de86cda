"""A real worker's probes on its metrics port: ``/readyz`` turns 200 once the consumer is
connected and the pipelines are warm, ``/livez`` is 200 while its loops turn and 503 once a
pool process's lease thread stops (the process is SIGSTOPped), and 200 again after SIGCONT;
the upstream worker answers both too."""

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
from fixtures.stack import Stack, start_stack
from fixtures.tasks import FINAL, body, submit, wait_status

LEASE_STALL_SECONDS = 3.0


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


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()]


def test_a_gpu_workers_probes_follow_its_start_and_a_stalled_lease_thread(
    gateway: Stack, tmp_path: Path
) -> None:
    port = free_port()
    worker = SynthgateProcess(
        "worker",
        {
            **{k: v for k, v in gateway.gateway.env.items() if k.startswith("SYNTHGATE_")},
            "SYNTHGATE_WORKER_QUEUES": "gpu.sd15",
            "SYNTHGATE_WORKER_METRICS_PORT": str(port),
            "SYNTHGATE_LEASE_SECONDS": "2",  # renewed every 0.5 s
            "SYNTHGATE_WORKER_LEASE_STALL_SECONDS": str(LEASE_STALL_SECONDS),
        },
        tmp_path / "worker.log",
    )
    base = f"http://127.0.0.1:{port}"
    worker.start()
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
        time.sleep(LEASE_STALL_SECONDS + 1)  # longer than the bound: the thread keeps ticking
        status, live = _probe(f"{base}/livez") or (0, {})
        assert status == 200, live
        assert live["lease_renewal_age_seconds"] < LEASE_STALL_SECONDS, live
        assert live["services"]["upkeep"] is not None, live

        (child,) = _children(worker.process.pid)
        os.kill(child, signal.SIGSTOP)
        stopped.append(child)
        wait_until(lambda: (_probe(f"{base}/livez") or (0, {}))[0] == 503, 30, "livez 503")
        status, live = _probe(f"{base}/livez") or (0, {})
        assert status == 503
        assert live["lease_renewal_age_seconds"] > LEASE_STALL_SECONDS, live
        assert f"pid {child}" in " ".join(live["problems"]), live
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200

        os.kill(child, signal.SIGCONT)
        stopped.remove(child)
        wait_until(lambda: (_probe(f"{base}/livez") or (0, {}))[0] == 200, 30, "livez 200 again")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        worker.stop()


def test_the_upstream_workers_probes_answer_200_with_its_loop_ticking(
    upstream_stack: Stack,
) -> None:
    base = f"http://127.0.0.1:{upstream_stack.worker_metrics_ports[0]}"
    wait_until(lambda: (_probe(f"{base}/readyz") or (0, {}))[0] == 200, 30, "upstream /readyz")
    status, live = _probe(f"{base}/livez") or (0, {})
    assert status == 200, live
    assert live["loop_tick_age_seconds"] < 5, live
    assert live["lease_renewal_age_seconds"] is not None, live
    assert live["task_age_seconds"] is None  # its tasks are coroutines: the deadline fails them
