"""Task events (Server-Sent Events) through a live gateway and worker."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from fixtures.stack import Gateways, Stack
from fixtures.tasks import body, submit
from fixtures.tenants import register_tenant

V15 = "stable-diffusion-v1.5"
ORDER = ["PENDING", "RUNNING", "SUCCEEDED"]


@dataclass
class Stream:
    """What one event stream said, in order."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    comments: int = 0
    seconds: float = 0.0

    def bodies(self, name: str = "status") -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == name]


def read_events(api: httpx.Client, task_id: str, timeout: float = 120) -> Stream:
    """Follow a task's event stream until the gateway ends it."""
    stream, started, event = Stream(), time.monotonic(), ""
    with api.stream("GET", f"/tasks/{task_id}/events", timeout=timeout) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith(":"):
                stream.comments += 1
            elif line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                stream.events.append((event, orjson.loads(line.removeprefix("data: "))))
    stream.seconds = time.monotonic() - started
    return stream


def test_a_stream_follows_its_task_to_the_end_with_rising_progress(
    api: httpx.Client,
) -> None:
    task_id = submit(api, body(V15, steps=150, n=2))
    bodies = read_events(api, task_id).bodies()
    outputs = [b["output"] for b in bodies]
    statuses = [o["task_status"] for o in outputs]
    assert statuses[-1] == "SUCCEEDED" and "RUNNING" in statuses
    assert statuses == sorted(statuses, key=ORDER.index)  # never back
    progress = [o["progress"] for o in outputs if "progress" in o]
    assert progress == sorted(progress) and progress[-1] == 100
    done = [o["images_done"] for o in outputs if "images_done" in o]
    assert done == sorted(done) and done[-1] == 2
    assert len(set(map(orjson.dumps, outputs))) == len(outputs)  # an event per change only
    fetched = api.get(f"/tasks/{task_id}").json()
    assert {**bodies[-1], "request_id": ""} == {**fetched, "request_id": ""}
    assert all(b["request_id"] == bodies[0]["request_id"] for b in bodies)


def test_an_unknown_or_foreign_task_gets_one_unknown_event(
    stack: Stack, api: httpx.Client, new_tenant: Callable[[], str]
) -> None:
    task_id = submit(api, body(V15, steps=1))
    with httpx.Client(base_url=stack.api, headers=stack.headers(new_tenant())) as other:
        for stream in (read_events(other, task_id), read_events(api, "no-such-task")):
            (only,) = stream.events
            assert only[0] == "status" and only[1]["output"]["task_status"] == "UNKNOWN"


def test_a_stream_needs_a_key(stack: Stack) -> None:
    answer = httpx.get(f"{stack.api}/tasks/some-id/events", timeout=10)
    assert answer.status_code == 401 and answer.json()["code"] == "InvalidApiKey"


def test_an_idle_stream_sends_heartbeats_and_ends_at_its_lifetime(
    idle_gateway: Gateways,
) -> None:
    key = register_tenant(idle_gateway.redis.url, "idle-" + secrets.token_hex(4))
    headers = {"Authorization": f"Bearer {key}", "X-DashScope-Async": "enable"}
    with httpx.Client(base_url=idle_gateway.api(0), headers=headers, timeout=30) as api:
        task_id = submit(api, body(V15, steps=1))
        stream = read_events(api, task_id)
    (only,) = stream.events  # nothing changed: one event, then comments only
    assert only[1]["output"]["task_status"] == "PENDING"
    assert stream.comments >= 3
    assert 1.4 <= stream.seconds < 10
