"""Dispatch: which pool's queue a task goes to, and sending its Celery message there."""

from __future__ import annotations

import redis.asyncio as aioredis
from celery import Celery
from starlette.concurrency import run_in_threadpool

from gateway.catalog import MODELS, UPSTREAM_QUEUE
from gateway.queueing import GENERATE_TASK
from gateway.settings import Settings


class Dispatcher:
    """Routes a model to its local GPU pool, the upstream pool, or local with spill-over."""

    def __init__(self, celery: Celery, client: aioredis.Redis, settings: Settings) -> None:
        self._celery = celery
        self._redis = client
        self._settings = settings

    async def queue_for(self, model: str) -> str:
        route = self._settings.route(model)
        local = MODELS[model].queue
        if route == "local":
            return local
        if route == "upstream":
            return UPSTREAM_QUEUE
        # "both": Celery's Redis transport keeps a queue as a list named like the queue.
        depth = await self._redis.llen(local)
        return UPSTREAM_QUEUE if depth > self._settings.spillover_queue_depth else local

    async def send(self, task_id: str, queue: str) -> None:
        """Queue the task's message (the message is only the task id; the record is the truth)."""
        await run_in_threadpool(self._celery.send_task, GENERATE_TASK, args=[task_id], queue=queue)
