"""DashScope accounts' limits across upstream workers, end to end: gateway, two upstream
worker processes and a simulator that throttles like DashScope, as separate processes.

Two accounts, each allowed 2 submits a second and 2 running tasks; the simulator answers
429 above that. Goals: every task succeeds, the simulator never throttles us nor sees more
than 2 running per key, a task waits PENDING (and can be canceled) while every account is
full, and a worker SIGKILLed with tasks running upstream leaks no slot and pays no task
twice. (The throughput and the tenants' shares are measured by bench/upstream_quota.py.)
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures.chaos import CHAOS_ENV, wait_running_on_a_worker
from fixtures.processes import running_redis, wait_until
from fixtures.simulator import SimulatorProcess
from fixtures.stack import Stack, start_stack
from fixtures.tasks import FINAL, submit, wait_status
from fixtures.tenants import register_tenant

from taskcore import redis_keys

MODEL = "wanx2.1-t2i-turbo"
KEYS = ("sk-quota-a-" + secrets.token_hex(8), "sk-quota-b-" + secrets.token_hex(8))
LIMITS = {"submit_per_second": 2, "max_running": 2}


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    sim = SimulatorProcess(
        tmp_path_factory.mktemp("quota-sim") / "simulator.log",
        "--api-keys", ",".join(KEYS),
        "--submits-per-second", "2",
        "--max-running", "2",
        "--latency", "0.5",
    )  # fmt: skip
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def stack(simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    accounts = [{"name": f"acct-{i}", "api_key": key, **LIMITS} for i, key in enumerate(KEYS)]
    env = {
        **CHAOS_ENV,
        "SYNTHGATE_UPSTREAM_ACCOUNTS": json.dumps(accounts),
        "SYNTHGATE_UPSTREAM_BASE_URL": simulator.api,
        "SYNTHGATE_UPSTREAM_RESULT_HOSTS": "127.0.0.1",
        "SYNTHGATE_UPSTREAM_POLL_INITIAL_SECONDS": "0.5",
        "SYNTHGATE_UPSTREAM_POLL_MAX_SECONDS": "0.3",
        "SYNTHGATE_UPSTREAM_DEADLINE_SECONDS": "120",
    }
    workdir = tmp_path_factory.mktemp("quota")
    with (
        running_redis(tmp_path_factory.mktemp("quota-redis")) as redis_server,
        start_stack(redis_server, workdir, env, ["upstream", "upstream"]) as running,
    ):
        yield running


def _payload(tag: str, latency: float | None = None) -> dict[str, Any]:
    prompt = f"a quota test sim:tag={tag}" + (f" sim:latency={latency}" if latency else "")
    return {"model": MODEL, "input": {"prompt": prompt}, "parameters": {"n": 1, "size": "512*512"}}


def _running_slots(stack: Stack) -> dict[str, int]:
    client = stack.redis.client()
    return {
        f"acct-{i}": client.scard(redis_keys.upstream_running(f"acct-{i}", MODEL)) for i in (0, 1)
    }


def _all_running_submitted(stack: Stack, count: int) -> bool:
    """Whether ``count`` tasks hold running slots and DashScope's ids of all are recorded."""
    client = stack.redis.client()
    records = [
        record
        for i in (0, 1)
        for record in client.smembers(redis_keys.upstream_running(f"acct-{i}", MODEL))
    ]
    return len(records) == count and all(client.hget(r, "upstream_task_id") for r in records)


def _upstream_id(stack: Stack, task_id: str) -> bytes | None:
    return stack.redis.client().hget(redis_keys.task(task_id), "upstream_task_id")  # type: ignore[return-value]


def _assert_dashscope_was_never_overrun(simulator: SimulatorProcess, tags: list[str]) -> None:
    stats = simulator.stats()
    assert stats["throttled"] == 0, stats
    for key in KEYS:
        assert stats["keys"][key]["max_running"] <= 2, stats["keys"][key]
    paid = stats["submits_by_tag"]
    assert all(paid.get(tag) == 1 for tag in tags), {tag: paid.get(tag) for tag in tags}


def test_tenants_tasks_all_succeed_within_the_accounts_limits(
    stack: Stack, simulator: SimulatorProcess
) -> None:
    clients, tags, ids = [], [], []
    for weight in (1, 1, 2):
        key = register_tenant(stack.redis.url, "q-" + secrets.token_hex(3), weight=float(weight))
        clients.append(httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30))
    for i in range(30):
        tags.append(uuid.uuid4().hex)
        ids.append((clients[i % 3], submit(clients[i % 3], _payload(tags[-1]))))
    peak = {"acct-0": 0, "acct-1": 0}
    for api, task_id in ids:
        while True:
            for name, count in _running_slots(stack).items():
                peak[name] = max(peak[name], count)
            output = api.get(f"/tasks/{task_id}").json()["output"]
            if output["task_status"] in FINAL:
                break
            time.sleep(0.05)
        assert output["task_status"] == "SUCCEEDED", output
    assert 1 <= max(peak.values()) <= 2, peak  # both workers together, per account
    assert _running_slots(stack) == {"acct-0": 0, "acct-1": 0}
    _assert_dashscope_was_never_overrun(simulator, tags)


def test_a_task_waits_pending_while_every_account_is_full_and_can_be_canceled(
    stack: Stack, simulator: SimulatorProcess
) -> None:
    key = register_tenant(stack.redis.url, "q-" + secrets.token_hex(3))
    with httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30) as api:
        busy = [submit(api, _payload(uuid.uuid4().hex, latency=4)) for _ in range(4)]
        wait_until(lambda: _running_slots(stack) == {"acct-0": 2, "acct-1": 2}, 30, "full accounts")
        wait_until(lambda: all(_upstream_id(stack, t) for t in busy), 30, "all four submitted")
        submits = simulator.stats()["accepted"]
        waiting = submit(api, _payload(uuid.uuid4().hex))
        time.sleep(1.0)
        assert api.get(f"/tasks/{waiting}").json()["output"]["task_status"] == "PENDING"
        assert simulator.stats()["accepted"] == submits  # DashScope was not asked
        assert api.post(f"/tasks/{waiting}/cancel").status_code == 200
        assert wait_status(api, waiting, FINAL)["output"]["task_status"] == "CANCELED"
        for task_id in busy:
            assert (
                wait_status(api, task_id, FINAL, timeout=60)["output"]["task_status"] == "SUCCEEDED"
            )
    assert _running_slots(stack) == {"acct-0": 0, "acct-1": 0}


def test_a_sigkilled_worker_leaks_no_slot_and_pays_no_task_twice(
    stack: Stack, simulator: SimulatorProcess
) -> None:
    key = register_tenant(stack.redis.url, "q-" + secrets.token_hex(3))
    tags = [uuid.uuid4().hex for _ in range(8)]
    with httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30) as api:
        ids = [submit(api, _payload(tag, latency=3)) for tag in tags]
        victim = wait_running_on_a_worker(stack, ids[0])
        # Killed once DashScope's ids of the four running tasks are recorded: a worker killed
        # between DashScope's accepting a submit and that record pays the task twice (its
        # taker submits again; DashScope has no idempotency key), which no design avoids.
        wait_until(lambda: _all_running_submitted(stack, 4), 30, "four tasks upstream")
        victim.kill()
        peak = 0
        for task_id in ids:
            while (output := api.get(f"/tasks/{task_id}").json()["output"])[
                "task_status"
            ] not in FINAL:
                peak = max(peak, *_running_slots(stack).values())
                time.sleep(0.05)
            assert output["task_status"] == "SUCCEEDED", output
    assert peak <= 2  # the dead worker's tasks kept their slots, not counted again
    assert _running_slots(stack) == {"acct-0": 0, "acct-1": 0}
    _assert_dashscope_was_never_overrun(simulator, tags)
    victim.start()
    wait_until(lambda: stack.pools_alive(["upstream." + MODEL]), 60, "the worker back")
