"""The admin API and the ``synthgate tenants|keys`` CLI, end to end on live gateways."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from typing import Any

import httpx
import pytest
from fixtures.processes import ROOT
from fixtures.stack import Gateways, Stack
from fixtures.tasks import SUBMIT, body

V15 = "stable-diffusion-v1.5"


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "X-DashScope-Async": "enable"}


def _submit(gateways: Gateways, key: str, i: int = 0, **params: Any) -> httpx.Response:
    return httpx.post(gateways.api(i) + SUBMIT, json=body(V15, **params), headers=_headers(key))


@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer wrong-token", "Basic x"])
def test_admin_api_refuses_a_missing_or_wrong_token(
    gateways: Gateways, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in [("GET", "/tenants"), ("POST", "/tenants"), ("POST", "/keys/k-x/revoke")]:
        answer = httpx.request(
            method, f"{gateways.urls[0]}/admin/v1{path}", headers=headers, json={"name": "x"}
        )
        assert answer.status_code == 401, answer.text
        assert answer.json()["code"] == "InvalidApiKey" and answer.json()["request_id"]


def test_a_tenant_api_key_is_not_an_admin_token(gateways: Gateways) -> None:
    with gateways.admin() as admin:
        key = admin.post("/tenants", json={"name": "t-" + secrets.token_hex(4)}).json()["key"]
    answer = httpx.get(f"{gateways.urls[1]}/admin/v1/tenants", headers=_headers(key["api_key"]))
    assert answer.status_code == 401


def test_admin_api_is_off_without_a_configured_token(stack: Stack) -> None:
    answer = httpx.get(f"{stack.base_url}/admin/v1/tenants", headers={"Authorization": "Bearer x"})
    assert answer.status_code == 404 and answer.json()["code"] == "NotFound"


def test_tenant_lifecycle_through_the_admin_api(gateways: Gateways) -> None:
    name = "acme-" + secrets.token_hex(3)
    with gateways.admin(0) as admin, gateways.admin(1) as other:
        created = admin.post("/tenants", json={"name": name, "rpm": 30, "models": [V15]})
        assert created.status_code == 201
        tenant, key = created.json()["tenant"], created.json()["key"]
        assert tenant["rpm"] == 30 and tenant["models"] == [V15] and tenant["enabled"]
        assert key["api_key"].startswith("sk-") and key["label"] == "default"
        assert _submit(gateways, key["api_key"], 1, n=2).status_code == 200
        assert name in [t["name"] for t in other.get("/tenants").json()["tenants"]]
        shown = other.get(f"/tenants/{name}").json()
        assert shown["active_tasks"] == 1
        assert [k["key_id"] for k in shown["keys"]] == [key["key_id"]]
        assert shown["keys"][0]["last_used_ms"] is not None
        updated = other.patch(f"/tenants/{name}", json={"max_concurrent": 1, "weight": 2.5})
        assert updated.json()["tenant"] | {"updated_ms": 0} == tenant | {
            "max_concurrent": 1,
            "weight": 2.5,
            "updated_ms": 0,
        }
        assert _submit(gateways, key["api_key"]).json()["code"] == "Throttling.AllocationQuota"
        usage = admin.get(f"/tenants/{name}/usage").json()["usage"][0]
        assert usage["tasks"] == 1 and usage["images"] == 2 and usage["rejected_concurrency"] == 1
        second = admin.post(f"/tenants/{name}/keys", json={"label": "ci"}).json()["key"]
        listed = admin.get(f"/tenants/{name}/keys").json()["keys"]
        assert [k["label"] for k in listed] == ["default", "ci"]
        revoked = admin.post(f"/keys/{second['key_id']}/revoke").json()["key"]
        assert revoked["revoked_ms"] and _submit(gateways, second["api_key"]).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code"),
    [
        ("POST", "/tenants", {"name": "../etc"}, 400, "InvalidParameter"),
        ("POST", "/tenants", {"name": ".."}, 400, "InvalidParameter"),
        ("POST", "/tenants", {"name": "x" * 65}, 400, "InvalidParameter"),
        ("POST", "/tenants", {"name": "ok", "rpm": -1}, 400, "InvalidParameter"),
        ("POST", "/tenants", {"name": "ok", "models": ["dall-e"]}, 400, "InvalidParameter"),
        ("POST", "/tenants", {"name": "ok", "weight": 0}, 400, "InvalidParameter"),
        ("POST", "/tenants", {"name": "ok", "surprise": 1}, 400, "InvalidParameter"),
        ("GET", "/tenants/nobody", None, 404, "NotFound"),
        ("PATCH", "/tenants/nobody", {"rpm": 1}, 404, "NotFound"),
        ("POST", "/tenants/nobody/keys", {}, 404, "NotFound"),
        ("POST", "/keys/k-nothing/revoke", None, 404, "NotFound"),
        ("GET", "/tenants/nobody/usage", None, 404, "NotFound"),
    ],
)
def test_admin_api_rejects_bad_input_in_dashscope_shape(
    gateways: Gateways,
    method: str,
    path: str,
    payload: dict[str, Any] | None,
    status: int,
    code: str,
) -> None:
    with gateways.admin() as admin:
        answer = admin.request(method, path, json=payload)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code and answer.json()["message"]


def test_creating_an_existing_tenant_is_a_conflict(gateways: Gateways) -> None:
    name = "t-" + secrets.token_hex(4)
    with gateways.admin() as admin:
        assert admin.post("/tenants", json={"name": name}).status_code == 201
        again = admin.post("/tenants", json={"name": name})
    assert again.status_code == 409 and again.json()["code"] == "Conflict"


def test_keys_never_appear_in_responses_or_logs_after_creation(gateways: Gateways) -> None:
    name = "t-" + secrets.token_hex(4)
    with gateways.admin() as admin:
        key = admin.post("/tenants", json={"name": name}).json()["key"]["api_key"]
        extra = admin.post(f"/tenants/{name}/keys").json()["key"]["api_key"]
        task = _submit(gateways, key).json()["output"]["task_id"]
        later = [
            admin.get("/tenants"),
            admin.get(f"/tenants/{name}"),
            admin.get(f"/tenants/{name}/keys"),
            admin.get(f"/tenants/{name}/usage"),
            httpx.get(f"{gateways.api(1)}/tasks/{task}", headers=_headers(extra)),
            httpx.get(f"{gateways.api(1)}/tasks", headers=_headers(key)),
        ]
    assert all(answer.status_code == 200 for answer in later)
    seen = "".join(answer.text for answer in later) + gateways.logs()
    assert key not in seen and extra not in seen
    assert gateways.admin_token not in gateways.logs()


def _cli(gateways: Gateways, *args: str, ok: bool = True) -> list[str]:
    env = {**os.environ, "SYNTHGATE_REDIS_URL": gateways.redis.url, "SYNTHGATE_LOG_FORMAT": "text"}
    done = subprocess.run(
        [sys.executable, "-m", "synthgate.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode == 0) is ok, done.stdout + done.stderr
    return (done.stdout if ok else done.stderr).strip().splitlines()


def test_cli_manages_tenants_and_keys_on_the_same_data(gateways: Gateways) -> None:
    name = "cli-" + secrets.token_hex(3)
    created = _cli(gateways, "tenants", "create", name, "--rpm", "5", "--models", V15)
    key = created[-1]
    assert key.startswith("sk-") and " " not in key and key not in "\n".join(created[:-1])
    assert _submit(gateways, key, 1).status_code == 200
    assert any(
        line.startswith(f"{name}: enabled, rpm 5,") for line in _cli(gateways, "tenants", "list")
    )
    _cli(gateways, "tenants", "update", name, "--max-concurrent", "3", "--models", "all")
    shown = json.loads("\n".join(_cli(gateways, "tenants", "show", name)))
    assert shown["tenant"]["max_concurrent"] == 3 and shown["tenant"]["models"] == []
    assert shown["tenant"]["rpm"] == 5 and shown["active_tasks"] == 1
    second = _cli(gateways, "keys", "create", name, "--label", "ops")[-1]
    assert _submit(gateways, second).status_code == 200
    key_id = next(line.split()[0] for line in _cli(gateways, "keys", "list", name) if "ops" in line)
    _cli(gateways, "keys", "revoke", key_id)
    assert _submit(gateways, second).status_code == 401
    usage = json.loads("\n".join(_cli(gateways, "tenants", "usage", name)))
    assert usage[0]["tasks"] == 2
    _cli(gateways, "tenants", "disable", name)
    assert _submit(gateways, key).status_code == 403
    with gateways.admin() as admin:
        assert admin.get(f"/tenants/{name}").json()["tenant"]["enabled"] is False


def test_cli_refuses_bad_names_unknown_tenants_and_duplicates(gateways: Gateways) -> None:
    assert "invalid tenant name" in _cli(gateways, "tenants", "create", "a/b", ok=False)[-1]
    assert "no tenant 'nobody'" in _cli(gateways, "keys", "create", "nobody", ok=False)[-1]
    assert "no API key" in _cli(gateways, "keys", "revoke", "k-none", ok=False)[-1]
    name = "dup-" + secrets.token_hex(3)
    _cli(gateways, "tenants", "create", name)
    assert "exists already" in _cli(gateways, "tenants", "create", name, ok=False)[-1]
