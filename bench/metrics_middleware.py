"""What the gateway's request metrics cost per request: MetricsMiddleware around an ASGI app.

Calls the middleware directly, in one event loop, around a FastAPI route that answers at
once (no network, no Redis), with and without the middleware, and prints the difference
per request. ``--multiprocess`` measures prometheus_client's multiprocess mode (samples in
mmapped files, as with several uvicorn workers), ``--log-level DEBUG`` with the access log
line written (to /dev/null) for every request.

    .venv/bin/python bench/metrics_middleware.py --requests 100000
    .venv/bin/python bench/metrics_middleware.py --requests 100000 --multiprocess
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--multiprocess", action="store_true")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO"])
    return parser.parse_args()


def _build(with_metrics: bool) -> Any:
    from fastapi import FastAPI

    from gateway.edge.responses import JsonResponse, RequestIdMiddleware
    from gateway.operations.metrics import MetricsMiddleware

    app = FastAPI()

    @app.get("/api/v1/tasks/{task_id}")
    async def fetch(task_id: str) -> JsonResponse:
        return JsonResponse({"output": {"task_id": task_id}})

    if with_metrics:
        app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


async def _per_request(app: Any, requests: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    def scope(i: int) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"/api/v1/tasks/{i}",
            "raw_path": f"/api/v1/tasks/{i}".encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
            "state": {},
            "app": app,
        }

    for i in range(1_000):  # warm up: the middleware stack is built on the first call
        await app(scope(i), receive, send)
    started = time.perf_counter()
    for i in range(requests):
        await app(scope(i), receive, send)
    return (time.perf_counter() - started) / requests


def main() -> None:
    args = _arguments()
    if args.multiprocess:  # before prometheus_client is imported: it picks its storage then
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
    from taskcore.logs import configure_logging
    from taskcore.settings import Settings

    with open(os.devnull, "w") as sink:
        configure_logging(Settings(log_level=args.log_level, log_format="json"), sink)
        apps = _build(False), _build(True)
        # Interleaved rounds, best of each: other load on the machine only adds time.
        rounds = [
            [asyncio.run(_per_request(app, args.requests // 5)) for app in apps] for _ in range(5)
        ]
        plain, measured = (min(times) for times in zip(*rounds, strict=True))
    mode = "multiprocess" if args.multiprocess else "in-process"
    print(
        f"{args.requests} requests, {mode} samples, log level {args.log_level}: "
        f"{plain * 1e6:.1f} us without MetricsMiddleware, {measured * 1e6:.1f} us with: "
        f"{(measured - plain) * 1e6:.1f} us per request"
    )


if __name__ == "__main__":
    main()
