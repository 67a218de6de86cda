"""Tenant names and key ids in every admin route: the whole name checked, 400 or 404, never
500, and nothing made under a name that could not be created."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from fixtures.asgi import app_client
from fixtures.processes import running_redis

from taskcore.settings import Settings

TOKEN = "admin-" + secrets.token_urlsafe(32)
# A key's Redis name (synthgate:tenant:alpha:keys is alpha's key set), a trailing newline,
# path tricks, and a name too long.
BAD_NAMES = ["alpha:keys", "alpha%0A", "alpha%0D", "..", "alpha%2Fbeta", "al%20pha", "a" * 65]
BAD_KEY_IDS = ["k-1:x", "k-0123456789abcdef%0A", "nope", "k-" + "0" * 200]


def _statuses(
    redis_url: str, requests: list[tuple[str, str, dict[str, object] | None]]
) -> list[int]:
    settings = Settings(redis_url=redis_url, admin_token=TOKEN)  # type: ignore[arg-type]

    async def run() -> list[int]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with app_client(settings, "/admin/v1", headers) as http:
            # alpha exists: its key set is what "alpha:keys" names
            created = await http.post("/tenants", json={"name": "alpha"})
            assert created.status_code == 201, created.text
            answers = []
            for method, path, body in requests:
                answer = await http.request(method, path, json=body)
                assert answer.json().get("code"), answer.text  # a DashScope-shaped error
                answers.append(answer.status_code)
            return answers

    return asyncio.run(run())


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_tenant_name_in_a_path_is_400_or_404(tmp_path: Path, name: str) -> None:
    requests: list[tuple[str, str, dict[str, object] | None]] = [
        ("GET", f"/tenants/{name}", None),
        ("PATCH", f"/tenants/{name}", {"rpm": 5}),
        ("POST", f"/tenants/{name}/disable", None),
        ("POST", f"/tenants/{name}/enable", None),
        ("POST", f"/tenants/{name}/webhook-secret", None),
        ("POST", f"/tenants/{name}/keys", {"label": "x"}),
        ("GET", f"/tenants/{name}/keys", None),
        ("GET", f"/tenants/{name}/usage", None),
    ]
    with running_redis(tmp_path) as server:
        statuses = _statuses(server.url, requests)
    assert all(status in (400, 404) for status in statuses), list(
        zip(requests, statuses, strict=True)
    )


@pytest.mark.parametrize("key_id", BAD_KEY_IDS)
def test_a_bad_key_id_in_a_path_is_400_or_404(tmp_path: Path, key_id: str) -> None:
    with running_redis(tmp_path) as server:
        [status] = _statuses(server.url, [("POST", f"/keys/{key_id}/revoke", None)])
    assert status in (400, 404)


@pytest.mark.parametrize("name", ["alpha\n", "beta\r", "gamma ", " delta", "e:f", ".", ""])
def test_a_tenant_is_never_created_under_a_bad_name(tmp_path: Path, name: str) -> None:
    with running_redis(tmp_path) as server:
        [status] = _statuses(server.url, [("POST", "/tenants", {"name": name})])
        assert status == 400
        assert server.client().smembers("synthgate:tenants") == {b"alpha"}
