"""The worker's Celery app: the ``synthgate.generate`` task and per-process start-up."""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import Celery, bootsteps
from celery.signals import setup_logging, worker_process_init, worker_ready, worker_shutdown

from taskcore import redis_connect
from taskcore.catalog import is_upstream_pool
from taskcore.celery_queue import GENERATE_TASK, create_celery
from taskcore.logs import uses_json
from taskcore.settings import Settings
from workers import health
from workers.generate import run_generate
from workers.heartbeat import Heartbeat
from workers.runtime import get_runtime, served_queues
from workers.services import run_with_celery_worker, worker_services

log = logging.getLogger("synthgate.worker")


def create_worker_app(settings: Settings) -> Celery:
    """A Celery app with the generate task bound to ``settings``."""
    app = create_celery(settings)
    # Loading a pipeline in a new pool process takes far longer than Celery's 4 s default.
    app.conf.worker_proc_alive_timeout = 600
    # Redis away while running: the consumer reconnects 2 s, 4 s ... 30 s apart (kombu's
    # steps) for as long as it takes, instead of exiting after Celery's default 100 tries.
    # (At start-up, `synthgate worker` waited for Redis already: taskcore/redis_startup.py.)
    app.conf.broker_connection_max_retries = None
    queues = served_queues(settings)
    run_with_celery_worker(worker_services(settings, queues))
    # A receiver tells Celery that logging is configured (taskcore.logs): it then adds no
    # handler of its own and leaves stdout alone, in this process and in its children.
    setup_logging.connect(_logging_is_configured, weak=False)

    app.steps["consumer"].add(_consumer_ticks(health.Bounds.from_settings(settings).loop_interval))
    # Ready once the consumer is connected and every pool process has its pipelines warm.
    health.expect(health.CONSUMER)
    health.expect(health.PIPELINES, settings.worker_concurrency)

    @app.task(name=GENERATE_TASK, ignore_result=True)
    def generate(task_id: str) -> None:
        with health.task_running(task_id):
            run_generate(task_id, get_runtime(settings))

    @worker_process_init.connect(weak=False)
    def _load_models(**_: Any) -> None:
        get_runtime(settings).preload()
        health.mark_ready(health.PIPELINES)

    heartbeat: list[Heartbeat] = []

    @worker_ready.connect(weak=False)
    def _start_heartbeat(sender: Any = None, **_: Any) -> None:
        client = redis_connect.sync_client(settings)
        hostname = getattr(sender, "hostname", None) or socket.gethostname()
        beat = Heartbeat(client, queues, hostname, settings.worker_heartbeat_seconds)
        beat.start()
        heartbeat.append(beat)
        log.info("worker ready for %s", ", ".join(queues))

    @worker_shutdown.connect(weak=False)
    def _stop_heartbeat(**_: Any) -> None:
        for beat in heartbeat:
            beat.stop()

    return app


def _consumer_ticks(interval: float) -> type[bootsteps.StartStopStep]:
    """A consumer step that ticks the loop beat from Celery's event loop (its timer fires
    there), and marks the consumer ready while it is connected to the broker."""

    class ConsumerTicks(bootsteps.StartStopStep):  # type: ignore[misc]  # untyped Celery
        requires = ("celery.worker.consumer.tasks:Tasks",)  # started: consuming

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self._entry: Any = None

        def start(self, parent: Any) -> None:
            health.tick(health.LOOP)
            self._entry = parent.timer.call_repeatedly(interval, health.tick, (health.LOOP,))
            health.mark_ready(health.CONSUMER)

        def stop(self, parent: Any) -> None:  # the connection was lost, or shutdown
            health.clear_ready(health.CONSUMER)
            if self._entry is not None:
                self._entry.cancel()
                self._entry = None

        shutdown = stop

    return ConsumerTicks


def _logging_is_configured(**_: Any) -> None:
    """Logging was set up by ``synthgate worker`` before Celery started."""


def worker_argv(settings: Settings, hostname: str) -> list[str]:
    """The ``celery worker`` arguments synthgate runs the GPU pools with: prefork, one
    process per GPU (``worker_concurrency``), each taking one task at a time. (The
    upstream pool runs no Celery worker: see ``workers/upstream_worker.py``.)"""
    queues = served_queues(settings)
    if any(is_upstream_pool(queue) for queue in queues):
        raise SystemExit(
            "synthgate: run the upstream pools in a worker of their own "
            f"(SYNTHGATE_WORKER_QUEUES=upstream), not with {queues}"
        )
    return [
        # Celery prints its start-up banner to stdout, which would break a JSON log stream.
        *(["--quiet"] if uses_json(settings) else []),
        "worker",
        "--queues",
        ",".join(queues),
        "--concurrency",
        str(settings.worker_concurrency),
        "--pool",
        "prefork",
        "--prefetch-multiplier",
        "1",
        "--hostname",
        hostname,
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
