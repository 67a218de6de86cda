"""The fast task fetch answers exactly what the FastAPI route answers, errors included."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis.asyncio as aioredis
from fixtures.processes import RedisServer
from fixtures.tenants import submit_many

from gateway.edge.app import create_app
from gateway.edge.fastpath import ROUTE_PATH, TaskFetchFastPath
from gateway.operations.metrics import REQUESTS
from gateway.tenancy.directory import TenantDirectory
from gateway.tenancy.models import Limits
from taskcore.contract import GenerationRequest
from taskcore.settings import Settings

JOB = GenerationRequest("stable-diffusion-xl", "a cat", "", 512, 512, 1, 20, 7.0, 1)
Answer = tuple[int, dict[str, Any], str, bool]  # status, body without request_id, type, id


async def _answers(
    settings: Settings,
    requests: list[tuple[str, dict[str, str]]],
    outage: RedisServer | None = None,
) -> list[Answer]:
    """Each request's answer, from a gateway with the fast path and from one without
    (with ``outage`` stopped once the gateway has started, and started again after)."""
    results = []
    for fast in (True, False):
        app = create_app(settings)
        if not fast:
            app.user_middleware = [m for m in app.user_middleware if m.cls is not TaskFetchFastPath]
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
                if outage is not None:
                    outage.stop()
                answers = []
                for path, headers in requests:
                    response = await http.get(path, headers=headers)
                    body = orjson.loads(response.content)
                    has_id = body.pop("request_id", None) == response.headers.get("x-request-id")
                    answers.append(
                        (response.status_code, body, response.headers["content-type"], has_id)
                    )
                if outage is not None:
                    outage.start()
                results.append(answers)
    assert results[0] == results[1]
    return results[0]


def test_the_fast_fetch_answers_what_the_route_answers(
    redis_server: RedisServer, new_tenant: Callable[..., str]
) -> None:
    mine, other = new_tenant(), new_tenant()
    pool = "test.fast." + uuid.uuid4().hex[:8]
    (task_id,) = submit_many(redis_server.url, mine, [JOB], pool, 100)
    (others,) = submit_many(redis_server.url, other, [JOB], pool, 100)
    auth = {"Authorization": f"Bearer {mine}"}
    settings = Settings(redis_url=redis_server.url)
    before = REQUESTS.labels(ROUTE_PATH, "GET", "200")._value.get()
    answers = asyncio.run(
        _answers(
            settings,
            [
                (f"/api/v1/tasks/{task_id}", auth),
                (f"/api/v1/tasks/{others}", auth),  # another tenant's: unknown to this one
                ("/api/v1/tasks/no-such-task", auth),
                (f"/api/v1/tasks/{task_id}", {}),
                (f"/api/v1/tasks/{task_id}", {"Authorization": "Bearer sk-wrong"}),
                (f"/api/v1/tasks/{task_id}", {"Authorization": f"Basic {mine}"}),
            ],
        )
    )
    mine_answer, others_answer, unknown, *unauthorized = answers
    assert mine_answer[0] == 200 and mine_answer[1]["output"]["task_status"] == "PENDING"
    assert mine_answer[2] == "application/json" and mine_answer[3]
    for answer in (others_answer, unknown):
        assert answer[0] == 200 and answer[1]["output"]["task_status"] == "UNKNOWN"
    assert [a[0] for a in unauthorized] == [401] * 3
    assert {a[1]["code"] for a in unauthorized} == {"InvalidApiKey"}
    # The metrics count fast fetches under the route's own label, as FastAPI's.
    after = REQUESTS.labels(ROUTE_PATH, "GET", "200")._value.get()
    assert after - before == 2 * 3


def test_a_disabled_tenant_and_a_redis_outage_answer_alike(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:

        async def disabled_tenant_key() -> str:
            redis_client = aioredis.Redis.from_url(server.url)
            try:
                directory = TenantDirectory(redis_client)
                tenant, key = await directory.create("off-" + uuid.uuid4().hex[:6], Limits())
                await directory.update(tenant.name, enabled=False)
                return key.api_key
            finally:
                await redis_client.aclose()

        auth = {"Authorization": f"Bearer {asyncio.run(disabled_tenant_key())}"}
        settings = Settings(redis_url=server.url)
        ((status, body, _, has_id),) = asyncio.run(_answers(settings, [("/api/v1/tasks/x", auth)]))
        assert (status, body["code"], has_id) == (403, "AccessDenied", True)

        ((status, body, _, _),) = asyncio.run(
            _answers(settings, [("/api/v1/tasks/x", auth)], outage=server)
        )
        assert (status, body["code"]) == (503, "ServiceUnavailable")
    finally:
        server.stop()
