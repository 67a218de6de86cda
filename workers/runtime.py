"""What a worker process holds: its status-store client, storage and backend.

Built once per worker process (after the fork, so no connection or model is
shared across processes) and kept in an explicit process-level slot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from gateway.catalog import MODELS
from gateway.settings import Settings
from gateway.store import WorkerTaskStore
from workers.backends.diffusion import DiffusersBackend
from workers.storage.local import LocalStorage

log = logging.getLogger("synthgate.worker")


@dataclass
class WorkerRuntime:
    settings: Settings
    store: WorkerTaskStore
    storage: LocalStorage
    backend: DiffusersBackend

    def preload(self, queues: list[str]) -> None:
        """Load the pipelines of the pools this worker serves, before the first task."""
        for kind in sorted({spec.kind for spec in MODELS.values() if spec.queue in queues}):
            log.info("loading %s pipeline", kind)
            self.backend.load(kind)


_RUNTIME: WorkerRuntime | None = None  # process-level: one per worker process


def get_runtime(settings: Settings) -> WorkerRuntime:
    """This process's runtime, built on first use."""
    global _RUNTIME
    if _RUNTIME is None:
        client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
        _RUNTIME = WorkerRuntime(
            settings=settings,
            store=WorkerTaskStore(client, settings.task_ttl_seconds),
            storage=LocalStorage(settings.storage_dir),
            backend=DiffusersBackend(
                settings.weights_dirs(), settings.demo_weights_dir, settings.device
            ),
        )
    return _RUNTIME
