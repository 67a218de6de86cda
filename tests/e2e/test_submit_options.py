"""Idempotency keys and priorities on submit, through live gateways and a live worker."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from fixtures.stack import Gateways, Stack
from fixtures.tasks import FINAL, SUBMIT, body, wait_status
from fixtures.tenants import NO_LIMITS

V15 = "stable-diffusion-v1.5"


def _tenant(gateways: Gateways, **limits: Any) -> str:
    with gateways.admin() as admin:
        name = "t-" + secrets.token_hex(4)
        created = admin.post("/tenants", json={"name": name, **NO_LIMITS, **limits})
    assert created.status_code == 201, created.text
    return str(created.json()["key"]["api_key"])


def _headers(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-DashScope-Async": "enable", **extra}


def test_twenty_concurrent_duplicates_on_two_gateways_make_one_task_and_use_one_slot(
    gateways: Gateways,
) -> None:
    key = _tenant(gateways, rpm=10)
    headers = _headers(key, **{"Idempotency-Key": f"order-{uuid.uuid4()}"})

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as api:
            sends = [
                api.post(gateways.api(i % 2) + SUBMIT, json=body(V15), headers=headers)
                for i in range(20)
            ]
            return list(await asyncio.gather(*sends))

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 20
    assert len({a.json()["output"]["task_id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 19
    fresh = httpx.post(gateways.api(1) + SUBMIT, json=body(V15), headers=_headers(key))
    assert fresh.headers["x-ratelimit-remaining"] == "8"  # 10 - the one task - this one


def test_a_key_reused_for_another_request_or_malformed_is_refused(gateways: Gateways) -> None:
    key = _tenant(gateways)
    with httpx.Client(base_url=gateways.api(0), timeout=30) as api:
        first = api.post(SUBMIT, json=body(V15), headers=_headers(key, **{"Idempotency-Key": "k"}))
        other = api.post(
            SUBMIT, json=body(V15, n=2), headers=_headers(key, **{"Idempotency-Key": "k"})
        )
        bad = api.post(SUBMIT, json=body(V15), headers=_headers(key, **{"Idempotency-Key": "a b"}))
        odd = api.post(SUBMIT, json=body(V15, priority="urgent"), headers=_headers(key))
    assert first.status_code == 200
    assert other.status_code == 409 and other.json()["code"] == "InvalidParameter"
    assert first.json()["output"]["task_id"] in other.json()["message"]
    assert other.json()["request_id"]
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["message"]
    assert odd.status_code == 400 and "'interactive', 'normal', 'batch'" in odd.json()["message"]


def test_a_resubmit_after_the_task_ended_answers_the_same_task(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    first = api.post(SUBMIT, json=body(V15, steps=1), headers=headers).json()
    task_id = first["output"]["task_id"]
    assert wait_status(api, task_id, FINAL)["output"]["task_status"] == "SUCCEEDED"
    again = api.post(SUBMIT, json=body(V15, steps=1), headers=headers)
    assert again.json()["output"] == first["output"]


def _started(api: httpx.Client, task_id: str) -> datetime:
    done = wait_status(api, task_id, FINAL)["output"]
    assert done["task_status"] == "SUCCEEDED"
    return datetime.strptime(done["scheduled_time"], "%Y-%m-%d %H:%M:%S.%f")


def test_an_interactive_task_overtakes_its_tenants_queued_batch_tasks(
    stack: Stack, new_tenant: Callable[..., str]
) -> None:
    headers = stack.headers(new_tenant())
    with httpx.Client(base_url=stack.api, headers=headers, timeout=30) as api:
        # Steps differ, so no two of them share a pipeline call (cross-request batching):
        # what is measured is the order the fair queue gives them.
        batch = [
            api.post(
                SUBMIT, json=body(V15, steps=2 + i), headers={"X-Synthgate-Priority": "batch"}
            ).json()["output"]["task_id"]
            for i in range(7)
        ]
        urgent = api.post(SUBMIT, json=body(V15, steps=2, priority="interactive"))
        urgent_start = _started(api, urgent.json()["output"]["task_id"])
        batch_starts = [_started(api, task_id) for task_id in batch]
    before = sum(start < urgent_start for start in batch_starts)
    # At most the running task and the feed depth (2) were ahead of it, plus one more the
    # worker may have taken while the submits went out: never the 7 it was queued behind.
    assert before <= 4, batch_starts
    assert batch_starts == sorted(batch_starts)  # batch tasks keep their order
