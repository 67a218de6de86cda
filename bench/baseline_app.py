"""The baseline: what a team would write instead of synthgate, a plain FastAPI + Celery gateway.

It does the same work per submit as synthgate's gateway minus the limits and the
fair queue: looks the key's SHA-256 up in Redis, validates the body with a pydantic
model, writes the task record (``HSET`` and a TTL) and sends the Celery task by name
(``send_task``, which kombu publishes to the queue's Redis list). Fetch reads the
record back. The idioms are the common ones: pydantic models as parameters, dicts
returned and serialized by FastAPI, ``redis.asyncio``, and ``send_task`` called in the
handler. It runs under the same uvicorn configuration as ``synthgate serve`` (uvloop,
httptools, one process, no access log), so the ratio compares the applications.

    .venv/bin/python bench/baseline_app.py --port 8001 --redis redis://127.0.0.1:6379/0

It reads the keys synthgate's tenant directory writes (``taskcore/redis_keys.py`` names them), so
one registered key works against both gateways.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import redis.asyncio as aioredis
import uvicorn
from celery import Celery
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, Field

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from taskcore import redis_keys  # noqa: E402

TASK = "synthgate.generate"
QUEUE = "baseline.noop"  # nothing consumes it
TTL_SECONDS = 7 * 86_400


class Input(BaseModel):
    prompt: str = Field(min_length=1)
    negative_prompt: str = ""


class Parameters(BaseModel):
    size: str = "1024*1024"
    n: int = Field(default=1, ge=1, le=4)
    steps: int = Field(default=50, ge=1, le=500)
    scale: float = Field(default=10, ge=1, le=15)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class SubmitBody(BaseModel):
    model: Literal["stable-diffusion-xl", "stable-diffusion-v1.5"]
    input: Input
    parameters: Parameters = Parameters()


def create_app(redis_url: str) -> FastAPI:
    celery = Celery("baseline", broker=redis_url)
    celery.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["redis"] = aioredis.Redis.from_url(redis_url, max_connections=256)
        yield
        await state["redis"].aclose()

    app = FastAPI(lifespan=lifespan)

    async def tenant_of(authorization: str) -> str:
        token = authorization.removeprefix("Bearer ").strip()
        digest = hashlib.sha256(token.encode()).hexdigest()
        tenant = await state["redis"].hget(redis_keys.api_key(digest), "tenant")
        if tenant is None:
            raise HTTPException(401, "invalid api key")
        return str(tenant.decode())

    @app.post("/api/v1/services/aigc/text2image/image-synthesis")
    async def submit(
        body: SubmitBody,
        authorization: Annotated[str, Header()] = "",
        x_dashscope_async: Annotated[str, Header()] = "",
    ) -> dict[str, Any]:
        if x_dashscope_async != "enable":
            raise HTTPException(403, "asynchronous calls only")
        tenant = await tenant_of(authorization)
        task_id = str(uuid.uuid4())
        record = {
            "tenant": tenant,
            "status": "PENDING",
            "model": body.model,
            "request": body.model_dump_json(),
            "submit_ms": time.time_ns() // 1_000_000,
        }
        await state["redis"].hset(redis_keys.task(task_id), mapping=record)
        await state["redis"].expire(redis_keys.task(task_id), TTL_SECONDS)
        celery.send_task(TASK, args=[task_id], queue=QUEUE)
        return {"output": {"task_id": task_id, "task_status": "PENDING"}, "request_id": task_id}

    @app.get("/api/v1/tasks/{task_id}")
    async def fetch(task_id: str, authorization: Annotated[str, Header()] = "") -> dict[str, Any]:
        tenant = await tenant_of(authorization)
        data = await state["redis"].hgetall(redis_keys.task(task_id))
        if not data or data.get(b"tenant", b"").decode() != tenant:
            return {"output": {"task_id": task_id, "task_status": "UNKNOWN"}}
        output = {"task_id": task_id, "task_status": data[b"status"].decode()}
        return {"output": output, "request_id": str(uuid.uuid4())}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.redis),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
