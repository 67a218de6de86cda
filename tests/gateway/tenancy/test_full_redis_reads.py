"""A Redis at ``maxmemory`` refuses new work, but every authenticated read still answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fixtures.asgi import app_client
from fixtures.processes import running_redis
from fixtures.tenants import register_tenant, submit_direct

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
        settings = Settings(redis_url=server.url, key_cache_seconds=0)
        headers = {"Authorization": f"Bearer {api_key}"}

        async def calls() -> list[int]:
            async with app_client(settings, "/api/v1", headers) as http:
                redis_client.config_set("maxmemory-policy", "noeviction")
                redis_client.config_set("maxmemory", "1")
                try:
                    answers = [
                        await http.get(f"/tasks/{task_id}"),
                        await http.get("/tasks"),
                        await http.post(f"/tasks/{task_id}/cancel"),
                    ]
                finally:
                    redis_client.config_set("maxmemory", "0")
            return [answer.status_code for answer in answers]

        assert asyncio.run(calls()) == [200, 200, 200]
        assert redis_client.hget(f"synthgate:task:{task_id}", "status") == b"CANCELED"
