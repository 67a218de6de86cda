"""A Redis at ``maxmemory`` refuses new work, but every authenticated read still answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from fixtures.processes import running_redis
from fixtures.tenants import register_tenant, submit_direct

from gateway.edge.app import create_app
from taskcore.contract import GenerationRequest
from taskcore.settings import Settings

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 1, 7.0, 1)


def test_a_full_redis_answers_fetch_list_and_cancel_for_a_key_not_cached(
    tmp_path: Path,
) -> None:
    with running_redis(tmp_path) as server:
        api_key = register_tenant(server.url, "acme")
        task_id = submit_direct(server.url, api_key, JOB, "test.full-redis")
        redis_client = server.client()
        # No key cache: every request looks its key up in the full Redis.
        app = create_app(Settings(redis_url=server.url, key_cache_seconds=0))
        headers = {"Authorization": f"Bearer {api_key}"}

        async def calls() -> list[int]:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                    redis_client.config_set("maxmemory-policy", "noeviction")
                    redis_client.config_set("maxmemory", "1")
                    try:
                        answers = [
                            await http.get(f"/api/v1/tasks/{task_id}", headers=headers),
                            await http.get("/api/v1/tasks", headers=headers),
                            await http.post(f"/api/v1/tasks/{task_id}/cancel", headers=headers),
                        ]
                    finally:
                        redis_client.config_set("maxmemory", "0")
            return [answer.status_code for answer in answers]

        assert asyncio.run(calls()) == [200, 200, 200]
        assert redis_client.hget(f"synthgate:task:{task_id}", "status") == b"CANCELED"
