"""Dispatch: which pool a task goes to, and the Celery message that will run it there."""

from __future__ import annotations

import redis.asyncio as aioredis
from celery import Celery

from gateway.catalog import MODELS, UPSTREAM_QUEUE
from gateway.queueing import TaskMessages
from gateway.queues import pool_depth
from gateway.settings import Settings


class Dispatcher:
    """Routes a model to its local GPU pool, the upstream pool, or local with spill-over."""

    def __init__(self, celery: Celery, client: aioredis.Redis, settings: Settings) -> None:
        self._messages = TaskMessages(celery)
        self._redis = client
        self._settings = settings

    async def queue_for(self, model: str) -> str:
        route = self._settings.route(model)
        local = MODELS[model].queue
        if route == "local":
            return local
        if route == "upstream":
            return UPSTREAM_QUEUE
        # "both": what waits for the local pool, in its Celery queue and its fair queue.
        depth = await pool_depth(self._redis, local)
        return UPSTREAM_QUEUE if depth > self._settings.spillover_queue_depth else local

    def message(self, task_id: str, queue: str) -> bytes:
        """The message that runs the task on ``queue`` (only the task id: the record is the
        truth); the fair queue moves it into the Celery queue when the task's turn comes."""
        return self._messages.message(task_id, queue)
