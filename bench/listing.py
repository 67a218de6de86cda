"""The list scenario (``GET /api/v1/tasks`` on a large keyspace) and the record-size check."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from harness import SUBMIT_PATH, Rig, Server, measure

from taskcore import redis_keys

WORDS_75 = " ".join(f"word{i}" for i in range(75))

# (label, query): unfiltered pages (first and deep), one model, one final status, both.
QUERIES = (
    ("first page", "page_size=20"),
    ("page 2,000", "page_size=20&page_no=2000"),
    ("model filter", "page_size=20&model_name=stable-diffusion-xl"),
    ("status filter", "page_size=20&status=SUCCEEDED"),
    ("model + status", "page_size=20&model_name=stable-diffusion-xl&status=FAILED"),
    ("time range", "page_size=20&start_time=20200101000000&end_time=20990101000000"),
)


def list_pages(rig: Rig, server: Server, requests: int) -> list[dict[str, Any]]:
    """Each query on one connection, one request at a time: the latency of one page."""
    rows = []
    headers = rig.headers()
    for label, query in QUERIES:
        plan = {
            "requests": [{"method": "GET", "path": f"/api/v1/tasks?{query}", "headers": headers}],
            "connections": 1,
            "duration": 60.0,
            "count": requests,
        }
        answer = httpx.get(f"{server.url}/api/v1/tasks?{query}", headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        total = answer.json()["total"]
        result = measure(rig, server, plan)
        assert set(result["statuses"]) == {"200"}, result["statuses"]
        rows.append({"scenario": f"list: {label} (total {total})", "target": server.name, **result})
    return rows


def record_size(rig: Rig, server: Server, negative_prompt: str = "") -> int:
    """``MEMORY USAGE`` of a SUCCEEDED record with n=4 and a 75-word prompt (and the given
    negative prompt), as the no-op pool leaves it."""
    body = {
        "model": "stable-diffusion-xl",
        "input": {"prompt": WORDS_75, "negative_prompt": negative_prompt},
        "parameters": {"n": 4, "size": "1024*1024", "seed": 1234567890},
    }
    answer = httpx.post(
        server.url + SUBMIT_PATH, headers=rig.headers(), content=json.dumps(body), timeout=30
    )
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["output"]["task_id"]
    client = rig.redis.client()
    try:
        deadline = time.monotonic() + 60
        while client.hget(redis_keys.task(task_id), "status") != b"SUCCEEDED":
            assert time.monotonic() < deadline, "the record never SUCCEEDED"
            time.sleep(0.05)
        usage = client.memory_usage(redis_keys.task(task_id), samples=0)
    finally:
        client.close()
    return int(usage or 0)
