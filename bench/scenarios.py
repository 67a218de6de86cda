"""The gateway benchmark's scenarios, each one function returning rows for the report.

A row is a dict: ``scenario``, ``target`` (``synthgate`` or ``baseline``), the load
generator's figures (``requests``, ``throughput``, ``latency_ms``) and, for the HTTP
scenarios, ``per_request`` costs (see :func:`harness.measure`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from harness import SUBMIT_PATH, Rig, Server, measure, run_load, wait_for

from taskcore import redis_keys

PROMPT = "a red fox running through fresh snow at dawn, soft golden light, highly detailed"


@dataclass(frozen=True)
class Knobs:
    """How long and how hard each scenario runs (``--smoke`` makes them tiny)."""

    duration: float = 10.0
    connections: int = 64
    count: int = 1_000_000
    pickup_rate: float = 50.0
    pickup_tasks: int = 500
    e2e_tasks: int = 10


def submit_request(
    model: str = "stable-diffusion-v1.5", n: int = 1, steps: int | None = None
) -> dict[str, Any]:
    parameters: dict[str, int] = {"n": n} if steps is None else {"n": n, "steps": steps}
    body = {"model": model, "input": {"prompt": PROMPT}, "parameters": parameters}
    return {"method": "POST", "path": SUBMIT_PATH, "body": json.dumps(body)}


def _plan(rig: Rig, requests: list[dict[str, Any]], knobs: Knobs, **extra: Any) -> dict[str, Any]:
    headers = {**rig.headers(), "Content-Type": "application/json"}
    return {
        "requests": [{"headers": headers, **r} for r in requests],
        "connections": knobs.connections,
        "duration": knobs.duration,
        "count": knobs.count,
        **extra,
    }


def _row(scenario: str, server: Server, result: dict[str, Any]) -> dict[str, Any]:
    assert set(result["statuses"]) == {"200"}, f"{scenario} {server.name}: {result['statuses']}"
    result.pop("records", None)
    return {"scenario": scenario, "target": server.name, **result}


def warm_up(rig: Rig, server: Server, requests: list[dict[str, Any]]) -> None:
    """A short run first: connections, caches and the JIT-free interpreter's first calls."""
    run_load({**_plan(rig, requests, Knobs(duration=1.0, connections=8)), "url": server.url})


def submit_peak(rig: Rig, server: Server, knobs: Knobs) -> dict[str, Any]:
    """Closed loop: the most submits per second the server answers."""
    requests = [submit_request()]
    warm_up(rig, server, requests)
    return _row("submit (peak)", server, measure(rig, server, _plan(rig, requests, knobs)))


def submit_at(rig: Rig, server: Server, knobs: Knobs, rate: float) -> dict[str, Any]:
    """Open loop at ``rate`` submits per second: the latency a client sees below the peak."""
    plan = _plan(rig, [submit_request()], knobs, rate=rate)
    return _row(f"submit at {rate:.0f}/s", server, measure(rig, server, plan))


def task_ids(rig: Rig, count: int) -> list[str]:
    client = rig.redis.client()
    try:
        raw = client.zrevrange(redis_keys.tenant_tasks("bench"), 0, count - 1)
    finally:
        client.close()
    return [item.decode() for item in raw]  # type: ignore[union-attr]


def fetch(rig: Rig, server: Server, knobs: Knobs, ids: list[str]) -> dict[str, Any]:
    """Closed loop of task fetches over tasks that exist (PENDING ones)."""
    requests = [{"method": "GET", "path": f"/api/v1/tasks/{task_id}"} for task_id in ids]
    warm_up(rig, server, requests)
    return _row("fetch (peak)", server, measure(rig, server, _plan(rig, requests, knobs)))


def _record_times(rig: Rig, records: list[list[Any]], fields: list[str]) -> list[list[int]]:
    """Per submitted task: when the client sent it (ms) and the given record fields (ms)."""
    client = rig.redis.client()
    try:
        pipe = client.pipeline(transaction=False)
        sent = []
        for wall, _, body in records:
            pipe.hmget(redis_keys.task(orjson.loads(body)["output"]["task_id"]), fields)
            sent.append(int(wall * 1000))
        rows = pipe.execute()
    finally:
        client.close()
    return [[s, *(int(v or 0) for v in row)] for s, row in zip(sent, rows, strict=True)]


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))], 1)

    return {"p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99), "max": pick(1.0)}


def _all_final(rig: Rig, records: list[list[Any]], field: str) -> Any:
    def check() -> bool:
        return all(row[1] for row in _record_times(rig, records, [field]))

    return check


def pickup(rig: Rig, server: Server, knobs: Knobs) -> dict[str, Any]:
    """Open loop of SDXL submits to a no-op pool (``bench/noop_pool.py``, a real Celery
    worker): from the client's send to the worker's claim (``scheduled_time``)."""
    plan = _plan(
        rig,
        [submit_request("stable-diffusion-xl")],
        knobs,
        rate=knobs.pickup_rate,
        count=knobs.pickup_tasks,
        duration=knobs.pickup_tasks / knobs.pickup_rate,
        record=True,
    )
    result = run_load({**plan, "url": server.url})
    records = result.pop("records")
    wait_for(_all_final(rig, records, "end_ms"), 120, "the no-op pool to finish every task")
    times = _record_times(rig, records, ["scheduled_ms", "end_ms"])
    result["latency_ms"] = _spread([claimed - sent for sent, claimed, _ in times])
    result["done_ms"] = _spread([ended - sent for sent, _, ended in times])
    return _row("submit → pickup", server, result)


def end_to_end(rig: Rig, server: Server, knobs: Knobs) -> dict[str, Any]:
    """SD1.5 submits (1 step, 512*512) to a real worker running the tiny demo pipeline on
    the CPU, one task at a time (the next when the last SUCCEEDED, so no queue builds up):
    from the client's send to ``end_time``, and tasks per second at that pace."""
    request = submit_request(steps=1)
    headers = {**rig.headers(), "Content-Type": "application/json"}
    records: list[list[Any]] = []
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        for _ in range(knobs.e2e_tasks):
            sent = time.time()
            answer = client.post(request["path"], content=request["body"])
            records.append([sent, answer.status_code, answer.text])
            wait_for(_all_final(rig, records[-1:], "end_ms"), 600, "the worker to finish")
    seconds = time.perf_counter() - started
    times = _record_times(rig, records, ["end_ms"])
    result = {
        "requests": len(records),
        "seconds": round(seconds, 3),
        "throughput": round(len(records) / seconds, 2),
        "latency_ms": _spread([ended - sent for sent, ended in times]),
        "statuses": {str(code): sum(1 for r in records if r[1] == code) for _, code, _ in records},
    }
    return _row("end to end (tiny SD1.5, 1 step, one at a time)", server, result)
