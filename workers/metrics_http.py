"""Serving a worker's metrics: multiprocess mode, one HTTP server in the main process.

Celery runs tasks in prefork children (GPU pools) or in threads of one process
(upstream). Either way the samples are written by prometheus_client's multiprocess
mode into files of a folder private to this worker (``PROMETHEUS_MULTIPROC_DIR``, made
under the temporary directory), and the main process's HTTP server on
``SYNTHGATE_WORKER_METRICS_PORT`` sums them at each scrape: a restarted child loses no
count, and Prometheus scrapes one port per pod. Pushing (a Pushgateway) was not chosen:
it keeps the last value of a dead pod forever and adds a component to run.

prometheus_client picks its storage when it is first imported, so
:func:`serve_worker_metrics` runs before any worker code is imported.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any

from taskcore.settings import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve_worker_metrics(settings: Settings) -> str | None:
    """Start the metrics server when a port is set; returns the samples folder (or None)."""
    port = settings.worker_metrics_port
    if not port:
        return None
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the worker's metrics were set up")
    # Private, even when the variable is inherited: with `synthgate run`, the gateway's
    # own files must not be summed (or wiped) by the worker.
    folder = tempfile.mkdtemp(prefix="synthgate-worker-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    atexit.register(_remove_folder, folder, os.getpid())

    from celery.signals import worker_process_shutdown
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        raise SystemExit(
            f"synthgate worker: cannot serve metrics on port {port} "
            f"(SYNTHGATE_WORKER_METRICS_PORT): {exc}"
        ) from None
    worker_process_shutdown.connect(_child_exited, weak=False)
    return folder


def _child_exited(**_: Any) -> None:
    """Drop a finished child's live gauges (tasks running) from the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _remove_folder(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # forked children inherit atexit hooks
        shutil.rmtree(folder, ignore_errors=True)
