"""The logs of live gateways and workers: JSON lines that name the request, task and tenant,
and never hold a key or a URL signature, whatever the requests tried."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fixtures.processes import wait_until
from fixtures.simulator import UPSTREAM_KEY
from fixtures.stack import Stack
from fixtures.tasks import FINAL, body, submit, wait_status


def _lines(process_log: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in process_log.splitlines() if line.strip()]
    for record in records:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    return records


def test_gateway_and_worker_logs_are_json_with_request_and_task_context(
    stack: Stack, new_tenant: Callable[..., str]
) -> None:
    tenant = "logs-" + secrets.token_hex(4)
    key = new_tenant(tenant)
    with httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30) as api:
        task_id = submit(api, body("stable-diffusion-v1.5", steps=1))
        assert wait_status(api, task_id, FINAL)["output"]["task_status"] == "SUCCEEDED"
    denied = httpx.get(f"{stack.api}/tasks", headers=stack.headers("sk-wrong-" + "x" * 20))
    assert denied.status_code == 401

    def refused() -> list[dict[str, Any]]:
        lines = _lines(stack.gateway.log_text())
        return [r for r in lines if r.get("request_id") == denied.headers["x-request-id"]]

    wait_until(lambda: bool(refused()), 5, "the line of the refused request")  # written after
    assert [(r["http_status"], r["route"], r["level"]) for r in refused()] == [
        (401, "/api/v1/tasks", "INFO")
    ]
    gateway = _lines(stack.gateway.log_text())
    [submitted] = [r for r in gateway if r.get("task_id") == task_id]
    assert submitted["message"] == f"task {task_id} submitted to gpu.sd15"
    assert submitted["tenant"] == tenant and submitted["model"] == "stable-diffusion-v1.5"
    assert submitted["request_id"] and submitted["pool"] == "gpu.sd15"

    def finished() -> list[dict[str, Any]]:  # written just after the status is stored
        return [r for r in _lines(stack.worker.log_text()) if r.get("task_id") == task_id]

    wait_until(lambda: bool(finished()), 5, "the worker's line of the task")
    [finished_line] = finished()
    assert (finished_line["status"], finished_line["tenant"], finished_line["code"]) == (
        "SUCCEEDED",
        tenant,
        "",
    )


def test_logs_hold_no_api_key_upstream_key_or_url_signature(
    stack: Stack, upstream: Stack, new_tenant: Callable[..., str]
) -> None:
    key = new_tenant()
    wrong_key = "sk-" + secrets.token_urlsafe(24)
    with httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30) as api:
        done = wait_status(api, submit(api, body("stable-diffusion-v1.5", steps=1)), FINAL)
        url = done["output"]["results"][0]["url"]
        signature = parse_qs(urlsplit(url).query)["sig"][0]
        assert httpx.get(url, timeout=10).status_code == 200
        forged = url.replace(signature, secrets.token_urlsafe(32))
        assert httpx.get(forged, timeout=10).status_code == 403
        httpx.get(f"{stack.api}/tasks?api_key={wrong_key}", headers={"Authorization": wrong_key})
    with httpx.Client(base_url=upstream.api, headers=upstream.headers(), timeout=30) as api:
        task_id = submit(api, body("stable-diffusion-xl", prompt="a cat sim:result-404"))
        assert wait_status(api, task_id, FINAL)["output"]["task_status"] == "FAILED"

    text = stack.logs() + upstream.logs()
    for secret in (key, wrong_key, stack.api_key, upstream.api_key, UPSTREAM_KEY, signature):
        assert secret not in text
    assert parse_qs(urlsplit(forged).query)["sig"][0] not in text
    # Lines written on the upstream worker's I/O loop still name their task.
    [unavailable] = [
        r
        for r in _lines(upstream.worker.log_text())
        if "unavailable" in r["message"] and r.get("task_id") == task_id
    ]
    assert unavailable["level"] == "WARNING"
