"""What a worker's main process runs besides its tasks, in threads of their own: feeding and
reaping (:mod:`workers.upkeep`), webhook deliveries (:mod:`workers.webhook_delivery`) and the
local storage sweep (:mod:`workers.storage.sweep`).

A Celery worker starts them when it is ready and stops them at its shutdown; the
upstream worker, which runs no Celery, starts and stops them itself.
"""

from __future__ import annotations

from typing import Any, Protocol

from celery.signals import worker_ready, worker_shutdown

from taskcore.settings import Settings
from workers.storage.sweep import build_sweeper
from workers.upkeep import build_upkeep
from workers.webhook_delivery import WebhookLoop


class Service(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def worker_services(settings: Settings, pools: list[str]) -> list[Service]:
    services: list[Service] = [
        build_upkeep(settings, pools),
        WebhookLoop(settings),
    ]
    sweeper = build_sweeper(settings)
    if sweeper is not None:
        services.append(sweeper)
    return services


def run_with_celery_worker(services: list[Service]) -> None:
    """Start ``services`` when this Celery worker is ready; stop them at its shutdown."""

    def start(**_: Any) -> None:
        for service in services:
            service.start()

    def stop(**_: Any) -> None:
        for service in reversed(services):
            service.stop()

    worker_ready.connect(start, weak=False)
    worker_shutdown.connect(stop, weak=False)
