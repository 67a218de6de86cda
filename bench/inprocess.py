"""The applications alone: CPU per request of synthgate's ASGI app and the baseline's, called
in one process (no HTTP server, no load generator) against the same private Redis.

On a machine shared with other work the throughput of a server moves with its neighbours;
the CPU time one process spends per request, measured alternately for both apps (best of
three runs each), moves much less. What it leaves out, the HTTP server's parsing and
writing, costs both apps alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import baseline_app
import uvloop
from harness import SUBMIT_PATH, Rig
from scenarios import submit_request

from gateway.edge.app import create_app
from taskcore.settings import Settings

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


async def _cpu_per_request(app: App, scope: dict[str, Any], body: bytes, count: int) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    for _ in range(count // 10):  # warm
        await app(scope, receive, send)
    started = time.process_time()
    for _ in range(count):
        await app(scope, receive, send)
    return (time.process_time() - started) * 1000 / count


async def _compare(rig: Rig, count: int) -> list[dict[str, Any]]:
    ours = create_app(Settings(redis_url=rig.redis.url, storage_dir=rig.workdir / "storage"))
    base = baseline_app.create_app(rig.redis.url)
    body = submit_request()["body"].encode()
    headers = [(b"host", b"bench"), (b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in rig.headers().items()]
    headers.append((b"content-length", str(len(body)).encode()))
    rows = []
    async with ours.router.lifespan_context(ours), base.router.lifespan_context(base):
        submit = _scope("POST", SUBMIT_PATH, headers)
        seen: list[bytes] = []

        async def keep(message: MutableMapping[str, Any]) -> None:
            seen.append(message.get("body", b""))

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        await ours(submit, receive, keep)
        task_id = json.loads(seen[-1])["output"]["task_id"]
        fetch = _scope("GET", f"/api/v1/tasks/{task_id}", headers[:-1])
        for label, scope, payload in (("submit", submit, body), ("fetch", fetch, b"")):
            best: dict[str, float] = {"synthgate": 1e9, "baseline": 1e9}
            for _ in range(3):
                for name, app in (("synthgate", ours), ("baseline", base)):
                    ms = await _cpu_per_request(app, scope, payload, count)
                    best[name] = min(best[name], ms)
            rows += [
                {
                    "scenario": f"{label}, app alone (in process)",
                    "target": name,
                    "requests": count * 3,
                    "throughput": round(1000 / ms),
                    "per_request": {"server_cpu_ms": round(ms, 3)},
                }
                for name, ms in best.items()
            ]
    return rows


def app_costs(rig: Rig, count: int) -> list[dict[str, Any]]:
    """Rows of CPU per submit and per fetch of each app (``throughput``: 1 s / that CPU)."""
    rig.workdir.joinpath("storage").mkdir(exist_ok=True)
    return uvloop.run(_compare(rig, count))
