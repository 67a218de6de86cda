"""The gateway as an ASGI factory, for servers that start several processes themselves.

    PROMETHEUS_MULTIPROC_DIR=/tmp/synthgate-metrics \\
        uvicorn --factory gateway.edge.asgi:app_from_env --workers 4 --host 0.0.0.0 --port 8000

Each process reads the ``SYNTHGATE_*`` settings and configures logging as
``synthgate serve`` does. ``PROMETHEUS_MULTIPROC_DIR`` (an empty folder, made before
the processes start) makes ``/metrics`` of any process report the sum of all.
"""

from __future__ import annotations

from fastapi import FastAPI

from gateway.edge.app import create_app
from taskcore.logs import configure_logging
from taskcore.settings import Settings


def app_from_env() -> FastAPI:
    """The gateway for the environment's settings (a bad setting stops the process)."""
    settings = Settings.from_env()
    configure_logging(settings)
    return create_app(settings)
