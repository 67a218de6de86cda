"""Tenant limits through two gateway processes sharing one Redis: exact under bursts."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
from fixtures.stack import Gateways
from fixtures.tasks import SUBMIT, body
from fixtures.tenants import NO_LIMITS

V15 = "stable-diffusion-v1.5"
XL = "stable-diffusion-xl"


def _tenant(gateways: Gateways, **limits: Any) -> tuple[str, str]:
    """A new tenant made through the admin API with only ``limits``; its name and key."""
    name = "t-" + secrets.token_hex(4)
    with gateways.admin() as admin:
        created = admin.post("/tenants", json={"name": name, **NO_LIMITS, **limits})
    assert created.status_code == 201, created.text
    return name, created.json()["key"]["api_key"]


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-DashScope-Async": "enable"}


def _burst(gateways: Gateways, key: str, payloads: list[dict[str, Any]]) -> list[httpx.Response]:
    """All submits at once, alternating between the two gateways."""

    async def send_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(timeout=60, limits=limits) as api:
            sends = [
                api.post(gateways.api(i % 2) + SUBMIT, json=payload, headers=_headers(key))
                for i, payload in enumerate(payloads)
            ]
            return list(await asyncio.gather(*sends))

    return asyncio.run(send_all())


def _codes(answers: list[httpx.Response]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in answers:
        code = "ok" if answer.status_code == 200 else answer.json()["code"]
        counts[code] = counts.get(code, 0) + 1
    return counts


def test_rpm_60_admits_exactly_60_of_a_200_burst_across_two_gateways(gateways: Gateways) -> None:
    name, key = _tenant(gateways, rpm=60)
    answers = _burst(gateways, key, [body(V15, steps=1)] * 200)
    assert _codes(answers) == {"ok": 60, "Throttling.RateQuota": 140}
    accepted = [a for a in answers if a.status_code == 200]
    # Each accepted submit saw a different count of the window: exact, not approximately 60.
    assert sorted(int(a.headers["x-ratelimit-remaining"]) for a in accepted) == list(range(60))
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["request_id"] and "60 tasks per minute" in refused.json()["message"]
    assert refused.headers["x-ratelimit-limit"] == "60"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-reset"] == refused.headers["retry-after"]
    with gateways.admin(1) as admin:
        (today,) = admin.get(f"/tenants/{name}/usage").json()["usage"]
    assert today["tasks"] == 60 and today["rejected_rate"] == 140


def test_max_concurrent_is_exact_under_concurrent_submits_and_a_cancel_frees_a_slot(
    gateways: Gateways,
) -> None:
    _, key = _tenant(gateways, max_concurrent=5)
    answers = _burst(gateways, key, [body(V15, steps=1)] * 50)
    assert _codes(answers) == {"ok": 5, "Throttling.AllocationQuota": 45}
    refused = next(a for a in answers if a.status_code == 429)
    assert "at most 5 unfinished tasks" in refused.json()["message"]
    assert refused.headers["retry-after"] == "1" and refused.headers["x-ratelimit-limit"] == "5"
    first = next(a for a in answers if a.status_code == 200).json()["output"]["task_id"]
    with httpx.Client(base_url=gateways.api(1), headers=_headers(key), timeout=10) as http:
        assert http.post(f"/tasks/{first}/cancel").status_code == 200
        assert http.post(SUBMIT, json=body(V15, steps=1)).status_code == 200
        assert http.post(SUBMIT, json=body(V15, steps=1)).status_code == 429


def test_daily_images_are_exact_under_concurrent_submits_and_canceled_images_come_back(
    gateways: Gateways,
) -> None:
    name, key = _tenant(gateways, daily_images=10)
    answers = _burst(gateways, key, [body(V15, n=3, steps=1)] * 20)
    assert _codes(answers) == {"ok": 3, "Throttling.AllocationQuota": 17}
    refused = next(a for a in answers if a.status_code == 429)
    assert "Daily image quota exceeded: 10 images per day" in refused.json()["message"]
    assert refused.headers["x-ratelimit-remaining"] == "1"
    seconds_to_midnight = 86_400 - int(time.time()) % 86_400
    assert abs(int(refused.headers["retry-after"]) - seconds_to_midnight) <= 2
    with httpx.Client(base_url=gateways.api(0), headers=_headers(key), timeout=10) as http:
        assert http.post(SUBMIT, json=body(V15, n=2, steps=1)).status_code == 429
        assert http.post(SUBMIT, json=body(V15, n=1, steps=1)).status_code == 200
        first = next(a for a in answers if a.status_code == 200).json()["output"]["task_id"]
        assert http.post(f"/tasks/{first}/cancel").status_code == 200  # gives its 3 back
        assert http.post(SUBMIT, json=body(V15, n=3, steps=1)).status_code == 200
    with gateways.admin() as admin:
        (today,) = admin.get(f"/tenants/{name}/usage").json()["usage"]
    assert today["images"] == 10 and today["tasks_canceled"] == 1


def test_a_model_not_allowed_is_access_denied_unpurchased(gateways: Gateways) -> None:
    _, key = _tenant(gateways, models=[V15])
    with httpx.Client(base_url=gateways.api(0), headers=_headers(key), timeout=10) as http:
        refused = http.post(SUBMIT, json=body(XL, size="512*512"))
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "AccessDenied.Unpurchased"
        assert XL in refused.json()["message"] and refused.json()["request_id"]
        assert http.post(SUBMIT, json=body(V15)).status_code == 200


def _refused_within(gateways: Gateways, key: str, status: int, limit: float) -> list[float]:
    """Seconds until each gateway answers a task list with ``status`` (polling every 0.1 s)."""
    started, seen = time.monotonic(), [0.0, 0.0]
    while not all(seen) and time.monotonic() - started < limit + 2:
        for i in range(2):
            if not seen[i]:
                answer = httpx.get(gateways.api(i) + "/tasks", headers=_headers(key), timeout=5)
                if answer.status_code == status:
                    seen[i] = time.monotonic() - started
        time.sleep(0.1)
    return seen


def test_revoked_key_is_refused_at_once_by_submits_and_within_5s_by_both_gateways(
    gateways: Gateways,
) -> None:
    name, key = _tenant(gateways)
    with gateways.admin() as admin:
        spare = admin.post(f"/tenants/{name}/keys", json={"label": "spare"}).json()["key"]
        for i in range(2):  # both gateways have the key cached as valid
            assert httpx.get(gateways.api(i) + "/tasks", headers=_headers(key)).status_code == 200
        key_id = next(k["key_id"] for k in admin.get(f"/tenants/{name}/keys").json()["keys"])
        assert admin.post(f"/keys/{key_id}/revoke").json()["key"]["revoked_ms"]
    for i in range(2):
        submit = httpx.post(gateways.api(i) + SUBMIT, json=body(V15), headers=_headers(key))
        assert submit.status_code == 401 and submit.json()["code"] == "InvalidApiKey"
    seen = _refused_within(gateways, key, 401, 5)
    assert all(0 < t <= 5.5 for t in seen), seen
    still = httpx.post(gateways.api(1) + SUBMIT, json=body(V15), headers=_headers(spare["api_key"]))
    assert still.status_code == 200


def test_disabled_tenant_is_refused_by_both_gateways_and_enabling_restores_it(
    gateways: Gateways,
) -> None:
    name, key = _tenant(gateways)
    with gateways.admin() as admin:
        assert admin.post(f"/tenants/{name}/disable").json()["tenant"]["enabled"] is False
        for i in range(2):
            refused = httpx.post(gateways.api(i) + SUBMIT, json=body(V15), headers=_headers(key))
            assert refused.status_code == 403 and refused.json()["code"] == "AccessDenied"
            assert "disabled" in refused.json()["message"]
        assert all(0 < t <= 5.5 for t in _refused_within(gateways, key, 403, 5))
        assert admin.post(f"/tenants/{name}/enable").json()["tenant"]["enabled"] is True
    assert all(0 < t <= 5.5 for t in _refused_within(gateways, key, 200, 5))
    accepted = httpx.post(gateways.api(0) + SUBMIT, json=body(V15), headers=_headers(key))
    assert accepted.status_code == 200
