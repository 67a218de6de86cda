"""Starting while Redis is away: the gateway, a GPU worker and an upstream worker start
with nothing listening on Redis' port, say so in one line naming the setting (no
traceback, no crash, no spinning), answer /healthz 200, /readyz 503 and 503 with
Retry-After to a submit, then serve as soon as a redis-server starts on that port; and
an outage after the start is ridden out the same way."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.processes import (
    RedisServer,
    SynthgateProcess,
    free_port,
    stop_all,
    wait_http_ok,
    wait_until,
)
from fixtures.simulator import UPSTREAM_KEY, SimulatorProcess, account_json
from fixtures.stack import LOCAL_POOLS
from fixtures.tasks import FINAL, SUBMIT, body, submit, wait_status

from gateway.edge.connections import RETRY_AFTER_SECONDS
from gateway.tenancy.auth import generate_api_key

WANX = "wanx2.1-t2i-turbo"  # an upstream model: the upstream worker runs it


class Away:
    """A gateway, a worker for the local pools and an upstream worker, on a Redis port
    where nothing listens yet."""

    def __init__(self, redis: RedisServer, workdir: Path, env: dict[str, str]) -> None:
        self.redis = redis
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api_key = generate_api_key()
        base = {
            "SYNTHGATE_REDIS_URL": redis.url,
            "SYNTHGATE_PORT": str(self.port),
            "SYNTHGATE_STORAGE_DIR": str(workdir / "storage"),
            "SYNTHGATE_DEV_API_KEY": self.api_key,
            "SYNTHGATE_WORKER_HEARTBEAT_SECONDS": "0.5",
            "SYNTHGATE_LOG_LEVEL": "INFO",
            **env,
        }
        self.gateway = SynthgateProcess("serve", base, workdir / "gateway.log")
        self.worker = SynthgateProcess(
            "worker",
            {**base, "SYNTHGATE_WORKER_QUEUES": ",".join(LOCAL_POOLS)},
            workdir / "worker.log",
        )
        self.upstream = SynthgateProcess(
            "worker", {**base, "SYNTHGATE_WORKER_QUEUES": "upstream"}, workdir / "upstream.log"
        )
        self.processes = [self.gateway, self.worker, self.upstream]

    def api(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}", "X-DashScope-Async": "enable"}
        return httpx.Client(base_url=f"{self.base_url}/api/v1", headers=headers, timeout=30)

    def ready(self) -> bool:
        return httpx.get(f"{self.base_url}/readyz", timeout=10).status_code == 200

    def away_lines(self, process: SynthgateProcess) -> list[str]:
        """The lines of ``process`` that say Redis is unreachable."""
        return [line for line in _messages(process) if line.startswith("Redis unreachable at")]


@pytest.fixture
def away(tmp_path: Path, demo_weights_dir: Path, simulator: SimulatorProcess) -> Iterator[Away]:
    (tmp_path / "redis").mkdir()
    # AOF on, as in production: the outage part restarts Redis, which must keep the data.
    redis = RedisServer(tmp_path / "redis", appendonly=True)  # not started
    env = {
        "SYNTHGATE_DEMO_WEIGHTS_DIR": str(demo_weights_dir),
        "SYNTHGATE_UPSTREAM_BASE_URL": simulator.api,
        "SYNTHGATE_UPSTREAM_ACCOUNTS": account_json(UPSTREAM_KEY),
        "SYNTHGATE_UPSTREAM_RESULT_HOSTS": "127.0.0.1",
        "SYNTHGATE_REDIS_CONNECT_TIMEOUT_SECONDS": "1",
        "SYNTHGATE_REDIS_TIMEOUT_SECONDS": "1",
    }
    stack = Away(redis, tmp_path, env)
    for process in stack.processes:
        process.start()
    try:
        yield stack
    finally:
        stop_all(stack.processes)
        redis.stop()


def _says_away(stack: Away, process: SynthgateProcess) -> Callable[[], bool]:
    return lambda: bool(stack.away_lines(process))


def _messages(process: SynthgateProcess) -> list[str]:
    lines = [line for line in process.log_text().splitlines() if line.startswith("{")]
    return [json.loads(line)["message"] for line in lines]


def _cpu_seconds(process: SynthgateProcess) -> float:
    """User + system CPU time of the process so far (/proc/PID/stat, fields 14 and 15)."""
    assert process.process is not None
    stat = Path(f"/proc/{process.process.pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _quiet_while_away(stack: Away, seconds: float) -> None:
    """Over ``seconds`` of outage each process says at most one more line about it (a
    repeat falls due 10 s after the first), and the upstream worker hardly uses the CPU."""
    before = {id(p): len(stack.away_lines(p)) for p in stack.processes}
    lines_before = len(stack.upstream.log_text().splitlines())
    cpu = _cpu_seconds(stack.upstream)
    time.sleep(seconds)
    cpu = _cpu_seconds(stack.upstream) - cpu
    for process in stack.processes:
        assert process.process is not None and process.process.poll() is None, process.log_text()
        assert len(stack.away_lines(process)) - before[id(process)] <= 1, process.log_text()
    new_lines = stack.upstream.log_text().splitlines()[lines_before:]
    assert len(new_lines) <= 1, new_lines  # it logged three warnings a second before
    assert cpu < 0.1 * seconds, f"the upstream worker used {cpu:.2f} s of CPU in {seconds} s"


def test_everything_starts_while_redis_is_away_and_serves_once_it_answers(away: Away) -> None:
    wait_http_ok(f"{away.base_url}/healthz", away.gateway)
    target = f"SYNTHGATE_REDIS_URL={away.redis.url}"
    for process in away.processes:
        wait_until(_says_away(away, process), 60, "the line about Redis")
    _quiet_while_away(away, 4)
    for process in away.processes:
        first = away.away_lines(process)[0]
        assert target in first and "Connection refused" in first, first
        assert "Traceback" not in process.log_text()

    ready = httpx.get(f"{away.base_url}/readyz", timeout=10)
    assert ready.status_code == 503
    assert target in ready.json()["checks"]["redis"], ready.text
    with away.api() as api:
        refused = api.post(SUBMIT, json=body())
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
        assert refused.json()["code"] == "ServiceUnavailable"
        assert refused.json()["request_id"] == refused.headers["x-request-id"]

        away.redis.start()  # on the very port the processes wait on
        wait_until(away.ready, 60, "/readyz 200 (Redis usable, every pool served)")
        local = submit(api, body("stable-diffusion-v1.5", steps=1))
        upstream = submit(api, body(WANX))
        for task_id in (local, upstream):
            assert wait_status(api, task_id, FINAL)["output"]["task_status"] == "SUCCEEDED"
    for process in away.processes:
        assert any(f"Redis at {target} answers (after" in m for m in _messages(process))


def test_an_outage_after_the_start_is_ridden_out_without_spinning(away: Away) -> None:
    away.redis.start()
    wait_http_ok(f"{away.base_url}/healthz", away.gateway)
    wait_until(away.ready, 120, "/readyz 200")
    before = len(away.away_lines(away.upstream))
    away.redis.stop()  # a clean shutdown: the append-only file has everything
    wait_until(lambda: len(away.away_lines(away.upstream)) > before, 15, "the outage line")
    _quiet_while_away(away, 5)
    away.redis.start()
    wait_until(away.ready, 60, "/readyz 200 again")
    with away.api() as api:
        upstream = submit(api, body(WANX))
        local = submit(api, body("stable-diffusion-v1.5", steps=1))
        for task_id in (local, upstream):
            assert wait_status(api, task_id, FINAL)["output"]["task_status"] == "SUCCEEDED"
    wait_until(
        lambda: any("answers again" in m for m in _messages(away.upstream)),
        15,
        "the upstream worker's line that Redis is back",
    )


def test_a_gateway_on_an_evicting_redis_stays_unready_until_it_is_fixed(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    redis.client().config_set("maxmemory-policy", "allkeys-lru")
    port = free_port()
    env = {
        "SYNTHGATE_REDIS_URL": redis.url,
        "SYNTHGATE_PORT": str(port),
        "SYNTHGATE_STORAGE_DIR": str(tmp_path / "storage"),
    }
    gateway = SynthgateProcess("serve", env, tmp_path / "gateway.log")
    gateway.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{base_url}/healthz", gateway)
        ready = httpx.get(f"{base_url}/readyz?exclude=workers", timeout=10)
        assert ready.status_code == 503
        reason = ready.json()["checks"]["redis"]
        assert "is not usable: maxmemory-policy is allkeys-lru" in reason, reason
        assert "CONFIG SET maxmemory-policy noeviction" in reason
        refused = httpx.post(f"{base_url}/api/v1{SUBMIT}", json=body(), timeout=10)
        assert refused.status_code == 503 and refused.headers["retry-after"]
        [line] = [m for m in _messages(gateway) if "is not usable" in m]
        assert f"SYNTHGATE_REDIS_URL={redis.url}" in line
        redis.client().config_set("maxmemory-policy", "noeviction")  # no restart needed
        wait_until(
            lambda: httpx.get(f"{base_url}/readyz?exclude=workers", timeout=10).status_code == 200,
            15,
            "/readyz 200 once the policy is noeviction",
        )
        assert "Traceback" not in gateway.log_text()
    finally:
        stop_all([gateway])
        redis.stop()
