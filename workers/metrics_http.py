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

The same server answers the worker's probes: ``/livez`` and ``/readyz`` (see
:mod:`workers.health`), 200 or 503 with a JSON body; every other path is the metrics.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from taskcore.settings import Settings
from workers import health

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HEALTH_FOLDER = "health"  # under the samples folder: prometheus_client reads only *.db there

# A WSGI application, as wsgiref calls it.
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


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
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    health_folder = Path(folder) / HEALTH_FOLDER
    health.configure(health_folder)
    board = health.HealthBoard(health_folder, health.Bounds.from_settings(settings))
    try:
        _serve_forever(port, worker_http_app(make_wsgi_app(registry), board))
    except OSError as exc:
        raise SystemExit(
            f"synthgate worker: cannot serve metrics on port {port} "
            f"(SYNTHGATE_WORKER_METRICS_PORT): {exc}"
        ) from None
    worker_process_shutdown.connect(_child_exited, weak=False)
    return folder


def worker_http_app(metrics: WSGIApp, board: health.HealthBoard) -> WSGIApp:
    """``/livez`` and ``/readyz`` from ``board``; every other path to ``metrics``."""
    probes = {"/livez": board.liveness, "/readyz": board.readiness}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        probe = probes.get(environ.get("PATH_INFO", ""))
        if probe is None:
            return metrics(environ, start_response)
        ok, answer = probe()
        body = json.dumps(answer).encode()
        status = "200 OK" if ok else "503 Service Unavailable"
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        start_response(status, headers)
        return [body]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape never holds the worker's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds are no news."""


def _serve_forever(port: int, app: WSGIApp) -> None:
    server = make_server("0.0.0.0", port, app, _ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="synthgate-metrics", daemon=True).start()


def _child_exited(**_: Any) -> None:
    """Drop a finished child's live gauges (tasks running) and its ticks from the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
    health.forget_process(os.getpid())


def _remove_folder(folder: str, owner: int) -> None:
    if os.getpid() == owner:  # forked children inherit atexit hooks
        shutil.rmtree(folder, ignore_errors=True)
