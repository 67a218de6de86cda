"""Chaos: 200 tasks on two workers while workers are killed and Redis restarts; none is lost.

Real processes throughout: a gateway, two workers of the sd15 pool (tiny demo pipeline on
the CPU) and a private redis-server with AOF on. While the tasks run, the worker holding
a running task is killed with SIGKILL five times (its whole process group, as when a
pod dies; it is started again a moment later) and Redis is restarted once; among the
tasks is a poison task that kills its worker every time it runs. Then every task but
the poison one must have SUCCEEDED with exactly its images in storage, the poison task
must have FAILED at the attempt limit, and nothing may be left held: no tenant slot,
no lease, no queued message, no reserved image of the day.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fixtures.chaos import POOL, chaos_stack, holder, restart
from fixtures.crashing_worker import CRASH
from fixtures.processes import wait_until
from fixtures.stack import Stack
from fixtures.tasks import FINAL, body, submit
from fixtures.tenants import register_tenant

from gateway.tenancy.usage import utc_day
from taskcore import redis_keys
from taskcore.clock import now_ms
from taskcore.store.claims import POISON_CODE
from workers.storage.local import is_partial

TASKS = 200
KILLS = 5
MAX_ATTEMPTS = KILLS + 2


@dataclass
class Kill:
    at_ms: int
    held: list[str]  # the task ids the killed worker was running


@dataclass
class Chaos:
    kills: list[Kill] = field(default_factory=list)
    redis_restarted_ms: int = 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, demo_weights_dir: Path) -> Iterator[Stack]:
    # Five kills may all land on one task: the attempt limit is set above what they can use
    # up, so only the poison task reaches it.
    workdir = tmp_path_factory.mktemp("chaos")
    attempts = str(MAX_ATTEMPTS)
    with chaos_stack(workdir, demo_weights_dir, SYNTHGATE_MAX_ATTEMPTS=attempts) as running:
        yield running


def _running_tasks(stack: Stack) -> list[str]:
    redis_client = stack.redis.client()
    try:
        entries = redis_client.zrange(redis_keys.leases(POOL), 0, -1)
    finally:
        redis_client.close()
    prefix = len(redis_keys.task(""))
    return [entry.decode()[prefix:] for entry in entries]


def _kill_a_busy_worker(stack: Stack, rng: random.Random) -> Kill | None:
    running = _running_tasks(stack)
    rng.shuffle(running)
    for task_id in running:
        worker = holder(stack, task_id)
        if worker is None:
            continue
        held = [t for t in _running_tasks(stack) if holder(stack, t) is worker]
        kill = Kill(now_ms(), held)
        worker.kill()
        time.sleep(rng.uniform(0.5, 2.0))
        restart(worker, stack)
        return kill
    return None


def _make_chaos(stack: Stack, done: threading.Event, chaos: Chaos) -> None:
    rng = random.Random(20261126)
    while len(chaos.kills) < KILLS and not done.is_set():
        time.sleep(rng.uniform(1.0, 4.0))
        kill = _kill_a_busy_worker(stack, rng)
        if kill is not None:
            chaos.kills.append(kill)
        if len(chaos.kills) == 2 and not chaos.redis_restarted_ms:
            chaos.redis_restarted_ms = now_ms()
            stack.redis.stop()  # SIGTERM: Redis writes its AOF out and exits
            stack.redis.start()  # same port, same data directory


def _all_final(statuses: dict[str, str], count: int) -> bool:
    """Whether every task has a final status (an empty answer: Redis is restarting)."""
    return len(statuses) == count and all(s in FINAL for s in statuses.values())


def _code(stack: Stack, task_id: str) -> str:
    redis_client = stack.redis.client()
    try:
        return (redis_client.hget(redis_keys.task(task_id), "code") or b"").decode()
    finally:
        redis_client.close()


def _end_ms(stack: Stack, task_ids: list[str]) -> list[int]:
    redis_client = stack.redis.client()
    try:
        return [int(redis_client.hget(redis_keys.task(t), "end_ms") or 0) for t in task_ids]
    finally:
        redis_client.close()


def _statuses(stack: Stack, task_ids: list[str]) -> dict[str, str]:
    redis_client = stack.redis.client()
    try:
        with redis_client.pipeline(transaction=False) as pipe:
            for task_id in task_ids:
                pipe.hget(redis_keys.task(task_id), "status")
            return {t: (s or b"").decode() for t, s in zip(task_ids, pipe.execute(), strict=True)}
    except Exception:  # Redis is restarting: ask again
        return {}
    finally:
        redis_client.close()


@pytest.mark.timeout(600)
def test_no_task_is_lost_when_workers_die_and_redis_restarts(stack: Stack) -> None:
    tenant = "chaos"
    key = register_tenant(stack.redis.url, tenant, max_concurrent=1000, daily_images=10_000)
    rng = random.Random(7)
    jobs = {}
    with httpx.Client(base_url=stack.api, headers=stack.headers(key), timeout=30) as api:
        for i in range(TASKS):
            n = rng.choice([1, 1, 1, 2])
            jobs[submit(api, body(prompt=f"chaos {i}", n=n, steps=rng.randint(1, 3)))] = n
            if i == TASKS // 4:  # one task that kills its worker every time it runs
                poison = submit(api, body(prompt=f"chaos {CRASH}", steps=1))
    ids = [*jobs, poison]

    done, chaos = threading.Event(), Chaos()
    chaos_thread = threading.Thread(target=_make_chaos, args=(stack, done, chaos), daemon=True)
    chaos_thread.start()
    try:
        wait_until(
            lambda: _all_final(_statuses(stack, ids), len(ids)),
            540,
            "every task to end",
            interval=0.5,
        )
    finally:
        done.set()
        chaos_thread.join(timeout=180)

    statuses = _statuses(stack, ids)
    assert [t for t in jobs if statuses[t] != "SUCCEEDED"] == []
    assert statuses[poison] == "FAILED"
    assert _code(stack, poison) == POISON_CODE
    assert len(chaos.kills) >= 3, "the run ended before the chaos could kill enough workers"
    assert chaos.redis_restarted_ms
    # Exactly each task's images, each once: nothing missing, nothing extra. A worker killed
    # in the middle of a put leaves its partial file (``.tmp-*.partial``, named by no key;
    # the sweep removes it after an hour): that is all that may lie beside the images.
    files = [p for p in stack.storage_dir.rglob("*") if p.is_file()]
    stored = sorted(str(p.relative_to(stack.storage_dir)) for p in files if not is_partial(p.name))
    day = time.strftime("%Y-%m-%d", time.gmtime())
    expected = sorted(f"{tenant}/{day}/{t}/{i}.png" for t, n in jobs.items() for i in range(n))
    assert stored == expected
    _assert_nothing_held(stack, tenant, sum(jobs.values()))

    recoveries = [
        (max(_end_ms(stack, kill.held)) - kill.at_ms) / 1000 for kill in chaos.kills if kill.held
    ]
    print(
        f"\nchaos: {TASKS} tasks, {len(chaos.kills)} kills, Redis restarted once; "
        f"longest kill → held task finished elsewhere: {max(recoveries):.1f}s "
        f"(all: {', '.join(f'{r:.1f}' for r in recoveries)})"
    )
    # A bound, not a speed goal (the figures are printed above): a killed worker's tasks are
    # taken over once their leases lapse, never left for Celery's hour-long redelivery. How
    # soon depends on the queue ahead and the machine's load (65 s seen with the suite's
    # other process busy beside it; 10-30 s on a quiet machine).
    assert max(recoveries) < 180


def _assert_nothing_held(stack: Stack, tenant: str, images: int) -> None:
    redis_client = stack.redis.client()
    try:
        assert redis_client.zcard(redis_keys.tenant_active(tenant)) == 0
        assert redis_client.zcard(redis_keys.leases(POOL)) == 0
        assert redis_client.zcard(redis_keys.starting(POOL)) == 0
        assert redis_client.llen(redis_keys.backlog(POOL)) == 0
        # Copies of messages whose task had already ended are skipped and acknowledged.
        wait_until(
            lambda: redis_client.llen(redis_keys.celery_queue(POOL)) == 0, 30, "an empty queue"
        )
        usage = redis_client.hgetall(redis_keys.tenant_usage(tenant, utc_day(now_ms())))
        assert int(usage[b"images"]) == images
        assert int(usage[b"images_succeeded"]) == images
    finally:
        redis_client.close()
