"""Upstream workers that die or stop with DashScope tasks in flight: another worker takes each
task over and resumes its upstream task, which is paid for once.

Real processes: a gateway, two upstream workers (asyncio consumers) on a private
Redis with short leases, and the DashScope simulator.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import httpx
import pytest
from fixtures.chaos import (
    CHAOS_ENV,
    finished_attempt,
    restart_dead_workers,
    wait_running_on_a_worker,
)
from fixtures.processes import RedisServer, wait_until
from fixtures.simulator import UPSTREAM_KEY, SimulatorProcess, account_json
from fixtures.stack import SD_MODELS, UPSTREAM_PROBE, Stack, start_stack
from fixtures.tasks import FINAL, body, submit, wait_status
from fixtures.webhooks import FAST_WEBHOOK_ENV, running_receiver
from standardwebhooks import Webhook

from taskcore import redis_keys

GRACE_SECONDS = 1.5
ADMIN_TOKEN = "admin-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, simulator: SimulatorProcess) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("upstream-death")
    server = RedisServer(workdir / "redis")
    server.data_dir.mkdir()
    server.start()
    env = {
        **CHAOS_ENV,
        **FAST_WEBHOOK_ENV,
        "SYNTHGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "SYNTHGATE_WORKER_GRACE_SECONDS": str(GRACE_SECONDS),
        "SYNTHGATE_ROUTES": json.dumps(dict.fromkeys(SD_MODELS, "upstream")),
        "SYNTHGATE_UPSTREAM_BASE_URL": simulator.api,
        "SYNTHGATE_UPSTREAM_ACCOUNTS": account_json(UPSTREAM_KEY),
        "SYNTHGATE_UPSTREAM_RESULT_HOSTS": "127.0.0.1",
        "SYNTHGATE_UPSTREAM_POLL_INITIAL_SECONDS": "0.3",
        "SYNTHGATE_UPSTREAM_POLL_MAX_SECONDS": "0.5",
    }
    try:
        with start_stack(server, workdir, env, ["upstream", "upstream"]) as running:
            yield running
    finally:
        server.stop()


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api, headers=stack.headers(), timeout=30) as http:
        yield http


@pytest.fixture
def revive(stack: Stack) -> Iterator[None]:
    """Restarts, after the test, any worker the test killed or stopped."""
    yield
    restart_dead_workers(stack, pool=UPSTREAM_PROBE)


def _submits(simulator: SimulatorProcess) -> int:
    return int(simulator.stats()["requests"].get("submit", 0))


def _wait_upstream_submitted(stack: Stack, task_id: str) -> None:
    def submitted() -> bool:
        redis_client = stack.redis.client()
        try:
            return bool(redis_client.hget(redis_keys.task(task_id), "upstream_task_id"))
        finally:
            redis_client.close()

    wait_until(submitted, 30, f"task {task_id} submitted upstream")


def test_a_killed_upstream_worker_s_task_resumes_on_another_and_is_paid_once(
    stack: Stack, api: httpx.Client, simulator: SimulatorProcess, revive: None
) -> None:
    before = _submits(simulator)
    task_id = submit(api, body(prompt="a fox sim:latency=4", n=2))
    worker = wait_running_on_a_worker(stack, task_id)
    _wait_upstream_submitted(stack, task_id)
    worker.kill()

    output = wait_status(api, task_id, FINAL, timeout=60)["output"]
    assert output["task_status"] == "SUCCEEDED", output
    assert output["task_metrics"] == {"TOTAL": 2, "SUCCEEDED": 2, "FAILED": 0}
    assert finished_attempt(stack, task_id) == 2
    assert _submits(simulator) - before == 1  # resumed, not submitted again


def test_sigterm_lets_upstream_tasks_in_flight_finish(
    stack: Stack, api: httpx.Client, revive: None
) -> None:
    # A model of its own: the workers poll a model first when its tasks usually end, and
    # the other tests' tasks of v1.5 take seconds.
    task_id = submit(api, body(model="stable-diffusion-xl", prompt="a hare sim:latency=0.5"))
    worker = wait_running_on_a_worker(stack, task_id)
    process = worker.process
    assert process is not None
    worker.stop()  # SIGTERM; waits for the process to exit
    assert process.returncode == 0
    output = wait_status(api, task_id, FINAL, timeout=30)["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert finished_attempt(stack, task_id) == 1  # finished by the worker it ran on


def test_sigterm_hands_back_what_outlasts_the_grace_period(
    stack: Stack, api: httpx.Client, simulator: SimulatorProcess, revive: None
) -> None:
    before = _submits(simulator)
    task_id = submit(api, body(prompt="a lynx sim:latency=6"))
    worker = wait_running_on_a_worker(stack, task_id)
    _wait_upstream_submitted(stack, task_id)
    worker.stop()
    assert "1 tasks handed back" in worker.log_text()

    output = wait_status(api, task_id, FINAL, timeout=60)["output"]
    assert output["task_status"] == "SUCCEEDED"
    assert finished_attempt(stack, task_id) == 2
    assert _submits(simulator) - before == 1


def test_upstream_workers_deliver_webhooks(stack: Stack) -> None:
    """The upstream worker runs no Celery: it starts the webhook deliveries itself."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=f"{stack.base_url}/admin/v1", headers=headers) as admin:
        created = admin.post("/tenants", json={"name": "hooked", "callback_hosts": ["127.0.0.1"]})
    assert created.status_code == 201, created.text
    key = created.json()["key"]["api_key"]
    with (
        running_receiver() as receiver,
        httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30) as api,
    ):
        task_id = submit(api, body(prompt="an owl", callback_url=receiver.url("/up")))
        [received] = receiver.take("/up", 1)
        assert json.loads(received.body)["output"]["task_id"] == task_id
        assert json.loads(received.body)["output"]["task_status"] == "SUCCEEDED"
        # Signed as Standard Webhooks says, like the GPU workers' deliveries.
        Webhook(created.json()["webhook_secret"]).verify(received.body, received.headers)
