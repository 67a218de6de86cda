"""DashScope accounts' limits, held across upstream workers: throughput, throttling, shares.

Starts a private redis-server, the DashScope simulator enforcing DashScope's per-key
limits (``--submits-per-second`` submits a second and ``--max-running`` running tasks per
key), two upstream worker processes sharing ``--accounts`` accounts of those limits, and
three tenants of weights 1:1:2 that submit ``--tasks`` tasks between them at once (the
submit script, as the gateway runs it). Reports:

- whether every task succeeded, the simulator's throttled answers (the goal: 0) and the
  most tasks it saw running per key (the goal: at most the limit);
- throughput against what the limits allow (accounts x the lesser of max_running /
  latency and submits_per_second);
- each tenant's share of the tasks started while all three still had tasks waiting,
  against its weight's share.

    .venv/bin/python bench/upstream_quota.py            # 200 tasks, 2 accounts, 2 s latency
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
from typing import Any

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

MODEL = "wanx2.1-t2i-turbo"
POOL = "upstream." + MODEL
WEIGHTS = {"tenant-a": 1.0, "tenant-b": 1.0, "tenant-c": 2.0}


async def enqueue(settings: Settings, count: int) -> dict[str, str]:
    """Submit ``count`` tasks, the tenants' in turn; task id -> tenant."""
    client = aioredis.Redis.from_url(settings.redis_url)
    submitter = Submitter(client, settings.feed_depth)
    celery = create_celery(settings)
    callers = {}
    for name, weight in WEIGHTS.items():
        _, key = await TenantDirectory(client).create(name, Limits(weight=weight))
        callers[name] = await KeyDirectory(client).lookup(key.api_key)
    owners: dict[str, str] = {}
    for i in range(count):
        tenant = list(WEIGHTS)[i % len(WEIGHTS)]
        task_id = str(uuid.uuid4())
        job = GenerationRequest(MODEL, f"a bench cat sim:tag={task_id}", "", 512, 512, 1, 0, 0, i)
        caller = callers[tenant]
        assert caller is not None
        await submitter.submit(caller, task_id, job, POOL, generate_message(celery, task_id, POOL))
        owners[task_id] = tenant
    await client.aclose()
    return owners


def rows_of(server: RedisServer, ids: list[str]) -> list[tuple[bytes, int, int]]:
    """(status, scheduled ms, end ms) of each task."""
    client = server.client()
    with client.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hmget(redis_keys.task(task_id), ["status", "scheduled_ms", "end_ms"])
        rows = pipe.execute()
    return [(r[0], int(r[1] or 0), int(r[2] or 0)) for r in rows]


def shares(owners: dict[str, str], rows: list[tuple[bytes, int, int]]) -> dict[str, Any]:
    """Each tenant's share of the tasks started while every tenant still had one waiting
    (until the first tenant's last task started), against its weight's share."""
    started = sorted((row[1], owners[task_id]) for task_id, row in zip(owners, rows, strict=True))
    last_start = {tenant: max(t for t, who in started if who == tenant) for tenant in WEIGHTS}
    window_end = min(last_start.values())
    counted = [who for t, who in started if t < window_end]
    total_weight = sum(WEIGHTS.values())
    out: dict[str, Any] = {"tasks_in_window": len(counted)}
    for tenant, weight in WEIGHTS.items():
        share = counted.count(tenant) / max(1, len(counted))
        wanted = weight / total_weight
        out[tenant] = {
            "share": round(share, 3),
            "weight_share": round(wanted, 3),
            "off_by": f"{(share - wanted) / wanted:+.1%}",
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--accounts", type=int, default=2)
    parser.add_argument("--submits-per-second", type=float, default=2.0)
    parser.add_argument("--max-running", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="synthgate-quota-"))
    keys = [f"sk-quota-{i}-{uuid.uuid4().hex[:8]}" for i in range(args.accounts)]
    server = RedisServer(work)
    server.start()
    sim = SimulatorProcess(
        work / "sim.log",
        "--latency", str(args.latency),
        "--api-keys", ",".join(keys),
        "--submits-per-second", f"{args.submits_per_second:g}",
        "--max-running", str(args.max_running),
    )  # fmt: skip
    sim.start()
    accounts = [
        {
            "name": f"account-{i}",
            "api_key": key,
            "submit_per_second": args.submits_per_second,
            "max_running": args.max_running,
        }
        for i, key in enumerate(keys)
    ]
    env = {
        "SYNTHGATE_REDIS_URL": server.url,
        "SYNTHGATE_WORKER_QUEUES": "upstream",
        "SYNTHGATE_UPSTREAM_BASE_URL": sim.api,
        "SYNTHGATE_UPSTREAM_ACCOUNTS": json.dumps(accounts),
        "SYNTHGATE_UPSTREAM_RESULT_HOSTS": "127.0.0.1",
        "SYNTHGATE_STORAGE_DIR": str(work / "s"),
        "SYNTHGATE_LOG_LEVEL": "WARNING",
        "SYNTHGATE_UPSTREAM_POLL_INITIAL_SECONDS": str(args.latency),
        "SYNTHGATE_UPSTREAM_DEADLINE_SECONDS": "3600",
        **{k: v for k, v in os.environ.items() if k.startswith("SYNTHGATE_")},
    }
    workers = [
        SynthgateProcess("worker", env, work / f"worker-{i}.log") for i in range(args.workers)
    ]
    for worker in workers:
        worker.start()
    try:
        client = server.client()
        wait_until(lambda: live_workers(client, POOL) >= args.workers, 60, "the workers")
        settings = Settings(redis_url=server.url, upstream_accounts=accounts)
        started = time.time()
        owners = asyncio.run(enqueue(settings, args.tasks))
        ids = list(owners)
        final = (b"SUCCEEDED", b"FAILED", b"CANCELED")
        wait_until(
            lambda: all(r[0] in final for r in rows_of(server, ids)),
            args.tasks * args.latency * 4 + 120,
            "all tasks",
            interval=0.5,
        )
        rows = rows_of(server, ids)
        first_start = min(row[1] for row in rows) / 1000
        elapsed = max(row[2] for row in rows) / 1000 - first_start
        # Each account: max_running tasks every latency, or its submits, whichever binds.
        per_account = min(args.max_running / args.latency, args.submits_per_second)
        allowed = args.accounts * per_account
        stats = httpx.get(f"{sim.url}/_sim/stats", timeout=5).json()
        paid = stats.get("submits_by_tag", {})
        report = {
            "tasks": args.tasks,
            "succeeded": sum(1 for row in rows if row[0] == b"SUCCEEDED"),
            "accounts": args.accounts,
            "limits_per_account": {
                "submits_per_second": args.submits_per_second,
                "max_running": args.max_running,
            },
            "workers": args.workers,
            "latency_s": args.latency,
            "enqueue_s": round(first_start - started, 2),
            "elapsed_s": round(elapsed, 2),
            "tasks_per_s": round(args.tasks / elapsed, 3),
            "allowed_tasks_per_s": round(allowed, 3),
            "ratio_to_allowed": round(args.tasks / elapsed / allowed, 3),
            "throttled_answers": stats.get("throttled", 0),
            "max_running_per_key": {
                f"account-{i}": stats["keys"].get(key, {}).get("max_running", 0)
                for i, key in enumerate(keys)
            },
            "tasks_submitted_more_than_once": sum(1 for t in ids if paid.get(t, 0) > 1),
            "shares_while_all_wait": shares(owners, rows),
        }
        print(json.dumps(report, indent=2))
    finally:
        for worker in workers:
            worker.stop()
        sim.stop()
        server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
