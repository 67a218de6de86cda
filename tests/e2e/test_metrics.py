"""Prometheus metrics after real end-to-end runs: each counter and histogram moved by exactly
what the run did, on the gateway's /metrics and on the worker's metrics port."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
from fixtures.metrics import scrape
from fixtures.processes import wait_until
from fixtures.simulator import SimulatorProcess
from fixtures.stack import Stack
from fixtures.tasks import FINAL, SUBMIT, body, submit, wait_status

XL = "stable-diffusion-xl"
SUBMIT_ROUTE = "/api/v1/services/aigc/text2image/image-synthesis"
FETCH_ROUTE = "/api/v1/tasks/{task_id}"


def _poll_until_final(api: httpx.Client, task_id: str) -> tuple[dict[str, Any], int]:
    """The final answer and how many fetches it took."""
    fetches = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        fetches += 1
        data: dict[str, Any] = api.get(f"/tasks/{task_id}").json()
        if data["output"]["task_status"] in FINAL:
            return data, fetches
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish")


def test_a_task_moves_gateway_metrics_by_exactly_what_the_client_did(
    stack: Stack, new_tenant: Callable[..., str]
) -> None:
    tenant = "metrics-" + secrets.token_hex(4)  # a fresh tenant: its series start at zero
    key = new_tenant(tenant, rpm=1)  # its second submit in a minute is throttled
    gateway = f"{stack.base_url}/metrics"
    before = scrape(gateway)
    with httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30) as api:
        task_id = submit(api, body(XL, size="512*512", n=2, steps=3, seed=7))
        done, fetches = _poll_until_final(api, task_id)
        refused = api.post(SUBMIT, json=body(XL), headers={"X-DashScope-Async": "off"})
        throttled = api.post(SUBMIT, json=body(XL))
    missing = httpx.get(f"{stack.base_url}/no/such/path/{task_id}", timeout=5)
    after = scrape(gateway)

    assert done["output"]["task_status"] == "SUCCEEDED", done
    assert (refused.status_code, throttled.status_code, missing.status_code) == (403, 429, 404)
    submitted = {"model": XL, "tenant": tenant, "pool": "gpu.sdxl"}
    assert after.value("synthgate_tasks_submitted_total", **submitted) == 1
    assert throttled.json()["code"] == "Throttling.RateQuota"
    for code in ("AccessDenied", "Throttling.RateQuota"):
        assert after.value("synthgate_rejections_total", tenant=tenant, code=code) == 1
    tenant_route = "synthgate_tenant_requests_total"
    assert after.value(tenant_route, tenant=tenant, route=SUBMIT_ROUTE) == 3
    assert after.value(tenant_route, tenant=tenant, route=FETCH_ROUTE) == fetches
    requests = "synthgate_http_requests_total"
    for route, method, code, count in [
        (SUBMIT_ROUTE, "POST", "200", 1),
        (SUBMIT_ROUTE, "POST", "403", 1),
        (SUBMIT_ROUTE, "POST", "429", 1),
        (FETCH_ROUTE, "GET", "200", fetches),
        ("unmatched", "GET", "404", 1),
    ]:
        assert after.delta(before, requests, route=route, method=method, code=code) == count
    latency = "synthgate_http_request_duration_seconds_count"
    assert after.delta(before, latency, route=SUBMIT_ROUTE, method="POST") == 3
    assert task_id not in after.text and "/no/such/path" not in after.text  # bounded labels
    assert after.value("synthgate_redis_up") == 1
    assert after.value("synthgate_queue_depth", pool="gpu.sdxl") == 0
    assert after.value("synthgate_pool_workers", pool="gpu.sdxl") >= 1
    # The webhook backlog, read from the due set with the pool gauges (whatever it holds now).
    for gauge in (
        "synthgate_webhooks_pending",
        "synthgate_webhooks_due",
        "synthgate_webhooks_oldest_due_seconds",
    ):
        assert (gauge, frozenset()) in after.samples, gauge


def test_a_task_moves_worker_metrics_by_its_images_steps_and_uploads(stack: Stack) -> None:
    worker = stack.worker_metrics_url()
    before = scrape(worker)
    with httpx.Client(base_url=stack.api, headers=stack.headers(), timeout=30) as api:
        started = time.monotonic()
        done = wait_status(api, submit(api, body(XL, size="512*512", n=2, steps=3, seed=9)), FINAL)
        wall = time.monotonic() - started
    finished = {"pool": "gpu.sdxl", "model": XL, "status": "SUCCEEDED", "code": "none"}
    # The worker counts a task just after storing its status, which the client may see first.
    wait_until(
        lambda: (
            scrape(worker).delta(before, "synthgate_worker_tasks_finished_total", **finished) == 1
        ),
        5,
        "the task counted",
    )
    after = scrape(worker)

    assert done["output"]["task_status"] == "SUCCEEDED", done
    by_model = {"model": XL, "backend": "diffusers"}
    assert (
        after.delta(before, "synthgate_worker_tasks_started_total", pool="gpu.sdxl", model=XL) == 1
    )
    assert after.delta(before, "synthgate_worker_tasks_finished_total", **finished) == 1
    images = {**by_model, "outcome": "succeeded", "code": "none"}
    assert after.delta(before, "synthgate_worker_images_total", **images) == 2
    waited = {**by_model, "pool": "gpu.sdxl"}
    for histogram, labels in (
        ("synthgate_worker_queue_wait_seconds", waited),
        ("synthgate_worker_task_run_seconds", by_model),
    ):
        assert after.delta(before, f"{histogram}_count", **labels) == 1
        assert 0 <= after.delta(before, f"{histogram}_sum", **labels) <= wall
    # One batched call of 3 Euler steps: the 2 steps after the first are timed.
    assert after.delta(before, "synthgate_worker_diffusion_step_seconds_count", model=XL) == 2
    assert (
        after.delta(before, "synthgate_worker_storage_upload_seconds_count", storage="local") == 2
    )
    assert after.value("synthgate_worker_tasks_running", pool="gpu.sdxl") == 0


def test_upstream_requests_and_their_errors_match_what_the_upstream_answered(
    upstream: Stack, simulator: SimulatorProcess
) -> None:
    worker = upstream.worker_metrics_url()
    before, sim_before = scrape(worker), simulator.stats()["requests"]
    simulator.configure(rate_429=1.0, retry_after_seconds=0.05)  # throttle all, for a while
    with httpx.Client(base_url=upstream.api, headers=upstream.headers(), timeout=30) as api:
        ids = [submit(api, body(XL, n=1, seed=i)) for i in range(4)]
        wait_until(lambda: _throttled(simulator) > sim_before.get("fault.429", 0), 10, "a 429")
        simulator.configure(rate_429=0.0)
        outputs = [wait_status(api, task_id, FINAL, timeout=60)["output"] for task_id in ids]
    after, sim_after = scrape(worker), simulator.stats()["requests"]

    assert [o["task_status"] for o in outputs] == ["SUCCEEDED"] * 4
    answered = {name: sim_after.get(name, 0) - sim_before.get(name, 0) for name in sim_after}
    count = "synthgate_worker_upstream_request_seconds_count"
    assert after.delta(before, count, op="submit") == answered["submit"]
    assert after.delta(before, count, op="poll") == answered["fetch"]
    assert after.delta(before, count, op="download") == answered["result"] == 4
    errors = "synthgate_worker_upstream_errors_total"
    throttled = sum(after.delta(before, errors, op=op, code="429") for op in ("submit", "poll"))
    assert throttled == answered.get("fault.429", 0) > 0
    # Every throttled submit rested the account (the polls' 429s are no submits), and every
    # submit that went out waited for the account's turn.
    by_account = {"account": "sim"}
    submits_throttled = after.delta(before, errors, op="submit", code="429")
    assert (
        after.delta(before, "synthgate_worker_upstream_account_throttled_total", **by_account)
        == submits_throttled
    )
    assert (
        after.delta(before, "synthgate_worker_upstream_account_submits_total", **by_account)
        == answered["submit"]
    )
    assert (
        after.delta(before, "synthgate_worker_tasks_started_total", pool="upstream." + XL, model=XL)
        == 4
    )


def _throttled(simulator: SimulatorProcess) -> int:
    return int(simulator.stats()["requests"].get("fault.429", 0))
