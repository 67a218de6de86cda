"""The upstream backend against the simulator process and a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from email.utils import formatdate

import httpx
import redis.asyncio as aioredis
from fixtures.processes import RedisServer
from fixtures.simulator import UPSTREAM_KEY, SimulatorProcess

from gateway.contracts.dashscope import builtin_catalog, parse_submit
from taskcore.contract import GenerationRequest, ImageOutcome
from taskcore.settings import Settings
from taskcore.store.tasks import TaskStore
from taskcore.store.worker import WorkerTaskStore
from workers.backends.results import REJECTED, ResultFetcher, ResultPolicy
from workers.backends.upstream import UpstreamBackend, upstream_body
from workers.backends.upstream_http import open_session, retry_after

JOB = GenerationRequest("stable-diffusion-xl", "a cat", "", 512, 512, 2, 20, 7.0, 42)


def test_parameters_go_upstream_unchanged() -> None:
    catalog = builtin_catalog()
    assert upstream_body(JOB, catalog["stable-diffusion-xl"]) == {
        "model": "stable-diffusion-xl",
        "input": {"prompt": "a cat"},  # an empty negative prompt is no negative prompt
        "parameters": {"size": "512*512", "n": 2, "steps": 20, "scale": 7, "seed": 42},
    }


def test_a_wanx_body_has_the_fields_of_its_model_where_dashscope_takes_them() -> None:
    catalog = builtin_catalog()
    body = {
        "model": "wanx2.1-t2i-turbo",
        "input": {"prompt": "a cat", "negative_prompt": "dogs"},
        "parameters": {"size": "1024*1024", "n": 2, "seed": 7, "prompt_extend": False},
    }
    job = parse_submit(body, catalog)
    assert upstream_body(job, catalog["wanx2.1-t2i-turbo"]) == {
        "model": "wanx2.1-t2i-turbo",
        "input": {"prompt": "a cat", "negative_prompt": "dogs"},
        "parameters": {
            "size": "1024*1024",
            "n": 2,
            "seed": 7,
            "prompt_extend": False,
            "watermark": False,  # the model's default, sent as such
        },
    }


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("3", 9.0) == 3.0
    assert 9 <= retry_after(formatdate(time.time() + 10, usegmt=True), 0) <= 10
    assert retry_after("soon", 9.0) == 9.0
    assert retry_after("", 9.0) == 9.0


def test_result_urls_outside_the_allow_list_or_not_http_are_rejected(
    simulator: SimulatorProcess,
) -> None:
    async def fetch_both() -> list[ImageOutcome]:
        async with open_session(4) as http:
            fetcher = ResultFetcher(http, ResultPolicy(hosts=("*.example.com",), max_bytes=1024))
            deadline = time.time() + 5
            return [
                await fetcher.fetch(0, f"{simulator.url}/results/x/0.png", deadline),
                await fetcher.fetch(1, "file:///etc/passwd", deadline),
            ]

    outside, not_http = asyncio.run(fetch_both())
    assert outside.code == REJECTED and "allow-list" in (outside.message or "")
    assert not_http.code == REJECTED


def test_a_redelivered_task_resumes_its_upstream_task_instead_of_paying_twice(
    redis_server: RedisServer, simulator: SimulatorProcess
) -> None:
    task_id = str(uuid.uuid4())

    async def create() -> None:
        redis_client = aioredis.Redis.from_url(redis_server.url)
        await TaskStore(redis_client, 3600).create(task_id, "acme", JOB, "upstream")
        await redis_client.aclose()

    asyncio.run(create())
    store = WorkerTaskStore(redis_server.client(), 3600)
    first = store.claim(task_id)
    assert first is not None and first.upstream_task_id == ""
    submitted = httpx.post(
        f"{simulator.api}/services/aigc/text2image/image-synthesis",
        json=upstream_body(JOB, builtin_catalog()["stable-diffusion-xl"]),
        headers={"Authorization": f"Bearer {UPSTREAM_KEY}", "X-DashScope-Async": "enable"},
    ).json()["output"]["task_id"]
    assert store.annotate(task_id, "upstream_task_id", submitted)  # then the worker died
    redelivered = store.claim(task_id)
    assert redelivered is not None and redelivered.attempts == 2
    assert redelivered.upstream_task_id == submitted
    settings = Settings(
        redis_url=redis_server.url,
        upstream_base_url=simulator.api,
        upstream_api_key=UPSTREAM_KEY,  # type: ignore[arg-type]
        upstream_result_hosts="127.0.0.1",
    )
    submits_before = simulator.stats()["requests"]["submit"]
    backend = UpstreamBackend(settings, store)
    outcomes = backend.generate(redelivered)
    backend.close()
    assert [o.ok for o in outcomes] == [True, True]
    assert simulator.stats()["requests"]["submit"] == submits_before
