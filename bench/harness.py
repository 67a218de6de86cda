"""The benchmark rig: private Redis and server processes, and what a run costs them.

A :class:`Rig` is one private ``redis-server`` with a registered tenant, plus the
processes under test (the synthgate gateway, the baseline, workers). :func:`measure`
runs the load generator (``bench/loadgen.py``, a process of its own) once and reads,
around it, Redis' counters (``INFO stats``: commands executed, replies written, bytes
in and out; ``INFO cpu``) and the CPU time of the measured processes (``/proc``), so
every figure comes out per request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import httpx  # noqa: E402
from fixtures.processes import (  # noqa: E402
    RedisServer,
    SynthgateProcess,
    free_port,
    stop_process,
    wait_http_ok,
    wait_until,
)
from fixtures.tenants import register_tenant  # noqa: E402

SUBMIT_PATH = "/api/v1/services/aigc/text2image/image-synthesis"
TENANT = "bench"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_children(pid: int) -> list[int]:
    """``pid`` and its child processes (uvicorn's workers when it runs several)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found


@dataclass(frozen=True)
class RedisCounters:
    commands: int
    replies: int
    bytes: int
    cpu: float

    @classmethod
    def read(cls, server: RedisServer) -> RedisCounters:
        client = server.client()
        try:
            stats, cpu = client.info("stats"), client.info("cpu")
        finally:
            client.close()
        return cls(
            commands=int(stats["total_commands_processed"]),
            replies=int(stats["total_writes_processed"]),
            bytes=int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"]),
            cpu=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        )


class Server:
    """A server process under test (synthgate or the baseline) and its base URL."""

    def __init__(self, name: str, url: str, pids: list[int], stop: Any) -> None:
        self.name, self.url, self.pids, self._stop = name, url, pids, stop

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for root in self.pids for pid in with_children(root))

    def stop(self) -> None:
        self._stop()


@dataclass
class Rig:
    """A private Redis with the ``bench`` tenant, and the processes started on it."""

    redis: RedisServer
    api_key: str
    workdir: Path
    servers: dict[str, Server] = field(default_factory=dict)
    workers: list[SynthgateProcess] = field(default_factory=list)
    replicas: list[RedisServer] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "SYNTHGATE_REDIS_URL": self.redis.url,
            "SYNTHGATE_STORAGE_DIR": str(self.workdir / "storage"),
            # the defaults (INFO, JSON lines): a submit writes its log line, as deployed
            "SYNTHGATE_LOG_LEVEL": "INFO",
            "SYNTHGATE_LOG_FORMAT": "json",
            **extra,
        }

    def attach_replica(self) -> RedisServer:
        """A replica of the rig's Redis, in sync (for the replica waits of submits)."""
        replica = RedisServer(self.workdir / "replica")
        replica.data_dir.mkdir(exist_ok=True)
        replica.start()
        self.replicas.append(replica)
        replica.client().replicaof("127.0.0.1", self.redis.port)
        wait_until(
            lambda: replica.client().info("replication").get("master_link_status") == "up",
            30,
            "the replica to sync",
        )
        return replica

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "X-DashScope-Async": "enable"}

    def start_gateway(self, name: str = "synthgate", **env: str) -> Server:
        port = free_port()
        process = SynthgateProcess(
            "serve", self.env(SYNTHGATE_PORT=str(port), **env), self.workdir / f"{name}.log"
        )
        process.start()
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{url}/healthz", process)
        assert process.process is not None
        server = Server(name, url, [process.process.pid], process.stop)
        self.servers[name] = server
        return server

    def start_baseline(self) -> Server:
        port = free_port()
        log = (self.workdir / "baseline.log").open("ab")
        command = [sys.executable, str(BENCH / "baseline_app.py"), "--port", str(port)]
        process = subprocess.Popen(
            [*command, "--redis", self.redis.url], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            assert process.poll() is None, (self.workdir / "baseline.log").read_text()
            try:
                httpx.get(f"{url}/api/v1/tasks/x", timeout=1)
                return True
            except httpx.HTTPError:
                return False

        wait_until(answers, 30, "the baseline gateway")
        server = Server("baseline", url, [process.pid], lambda: stop_process(process))
        self.servers["baseline"] = server
        return server

    def start_worker(self, command: list[str], name: str, **env: str) -> SynthgateProcess:
        """A worker process: ``command`` is ``["worker"]`` (``synthgate worker``) or a script."""
        process = SynthgateProcess(command[0], self.env(**env), self.workdir / f"{name}.log")
        if command[0] != "worker":
            log = process.log_path.open("ab")
            process.process = subprocess.Popen(
                [sys.executable, *command], env=process.env, cwd=ROOT, stdout=log, stderr=log
            )
        else:
            process.start()
        self.workers.append(process)
        return process


@contextmanager
def rig(workdir: Path, name: str) -> Iterator[Rig]:
    """A fresh Redis with the bench tenant (no limits); every process stopped at the end."""
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(folder)
    redis.start()
    with ExitStack() as stack:
        stack.callback(redis.stop)
        running = Rig(redis, register_tenant(redis.url, TENANT), folder)
        for stop in (_stop_all(running.workers), _stop_all(running.servers.values())):
            stack.callback(stop)
        stack.callback(lambda: [replica.stop() for replica in running.replicas])
        yield running


def _stop_all(processes: Any) -> Any:
    def stop() -> None:
        for process in list(processes):
            process.stop()

    return stop


def run_load(plan: dict[str, Any]) -> dict[str, Any]:
    """One run of the load generator in its own process; its result."""
    with tempfile.TemporaryDirectory() as folder:
        plan_path, out_path = Path(folder) / "plan.json", Path(folder) / "result.json"
        plan_path.write_text(json.dumps(plan))
        subprocess.run(
            [sys.executable, str(BENCH / "loadgen.py"), str(plan_path), str(out_path)],
            check=True,
            timeout=plan.get("duration", 10) + 120,
        )
        result: dict[str, Any] = json.loads(out_path.read_text())
        return result


def measure(rig_: Rig, server: Server, plan: dict[str, Any]) -> dict[str, Any]:
    """Run ``plan`` against ``server``; the load generator's result plus the cost per request
    on Redis (round trips, commands, bytes, CPU) and on the server (CPU)."""
    before, cpu = RedisCounters.read(rig_.redis), server.cpu()
    result = run_load({**plan, "url": server.url})
    after, cpu_after = RedisCounters.read(rig_.redis), server.cpu()
    done = max(result["requests"], 1)
    result["per_request"] = {
        # replies Redis wrote, less the two INFO calls of this measurement
        "round_trips": round((after.replies - before.replies - 2) / done, 2),
        "commands": round((after.commands - before.commands - 2) / done, 1),
        "bytes": round((after.bytes - before.bytes) / done),
        "redis_cpu_ms": round((after.cpu - before.cpu) * 1000 / done, 3),
        "server_cpu_ms": round((cpu_after - cpu) * 1000 / done, 3),
        "loadgen_cpu_ms": round(result["cpu_seconds"] * 1000 / done, 3),
    }
    return result


def wait_for(check: Any, timeout: float, what: str) -> None:
    wait_until(check, timeout, what, interval=0.1)


def now_ms() -> int:
    return time.time_ns() // 1_000_000
