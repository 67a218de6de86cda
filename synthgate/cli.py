"""The ``synthgate`` command: ``serve``, ``worker``, ``run`` (both, for one machine), the
simulator and the admin commands; what each says in ``--help`` is in
:mod:`synthgate.command_help`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from gateway.tenancy.auth import generate_api_key
from synthgate.admin_commands import COMMANDS as ADMIN_COMMANDS
from synthgate.admin_commands import add_admin_commands, run_admin_command
from synthgate.command_help import SUMMARY, command_parser
from synthgate.storage_commands import add_storage_commands
from taskcore.catalog import is_upstream_pool
from taskcore.logs import configure_logging
from taskcore.settings import Settings, SettingsError
from taskcore.version import package_version

log = logging.getLogger("synthgate")


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings)


def serve(settings: Settings) -> None:
    """The gateway alone: uvicorn on uvloop and httptools, no access log (the metrics count
    requests), in ``SYNTHGATE_GATEWAY_PROCESSES`` processes."""
    import uvicorn

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_level": settings.log_level.lower(),
        "log_config": None,  # uvicorn's loggers go through taskcore.logs, as configured
        "access_log": False,
        # SIGTERM: stop accepting, let requests in flight finish, then cancel what is left.
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
    }
    if settings.gateway_processes == 1:
        from gateway.edge.app import create_app

        uvicorn.run(create_app(settings), **options)
        return
    _prepare_processes(settings)
    uvicorn.run(
        "gateway.edge.asgi:app_from_env",
        factory=True,
        workers=settings.gateway_processes,
        **options,
    )


def _prepare_processes(settings: Settings) -> None:
    """What the gateway processes read from the environment: the settings ``run`` added, and
    a folder for prometheus_client's multiprocess mode (each scrape sums every process)."""
    if settings.dev_api_key:
        os.environ["SYNTHGATE_DEV_API_KEY"] = settings.dev_api_key
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="synthgate-metrics-")


def worker(settings: Settings) -> None:
    """A worker for the pools of ``SYNTHGATE_WORKER_QUEUES``: a Celery worker for GPU pools,
    the asyncio upstream worker for upstream pools (imports the worker code only here)."""
    from workers.metrics_http import serve_worker_metrics

    serve_worker_metrics(settings)  # first: it decides how prometheus_client keeps samples
    from taskcore.redis_startup import wait_until_usable
    from workers.celery_app import create_worker_app, worker_argv
    from workers.runtime import served_queues
    from workers.storage import check_storage

    check_storage(settings)
    # Redis away or unusable: one line now and then, no traceback, no crash loop. SIGTERM
    # meanwhile exits at once, through the exit hooks (the metrics folder is removed);
    # Celery and the upstream worker put their own handlers in place after the wait.
    signal.signal(signal.SIGTERM, _exit_now)
    wait_until_usable(settings, "the worker")
    hostname = f"synthgate@{socket.gethostname()}-{os.getpid()}"
    queues = served_queues(settings)
    if queues and all(is_upstream_pool(queue) for queue in queues):
        from workers.upstream_worker import run_upstream_worker

        run_upstream_worker(settings, hostname)
        return
    app = create_worker_app(settings)
    app.worker_main(worker_argv(settings, hostname))


def _exit_now(*_: object) -> None:
    raise SystemExit(0)


def run(settings: Settings) -> None:
    """Gateway and its workers together, with a dev tenant: the one-machine stack."""
    from synthgate.local_redis import ensure_redis

    # Through sentinels, Redis is theirs to run: never start a local one in its place.
    redis_process = None if settings.sentinel_hosts else ensure_redis(settings.redis_url)
    if not settings.dev_api_key:
        settings = settings.model_copy(update={"dev_api_key": generate_api_key()})
    children = [_spawn_worker(settings, queues) for queues in _worker_pools(settings)]
    _print_welcome(settings)
    try:
        serve(settings)
    finally:
        for child in [*children, redis_process]:
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()


def _worker_pools(settings: Settings) -> list[str]:
    """One worker for the local pools of the catalog, one for its upstream pools if any
    (the catalog has upstream pools only when a DashScope account is configured)."""
    catalog = settings.catalog
    pools = [",".join(catalog.local_pools())] if catalog.local_pools() else []
    if catalog.upstream_pools():
        pools.append("upstream")
    return pools


def _spawn_worker(settings: Settings, queues: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SYNTHGATE_REDIS_URL": settings.redis_url,
        "SYNTHGATE_WORKER_QUEUES": queues,
    }
    return subprocess.Popen([sys.executable, "-m", "synthgate.cli", "worker"], env=env)


def _print_welcome(settings: Settings) -> None:
    base = f"{settings.public_url}/api/v1"
    console = f"{settings.public_url}/console/" if settings.console_enabled else "off"
    print(
        f"""
synthgate is starting.
  base URL : {base}
  API key  : {settings.dev_api_key}   (tenant {settings.dev_tenant!r})
  console  : {console}

Python (dashscope SDK):
  import dashscope
  dashscope.base_http_api_url = "{base}"
  dashscope.api_key = "{settings.dev_api_key}"

curl:
  curl -s {base}/services/aigc/text2image/image-synthesis \\
    -H 'X-DashScope-Async: enable' -H 'Authorization: Bearer {settings.dev_api_key}' \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "stable-diffusion-v1.5", "input": {{"prompt": "a running cat"}}}}'
  curl -s {base}/tasks/TASK_ID -H 'Authorization: Bearer {settings.dev_api_key}'
""",
        flush=True,
    )


def simulate_upstream(args: argparse.Namespace) -> None:
    """The DashScope protocol simulator (needs no settings, Redis or key)."""
    import uvicorn

    from simulator.app import SimConfig, create_simulator_app

    config = SimConfig(
        latency_seconds=args.latency,
        latency_distribution=args.latency_distribution,
        latency_jitter=args.jitter,
        rate_429=args.rate_429,
        retry_after_seconds=args.retry_after,
        rate_5xx=args.rate_5xx,
        rate_hang=args.rate_hang,
        rate_malformed=args.rate_malformed,
        api_key=args.api_key,
        api_keys=[key for key in args.api_keys.split(",") if key],
        submits_per_second=args.submits_per_second,
        submits_per_second_by_model=args.submits_per_second_by_model,
        max_running=args.max_running,
        max_running_by_model=args.max_running_by_model,
        documented_limits=args.documented_limits,
        sync_timeout_seconds=args.sync_timeout,
    )
    print(f"DashScope simulator on http://{args.host}:{args.port}/api/v1", flush=True)
    # A hanging request (a fault it injects) would hold a graceful shutdown for an hour:
    # one second for the others to finish, then the hanging ones are cut.
    uvicorn.run(
        create_simulator_app(config),
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )


def _simulator_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = command_parser(sub, "simulate-upstream")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8100)
    sim.add_argument("--latency", type=float, default=2.0, help="mean seconds per task")
    sim.add_argument(
        "--latency-distribution", choices=["fixed", "uniform", "exponential"], default="uniform"
    )
    sim.add_argument("--jitter", type=float, default=0.1, help="uniform: +- this fraction")
    sim.add_argument("--rate-429", type=float, default=0.0, help="share of requests throttled")
    sim.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of a 429 (s)")
    sim.add_argument("--rate-5xx", type=float, default=0.0, help="share of requests failing 500")
    sim.add_argument("--rate-hang", type=float, default=0.0, help="share of requests hanging")
    sim.add_argument("--rate-malformed", type=float, default=0.0, help="share of broken JSON")
    sim.add_argument("--api-key", default="", help="accept only this key (default: any)")
    # DashScope's limits per key (docs/upstream.md, "the simulator"); 0 = no limit.
    sim.add_argument("--api-keys", default="", help="more keys to accept, comma-separated")
    sim.add_argument("--submits-per-second", type=float, default=0.0, help="per key")
    sim.add_argument(
        "--submits-per-second-by-model", type=json.loads, default={}, help='per key, {"model": 2}'
    )
    sim.add_argument("--max-running", type=int, default=0, help="tasks per key and model")
    sim.add_argument("--max-running-by-model", type=json.loads, default={}, help='{"model": 1}')
    sim.add_argument(
        "--documented-limits", action="store_true", help="DashScope's own figures per model"
    )
    sim.add_argument("--sync-timeout", type=float, default=300.0, help="synchronous calls (s)")
    sim.set_defaults(handler=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthgate",
        description=SUMMARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"synthgate {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    command_parser(sub, "serve").set_defaults(handler=serve)
    command_parser(sub, "worker").set_defaults(handler=worker)
    command_parser(sub, "run").set_defaults(handler=run)
    _simulator_parser(sub)
    add_storage_commands(sub)
    add_admin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.handler is None:
        simulate_upstream(args)
        return 0
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"synthgate: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    if args.command in ADMIN_COMMANDS:
        return run_admin_command(settings, args)
    args.handler(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
