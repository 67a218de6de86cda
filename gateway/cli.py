"""The ``synthgate`` command: ``serve``, ``worker`` and ``run`` (both, for one machine)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence

from gateway.settings import Settings, SettingsError
from gateway.tenants import generate_api_key

log = logging.getLogger("synthgate")


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def serve(settings: Settings) -> None:
    """The gateway alone (uvicorn, uvloop and httptools when installed)."""
    import uvicorn

    from gateway.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )


def worker(settings: Settings) -> None:
    """One Celery worker for the local pools (imports the worker code only here)."""
    from workers.celery_app import create_worker_app, worker_argv

    app = create_worker_app(settings)
    app.worker_main(worker_argv(settings, f"synthgate@{socket.gethostname()}-{os.getpid()}"))


def run(settings: Settings) -> None:
    """Gateway and one worker together, with a dev tenant: the one-machine stack."""
    from gateway.localredis import ensure_redis

    redis_process = ensure_redis(settings.redis_url)
    if not settings.dev_api_key:
        settings = settings.model_copy(update={"dev_api_key": generate_api_key()})
    env = {**os.environ, "SYNTHGATE_REDIS_URL": settings.redis_url}
    worker_process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "worker"], env=env)
    _print_welcome(settings)
    try:
        serve(settings)
    finally:
        for child in (worker_process, redis_process):
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()


def _print_welcome(settings: Settings) -> None:
    base = f"{settings.public_url}/api/v1"
    print(
        f"""
synthgate is starting.
  base URL : {base}
  API key  : {settings.dev_api_key}   (tenant {settings.dev_tenant!r})

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


COMMANDS = {"serve": serve, "worker": worker, "run": run}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="synthgate", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS), help="what to start")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"synthgate: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    COMMANDS[args.command](settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
