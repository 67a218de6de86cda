"""Fair queueing with real workers: while tenant A has 1,000 tasks queued, tenant B's tasks
start within a few tasks' time.

A's flood goes through the gateway's own submit script (no HTTP, to keep the test short);
B submits over HTTP. The tests count, for each of B's tasks, how many of A's started while
it waited (a measure that a busy machine does not blur), and print B's queue wait
(scheduled - submit) at p50/p95; run with ``-s`` to see them (docs/tenants.md, "Fair queueing").
"""

from __future__ import annotations

import secrets
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx
from fixtures.simulator import SimulatorProcess
from fixtures.stack import Stack
from fixtures.tasks import body, submit, wait_status
from fixtures.tenants import cancel_many, submit_many

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.fairqueue import DEFAULT_DEPTH as DEPTH
from taskcore.settings import Settings

MAX_BATCH = Settings.model_fields["max_batch"].default  # the stack's workers run the default

V15 = "stable-diffusion-v1.5"
XL = "stable-diffusion-xl"
FLOOD = 1000


def _ms(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp() * 1000


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[max(0, round(0.95 * len(ordered)) - 1)]


def _run_b(b: httpx.Client, payload: dict[str, object]) -> tuple[float, float]:
    """One task of B from submit to its end; when it was submitted and started (ms)."""
    output = wait_status(b, submit(b, payload), {"SUCCEEDED"}, timeout=60)["output"]
    return _ms(output["submit_time"]), _ms(output["scheduled_time"])


@dataclass
class Flooded:
    """What B saw while A had FLOOD tasks queued."""

    waits: list[float]  # B's queue waits (s)
    # For each of B's tasks, A's tasks that started while it waited: strictly after its
    # submit and strictly before its start. Start times are Redis milliseconds, and a worker
    # claims the tasks of one take together: an A task claimed in the same millisecond as B
    # came in the same batch (or was taken before B was submitted), and is not counted.
    overtaken: list[int]
    backlog: int  # A's tasks still waiting at the end


def _started_ms(stack: Stack, task_ids: list[str]) -> list[int]:
    """When each of these tasks started (those that did), in ms."""
    with stack.redis.client().pipeline(transaction=False) as pipe:
        for task_id in task_ids:
            pipe.hget(redis_keys.task(task_id), "scheduled_ms")
        return [int(started) for started in pipe.execute() if started]


def _while_flooded(
    stack: Stack,
    new_tenant: Callable[..., str],
    flood: GenerationRequest,
    pool: str,
    b_payload: dict[str, object],
    samples: int,
) -> Flooded:
    a_name = "a-" + secrets.token_hex(4)
    a_key, b_key = new_tenant(a_name), new_tenant()
    b = httpx.Client(base_url=stack.api, headers=stack.headers(b_key), timeout=30)
    _run_b(b, b_payload)  # the pool is warm and B has been served once before the flood
    flooded = submit_many(stack.redis.url, a_key, [flood] * FLOOD, pool)
    try:
        seen = [_run_b(b, b_payload) for _ in range(samples)]
        backlog = int(stack.redis.client().llen(redis_keys.backlog(pool)))
        a_started = _started_ms(stack, flooded)
    finally:
        cancel_many(stack.redis.url, a_name, flooded)
    return Flooded(
        [(started - submitted) / 1000 for submitted, started in seen],
        [sum(1 for a in a_started if submitted < a < started) for submitted, started in seen],
        backlog,
    )


def test_gpu_pool_b_starts_within_a_few_tasks_while_a_has_1000_queued(
    stack: Stack, new_tenant: Callable[..., str]
) -> None:
    flood = GenerationRequest(V15, "a flood", "", 512, 512, 1, 1, 7.0, 1)
    seen = _while_flooded(stack, new_tenant, flood, "gpu.sd15", body(V15, steps=1), samples=8)
    p50, p95 = _percentiles(seen.waits)
    print(
        f"\ngpu.sd15, 1 worker: B wait p50 {p50:.2f}s p95 {p95:.2f}s; "
        f"A tasks started while a B task waited: {sorted(seen.overtaken)}"
    )
    # A's flood was there all along (the worker makes up to SYNTHGATE_MAX_BATCH of them in
    # one call, so it drains a few hundred while B runs its samples).
    assert seen.backlog >= FLOOD // 2
    # Only the 2 tasks fed before B's (and one more when B's pass ties with A's) are taken
    # ahead of it, however long A's list; in a FIFO queue all 1,000 would. A batch takes the
    # tasks fed next, B's among them, up to the first that differs; but it claims them
    # ("start") a round trip after taking them, so the companions of a batch taken just
    # before B's submit may start just after it: up to MAX_BATCH - 1 more. (Seen once, with
    # the suite's other process loading the machine: 8.)
    assert max(seen.overtaken) <= DEPTH + MAX_BATCH, seen.overtaken


def test_upstream_pool_b_starts_within_a_few_tasks_while_a_has_1000_queued(
    upstream: Stack, simulator: SimulatorProcess, new_tenant: Callable[..., str]
) -> None:
    # A's tasks take 2 s on average, spread out (a fixed latency would end them in bursts).
    simulator.configure(latency_seconds=2.0, latency_distribution="exponential")
    flood = GenerationRequest(XL, "a flood", "", 512, 512, 1, 20, 7.0, 1)
    # The same model, so the same pool (each upstream model is a pool of its own).
    b_task = body(XL, prompt="a cat sim:latency=0.2", size="512*512")
    seen = _while_flooded(upstream, new_tenant, flood, "upstream.stable-diffusion-xl", b_task, 12)
    p50, p95 = _percentiles(seen.waits)
    print(
        f"\nupstream, 32 in flight: B wait p50 {p50:.2f}s p95 {p95:.2f}s; "
        f"A tasks started while a B task waited: {sorted(seen.overtaken)}"
    )
    assert seen.backlog >= FLOOD // 2
    # As in the GPU pool, plus one: the upstream worker takes as many tasks as it has free
    # slots and claims them a round trip later, so an A task it took just before B's
    # submit can be claimed ("start") just after it. (Over 320 of B's tasks in 16 runs:
    # 2 or fewer but twice, 3 and 4; counting A tasks claimed in the same millisecond as
    # B's submit or start too, as this test once did, it failed at 5.)
    assert max(seen.overtaken) <= DEPTH + 2, seen.overtaken
