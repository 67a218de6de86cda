"""How many upstream tasks one upstream worker process keeps in flight.

Starts a private redis-server, the DashScope simulator (fixed latency) and ONE
upstream worker process (asyncio, ``--inflight`` tasks at once), submits
``--tasks`` tasks of one tenant the way the gateway does (the submit script: record,
fair queue, fed into the Celery queue as workers claim tasks), and times them to
their final status. The ideal throughput is inflight / latency.

    .venv/bin/python bench/upstream_inflight.py --tasks 1000 --latency 2 --inflight 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fixtures.processes import RedisServer, SynthgateProcess, wait_until  # noqa: E402
from fixtures.simulator import SimulatorProcess  # noqa: E402

from gateway.intake.admission import Submitter  # noqa: E402
from gateway.tenancy.auth import KeyDirectory  # noqa: E402
from gateway.tenancy.directory import TenantDirectory  # noqa: E402
from gateway.tenancy.models import Limits  # noqa: E402
from taskcore import redis_keys  # noqa: E402
from taskcore.celery_queue import create_celery, generate_message  # noqa: E402
from taskcore.contract import GenerationRequest  # noqa: E402
from taskcore.settings import Settings  # noqa: E402
from workers.heartbeat import live_workers  # noqa: E402

KEY = "sk-bench-upstream"
MODEL = "stable-diffusion-xl"
POOL = "upstream." + MODEL
ROUTES = json.dumps({MODEL: "upstream"})


async def enqueue(settings: Settings, count: int) -> list[str]:
    client = aioredis.Redis.from_url(settings.redis_url)
    _, key = await TenantDirectory(client).create("bench", Limits.unlimited())
    caller = await KeyDirectory(client).lookup(key.api_key)
    assert caller is not None
    submitter = Submitter(client, settings.feed_depth)
    celery = create_celery(settings)
    ids = [str(uuid.uuid4()) for _ in range(count)]

    async def submit(i: int, task_id: str) -> None:
        job = GenerationRequest(MODEL, "a bench cat", "", 512, 512, 1, 20, 7.0, i)
        message = generate_message(celery, task_id, POOL)
        await submitter.submit(caller, task_id, job, POOL, message)

    for start in range(0, count, 50):  # as a gateway takes them: 50 clients at once
        await asyncio.gather(*(submit(i, ids[i]) for i in range(start, min(count, start + 50))))
    await client.aclose()
    return ids


def final_times(server: RedisServer, ids: list[str]) -> list[tuple[bytes, int, int, int]]:
    """(status, submit, scheduled, end) of each task, times in ms."""
    client = server.client()
    with client.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hmget(redis_keys.task(task_id), ["status", "submit_ms", "scheduled_ms", "end_ms"])
        rows = pipe.execute()
    return [(r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 3)  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "max": round(ordered[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--inflight", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synthgate-bench-"))
    server = RedisServer(work)
    server.start()
    sim = SimulatorProcess(
        work / "sim.log",
        "--latency",
        str(args.latency),
        "--latency-distribution",
        "fixed",
        "--api-key",
        KEY,
    )
    sim.start()
    env = {
        "SYNTHGATE_REDIS_URL": server.url,
        "SYNTHGATE_WORKER_QUEUES": "upstream",
        "SYNTHGATE_UPSTREAM_BASE_URL": sim.api,
        # One account whose limits are no limit here: what this measures is the worker.
        "SYNTHGATE_UPSTREAM_ACCOUNTS": json.dumps(
            [{"name": "bench", "api_key": KEY, "submit_per_second": 10_000, "max_running": 10_000}]
        ),
        "SYNTHGATE_ROUTES": ROUTES,
        "SYNTHGATE_UPSTREAM_RESULT_HOSTS": "127.0.0.1",
        "SYNTHGATE_STORAGE_DIR": str(work / "s"),
        "SYNTHGATE_UPSTREAM_MAX_INFLIGHT": str(args.inflight),
        "SYNTHGATE_LOG_LEVEL": "WARNING",
        "SYNTHGATE_UPSTREAM_POLL_INITIAL_SECONDS": str(args.latency),
        # Settings to try (SYNTHGATE_UPSTREAM_MAX_CONNECTIONS=32, ...) pass through.
        **{k: v for k, v in os.environ.items() if k.startswith("SYNTHGATE_")},
    }
    worker = SynthgateProcess("worker", env, work / "worker.log")
    worker.start()
    try:
        client = server.client()
        wait_until(
            lambda: live_workers(client, POOL) > 0,
            60,
            "the upstream worker",
        )
        settings = Settings(redis_url=server.url, routes={MODEL: "upstream"}, upstream_api_key=KEY)
        assert worker.process is not None
        cpu_before = cpu_seconds(worker.process.pid)
        sim_cpu_before = cpu_seconds(sim.pid)
        started = time.time()
        ids = asyncio.run(enqueue(settings, args.tasks))
        queued = time.time() - started
        samples: list[int] = []

        def finished() -> bool:
            samples.append(httpx.get(f"{sim.url}/_sim/stats", timeout=5).json()["open"])
            return all(r[0] in (b"SUCCEEDED", b"FAILED") for r in final_times(server, ids))

        wait_until(
            finished,
            600,
            "all tasks",
            interval=0.5,
        )
        worker_cpu = cpu_seconds(worker.process.pid) - cpu_before
        sim_cpu = cpu_seconds(sim.pid) - sim_cpu_before
        rows = final_times(server, ids)
        elapsed = max(row[3] for row in rows) / 1000 - started
        succeeded = sum(1 for row in rows if row[0] == b"SUCCEEDED")
        ideal = args.inflight / args.latency
        stats = httpx.get(f"{sim.url}/_sim/stats", timeout=5).json()
        report = {
            "tasks": args.tasks,
            "succeeded": succeeded,
            "latency_s": args.latency,
            "inflight_limit": args.inflight,
            "enqueue_s": round(queued, 2),
            "elapsed_s": round(elapsed, 2),
            "tasks_per_s": round(args.tasks / elapsed, 1),
            "ideal_tasks_per_s": round(ideal, 1),
            "ratio_to_ideal": round(args.tasks / elapsed / ideal, 3),
            "max_upstream_in_flight": stats["max_open"],
            "upstream_in_flight_samples": samples,
            "worker_cpu_ms_per_task": round(worker_cpu * 1000 / args.tasks, 2),
            # The simulator shares the machine: its CPU is not the worker's to spend.
            "simulator_cpu_ms_per_task": round(sim_cpu * 1000 / args.tasks, 2),
            "upstream_requests": stats["requests"],
            "queue_wait_s": percentiles([(sch - sub) / 1000 for _, sub, sch, _ in rows]),
            "run_time_s": percentiles([(end - sch) / 1000 for _, _, sch, end in rows]),
        }
        print(json.dumps(report, indent=2))
    finally:
        worker.stop()
        sim.stop()
        server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
