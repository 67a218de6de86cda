"""Real answers of a live gateway and worker, success and errors, each checked against the
gateway's own OpenAPI schema (its documented status, media type and body schema): the
schema says what the gateway really answers, not what FastAPI guessed."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fixtures.openapi_check import SchemaCheck
from fixtures.tasks import SUBMIT, body, wait_status
from fixtures.webhooks import HookStack

TASK = "/api/v1/tasks/{task_id}"
SUBMIT_PATH = "/api/v1" + SUBMIT


@pytest.fixture(scope="module")
def check(hook_stack: HookStack) -> SchemaCheck:
    schema = httpx.get(f"{hook_stack.stack.base_url}/openapi.json", timeout=30).json()
    return SchemaCheck(schema)


def test_the_dashscope_api_answers_as_the_schema_says(
    hook_stack: HookStack, check: SchemaCheck
) -> None:
    _, key, _ = hook_stack.tenant()
    with hook_stack.client(key) as api:
        accepted = check("POST", SUBMIT_PATH, api.post(SUBMIT, json=body(steps=2, n=2)))
        task_id = accepted.json()["output"]["task_id"]
        done = wait_status(api, task_id, {"SUCCEEDED"})
        assert done["usage"] == {"image_count": 2}
        fetched = check("GET", TASK, api.get(f"/tasks/{task_id}"))
        assert fetched.json()["output"]["results"][0]["url"]
        check("GET", TASK, api.get("/tasks/no-such-task"))  # 200, UNKNOWN
        check("GET", "/api/v1/tasks", api.get("/tasks", params={"page_size": 5}))
        check("GET", "/api/v1/models", api.get("/models"))
        events = api.get(f"/tasks/{task_id}/events")
        check("GET", TASK + "/events", events)
        assert "event: status" in events.text
        image = api.get(fetched.json()["output"]["results"][0]["url"])
        check("GET", "/files/{key}", image)
        # Errors: each with its documented status and DashScope's body.
        check("POST", TASK + "/cancel", api.post(f"/tasks/{task_id}/cancel"))  # 400: finished
        check("POST", SUBMIT_PATH, api.post(SUBMIT, json={"model": "stable-diffusion-v1.5"}))
        check("POST", SUBMIT_PATH, api.post(SUBMIT, content=b"{not json"))
        check("POST", SUBMIT_PATH, api.post(SUBMIT, json=body(), headers={"X-DashScope-Async": ""}))
        check("POST", SUBMIT_PATH, api.post(SUBMIT, content=b"x" * (2 << 20)))  # 413
        check("GET", "/api/v1/tasks", api.get("/tasks", params={"page_no": "zero"}))
        idem = {"Idempotency-Key": "openapi-check-1"}
        check("POST", SUBMIT_PATH, api.post(SUBMIT, json=body(steps=1), headers=idem))
        check("POST", SUBMIT_PATH, api.post(SUBMIT, json=body(steps=2), headers=idem))  # 409
        signed = fetched.json()["output"]["results"][0]["url"]
        check("GET", "/files/{key}", api.get(signed.replace("sig=", "sig=0")))  # 403
    with httpx.Client(base_url=hook_stack.stack.api, timeout=30) as anonymous:
        check("GET", TASK, anonymous.get(f"/tasks/{task_id}"))  # 401
        bad = {"Authorization": "Bearer sk-" + "0" * 43}
        check("GET", "/api/v1/models", anonymous.get("/models", headers=bad))
    statuses = {status for method, path, status in check.seen if path == SUBMIT_PATH}
    assert {200, 400, 403, 409, 413} <= statuses, statuses


def test_a_throttled_tenant_gets_the_documented_429(
    hook_stack: HookStack, check: SchemaCheck
) -> None:
    _, key, _ = hook_stack.tenant(rpm=1)
    with hook_stack.client(key) as api:
        check("POST", SUBMIT_PATH, api.post(SUBMIT, json=body(steps=1)))
        throttled = check("POST", SUBMIT_PATH, api.post(SUBMIT, json=body(steps=1)))
    assert throttled.status_code == 429 and throttled.headers["retry-after"]


def test_the_openai_api_answers_as_the_schema_says(
    hook_stack: HookStack, check: SchemaCheck
) -> None:
    _, key, _ = hook_stack.tenant()
    auth = {"Authorization": f"Bearer {key}"}
    base = f"{hook_stack.stack.base_url}/v1"
    with httpx.Client(base_url=base, headers=auth, timeout=120) as openai:
        made = openai.post(
            "/images/generations",
            json={"model": "stable-diffusion-v1.5", "prompt": "a cat", "steps": 1, "n": 1},
        )
        check("POST", "/v1/images/generations", made)
        assert made.status_code == 200 and made.json()["data"][0]["url"]
        b64 = {"model": "stable-diffusion-v1.5", "prompt": "a cat", "steps": 1}
        made = openai.post("/images/generations", json={**b64, "response_format": "b64_json"})
        assert check("POST", "/v1/images/generations", made).json()["data"][0]["b64_json"]
        check("GET", "/v1/models", openai.get("/models"))
        check("POST", "/v1/images/generations", openai.post("/images/generations", json={}))
        wrong = openai.post("/images/generations", json={"prompt": "x", "stream": True})
        assert check("POST", "/v1/images/generations", wrong).status_code == 400
        anonymous = openai.get("/models", headers={"Authorization": ""})
        assert check("GET", "/v1/models", anonymous).json()["error"]["code"]


def test_the_admin_api_answers_as_the_schema_says(
    hook_stack: HookStack, check: SchemaCheck
) -> None:
    name = f"schema-{time.monotonic_ns()}"
    with hook_stack.admin() as admin:
        created = check("POST", "/admin/v1/tenants", admin.post("/tenants", json={"name": name}))
        assert created.status_code == 201
        key_id = created.json()["key"]["key_id"]
        check("POST", "/admin/v1/tenants", admin.post("/tenants", json={"name": name}))  # 409
        check("POST", "/admin/v1/tenants", admin.post("/tenants", json={"rpm": "many"}))  # 400
        check("GET", "/admin/v1/tenants", admin.get("/tenants"))
        one = "/admin/v1/tenants/{name}"
        check("GET", one, admin.get(f"/tenants/{name}"))
        check("GET", one, admin.get("/tenants/nobody-here"))  # 404
        check("PATCH", one, admin.patch(f"/tenants/{name}", json={"rpm": 100}))
        check("PATCH", one, admin.patch(f"/tenants/{name}", json={"color": "red"}))  # 400
        check("POST", one + "/disable", admin.post(f"/tenants/{name}/disable"))
        check("POST", one + "/enable", admin.post(f"/tenants/{name}/enable"))
        check("POST", one + "/webhook-secret", admin.post(f"/tenants/{name}/webhook-secret"))
        check("POST", one + "/keys", admin.post(f"/tenants/{name}/keys", json={"label": "ci"}))
        check("GET", one + "/keys", admin.get(f"/tenants/{name}/keys"))
        check("POST", "/admin/v1/keys/{key_id}/revoke", admin.post(f"/keys/{key_id}/revoke"))
        check("POST", "/admin/v1/keys/{key_id}/revoke", admin.post("/keys/nope/revoke"))
        check("GET", one + "/usage", admin.get(f"/tenants/{name}/usage"))
        check("GET", one + "/usage", admin.get(f"/tenants/{name}/usage", params={"start": "x"}))
        check("GET", "/admin/v1/pools", admin.get("/pools"))
        check("GET", "/admin/v1/upstream-accounts", admin.get("/upstream-accounts"))
        wrong = admin.get("/pools", headers={"Authorization": "Bearer wrong"})
        assert check("GET", "/admin/v1/pools", wrong).status_code == 401


def test_the_probes_and_metrics_answer_as_the_schema_says(
    hook_stack: HookStack, check: SchemaCheck
) -> None:
    base = hook_stack.stack.base_url
    check("GET", "/healthz", httpx.get(f"{base}/healthz"))
    check("GET", "/readyz", httpx.get(f"{base}/readyz"))
    check("GET", "/readyz", httpx.get(f"{base}/readyz", params={"exclude": "workers"}))
    metrics: Any = check("GET", "/metrics", httpx.get(f"{base}/metrics"))
    assert "synthgate_" in metrics.text
