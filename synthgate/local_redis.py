"""For ``synthgate run``: use the Redis at the configured URL, or start a local one."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from taskcore.redis_connect import redact_url

log = logging.getLogger("synthgate")

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure_redis(url: str, data_dir: Path = Path("var/redis")) -> subprocess.Popen[bytes] | None:
    """Start ``redis-server`` at ``url`` and return it when nothing answers there and the
    URL is local; else None (a remote Redis that does not answer yet is waited for)."""
    if _answers(url):
        return None
    parts = urlsplit(url)
    if parts.scheme != "redis" or (parts.hostname or "") not in _LOCAL_HOSTS:
        # Not ours to start: the gateway and the workers wait for it (taskcore/redis_startup.py).
        log.warning("no Redis answers at %s yet, and it is not local to start one", redact_url(url))
        return None
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "synthgate: no Redis answers and redis-server is not installed (`make run` installs it)"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    port = str(parts.port or 6379)
    # AOF on: the one-machine stack keeps its queue and records across a restart.
    process = subprocess.Popen(
        [
            binary,
            "--port",
            port,
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir.resolve()),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"synthgate: redis-server did not start on port {port}")
        time.sleep(0.1)
    log.info("started a local redis-server on port %s (data in %s)", port, data_dir)
    return process
