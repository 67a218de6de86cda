"""Several gateway processes behind one port (uvicorn --workers) report one set of metrics."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.metrics import scrape
from fixtures.processes import ROOT, RedisServer, SynthgateProcess, free_port, wait_http_ok


class UvicornWorkers(SynthgateProcess):
    """``uvicorn --factory gateway.edge.asgi:app_from_env --workers N``, as the README shows."""

    def __init__(self, env: dict[str, str], log_path: Path, port: int, workers: int) -> None:
        super().__init__("serve", env, log_path)
        self.argv = [
            sys.executable, "-m", "uvicorn", "--factory", "gateway.edge.asgi:app_from_env",
            "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )


@pytest.fixture
def two_processes(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    (tmp_path / "metrics").mkdir()
    env = {
        "SYNTHGATE_REDIS_URL": redis_server.url,
        "SYNTHGATE_STORAGE_DIR": str(tmp_path / "storage"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    server = UvicornWorkers(env, tmp_path / "uvicorn.log", port, workers=2)
    server.start()
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", server, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_every_process_reports_the_requests_of_all(two_processes: str) -> None:
    healthz = {"route": "/healthz", "method": "GET", "code": "200"}
    before = scrape(f"{two_processes}/metrics").value("synthgate_http_requests_total", **healthz)
    for _ in range(40):  # a new connection each: the processes take turns accepting them
        assert httpx.get(f"{two_processes}/healthz", timeout=5).status_code == 200
    for _ in range(8):  # whichever process answers the scrape, it sums them all
        seen = scrape(f"{two_processes}/metrics").value("synthgate_http_requests_total", **healthz)
        assert seen == before + 40
