"""The simulator's ASGI app: DashScope's async text-to-image protocol, with fault injection.

Protocol: ``POST /api/v1/services/aigc/text2image/image-synthesis`` (async header
required) → PENDING; ``GET /api/v1/tasks/{id}`` goes PENDING → RUNNING →
SUCCEEDED/FAILED over a sampled latency; results are URLs under ``/results/``
that serve real PNGs of the requested size.

Faults, process-wide (``SimConfig``, changeable at run time with
``PUT /_sim/config``): latency distribution, 429 rate with ``Retry-After``,
5xx rate, hanging requests, malformed JSON. Per task, by directives in the
prompt: ``sim:fail-task``, ``sim:fail-image=I``, ``sim:never``,
``sim:result-404``, ``sim:oversized``, ``sim:not-image``, ``sim:latency=S``,
``sim:hang-polls=N`` (its first N status queries hang).
"""

from __future__ import annotations

import asyncio
import heapq
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from simulator.png import colour_for, solid_png


@dataclass
class SimConfig:
    """Knobs of the simulated upstream; every rate is a probability per API request."""

    latency_seconds: float = 2.0
    latency_distribution: str = "uniform"  # fixed | uniform (± jitter) | exponential
    latency_jitter: float = 0.1
    pending_fraction: float = 0.2
    rate_429: float = 0.0
    retry_after_seconds: float = 1.0
    rate_5xx: float = 0.0
    rate_hang: float = 0.0
    hang_seconds: float = 3600.0
    rate_malformed: float = 0.0
    oversized_bytes: int = 64 * 1024 * 1024
    api_key: str = ""  # when set, other keys get 401 InvalidApiKey

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown simulator setting {name!r}")
            setattr(self, name, type(getattr(self, name))(value))

    def sample_latency(self) -> float:
        mean = self.latency_seconds
        if self.latency_distribution == "exponential":
            return random.expovariate(1 / mean) if mean > 0 else 0.0
        if self.latency_distribution == "uniform":
            return max(0.0, mean * random.uniform(1 - self.latency_jitter, 1 + self.latency_jitter))
        return mean


_DIRECTIVE = re.compile(r"sim:([a-z0-9-]+)(?:=([0-9.]+))?")
_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")


@dataclass
class SimTask:
    task_id: str
    model: str
    width: int
    height: int
    n: int
    seed: int
    submitted: float
    latency: float
    pending_for: float
    directives: dict[str, list[str]] = field(default_factory=dict)
    canceled: bool = False
    hung_polls: int = 0

    def status(self, now: float) -> str:
        if self.canceled:
            return "CANCELED"
        age = now - self.submitted
        if "never" in self.directives or age < self.pending_for:
            return (
                "RUNNING" if "never" in self.directives and age >= self.pending_for else "PENDING"
            )
        if age < self.latency:
            return "RUNNING"
        return "FAILED" if "fail-task" in self.directives else "SUCCEEDED"

    def failed_images(self) -> set[int]:
        return {int(float(i)) for i in self.directives.get("fail-image", [])}


def _error(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status, headers=headers)


def _fmt(moment: float) -> str:
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))
        + f".{int(moment * 1000) % 1000:03d}"
    )


class Simulator:
    """Holds the simulated tasks and answers the protocol."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.tasks: dict[str, SimTask] = {}
        self.stats: Counter[str] = Counter()
        self.max_open = 0
        self._ends: list[float] = []  # when each finite open task ends (a heap)
        self._endless = 0  # sim:never tasks

    async def fault(self) -> Response | None:
        """A process-wide injected fault for this request, or None."""
        cfg = self.config
        roll = random.random()
        for name, rate in (
            ("429", cfg.rate_429),
            ("5xx", cfg.rate_5xx),
            ("hang", cfg.rate_hang),
            ("malformed", cfg.rate_malformed),
        ):
            if roll < rate:
                self.stats[f"fault.{name}"] += 1
                return await self._inject(name)
            roll -= rate
        return None

    async def _inject(self, name: str) -> Response:
        if name == "429":
            return _error(
                "Throttling.RateQuota",
                "Requests rate limit exceeded, please try again later.",
                429,
                {"Retry-After": f"{self.config.retry_after_seconds:g}"},
            )
        if name == "5xx":
            return _error(
                "InternalError", "An internal error has occured, please try again later.", 500
            )
        if name == "hang":
            await asyncio.sleep(self.config.hang_seconds)
        return Response(b'{"output": {"task_id": ', media_type="application/json")

    def open_tasks(self, now: float) -> int:
        """Tasks still PENDING or RUNNING (O(log n): the submit path asks on every submit)."""
        while self._ends and self._ends[0] <= now:
            heapq.heappop(self._ends)
        return len(self._ends) + self._endless

    def create(self, body: dict[str, Any]) -> SimTask:
        params = body.get("parameters") or {}
        prompt = str((body.get("input") or {}).get("prompt", ""))
        directives: dict[str, list[str]] = {}
        for name, value in _DIRECTIVE.findall(prompt):
            directives.setdefault(name, []).append(value)
        default_size = "512*512" if body.get("model") == "stable-diffusion-v1.5" else "1024*1024"
        width, height = (int(side) for side in str(params.get("size", default_size)).split("*"))
        latency = (
            float(directives["latency"][0])
            if "latency" in directives
            else self.config.sample_latency()
        )
        task = SimTask(
            task_id=str(uuid.uuid4()),
            model=str(body.get("model")),
            width=width,
            height=height,
            n=int(params.get("n", 1)),
            seed=int(params.get("seed", random.randrange(2**31))),
            submitted=time.time(),
            latency=latency,
            pending_for=latency * self.config.pending_fraction,
            directives=directives,
        )
        self.tasks[task.task_id] = task
        if "never" in directives:
            self._endless += 1
        else:
            heapq.heappush(self._ends, task.submitted + task.latency)
        return task

    def view(self, task: SimTask, base_url: str) -> dict[str, Any]:
        now = time.time()
        status = task.status(now)
        output: dict[str, Any] = {
            "task_id": task.task_id,
            "task_status": status,
            "submit_time": _fmt(task.submitted),
        }
        if status in ("RUNNING", "SUCCEEDED", "FAILED"):
            output["scheduled_time"] = _fmt(task.submitted + task.pending_for)
        if status == "FAILED":
            output.update(
                code="InternalError.Algo",
                message="Simulated task failure.",
                task_metrics={"TOTAL": task.n, "SUCCEEDED": 0, "FAILED": task.n},
            )
            output["end_time"] = _fmt(task.submitted + task.latency)
            return {"output": output}
        if status != "SUCCEEDED":
            output["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": 0, "FAILED": 0}
            return {"output": output}
        failed = task.failed_images()
        output["end_time"] = _fmt(task.submitted + task.latency)
        output["results"] = [
            {
                "code": "InternalError.Timeout",
                "message": "An internal timeout error has occured during execution, please try "
                "again later or contact service support.",
            }
            if i in failed
            else {"url": f"{base_url}results/{task.task_id}/{i}.png"}
            for i in range(task.n)
        ]
        good = task.n - len(failed & set(range(task.n)))
        output["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": good, "FAILED": task.n - good}
        return {"output": output, "usage": {"image_count": good}}


def create_simulator_app(config: SimConfig | None = None) -> Starlette:
    """The simulator as an ASGI app (``synthgate simulate-upstream`` serves it)."""
    sim = Simulator(config or SimConfig())

    def authorized(request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        return not sim.config.api_key or token == sim.config.api_key

    async def submit(request: Request) -> Response:
        sim.stats["submit"] += 1
        if not authorized(request):
            return _error("InvalidApiKey", "Invalid API-key provided.", 401)
        if (fault := await sim.fault()) is not None:
            return fault
        if request.headers.get("x-dashscope-async") != "enable":
            return _error(
                "AccessDenied", "current user api does not support synchronous calls", 403
            )
        try:
            body = await request.json()
            task = sim.create(body)
        except (ValueError, TypeError, AttributeError):
            return _error("InvalidParameter", "The request is not valid.", 400)
        if not (body.get("input") or {}).get("prompt"):
            return _error("InvalidParameter", "Required input prompt can't be empty.", 400)
        sim.max_open = max(sim.max_open, sim.open_tasks(time.time()))
        return JSONResponse(
            {
                "output": {"task_id": task.task_id, "task_status": "PENDING"},
                "request_id": str(uuid.uuid4()),
            }
        )

    async def fetch(request: Request) -> Response:
        sim.stats["fetch"] += 1
        if not authorized(request):
            return _error("InvalidApiKey", "Invalid API-key provided.", 401)
        if (fault := await sim.fault()) is not None:
            return fault
        task = sim.tasks.get(request.path_params["task_id"])
        if task is not None and task.hung_polls < int(
            float(task.directives.get("hang-polls", ["0"])[0])
        ):
            task.hung_polls += 1
            sim.stats["fault.hang"] += 1
            await asyncio.sleep(sim.config.hang_seconds)
        if task is None:
            return JSONResponse(
                {
                    "request_id": str(uuid.uuid4()),
                    "output": {"task_id": request.path_params["task_id"], "task_status": "UNKNOWN"},
                }
            )
        body = sim.view(task, str(request.base_url))
        body["request_id"] = str(uuid.uuid4())
        return JSONResponse(body)

    async def result(request: Request) -> Response:
        sim.stats["result"] += 1
        task = sim.tasks.get(request.path_params["task_id"])
        index = int(request.path_params["index"])
        if task is None or "result-404" in task.directives or index >= task.n:
            return Response(
                b"<Error><Code>NoSuchKey</Code></Error>", 404, media_type="application/xml"
            )
        if "not-image" in task.directives:
            return Response(b"<html>login</html>", media_type="text/html")
        if "oversized" in task.directives:
            return StreamingResponse(_zeros(sim.config.oversized_bytes), media_type="image/png")
        png = solid_png(task.width, task.height, colour_for(task.seed + index))
        return Response(png, media_type="image/png")

    async def settings(request: Request) -> Response:
        if request.method == "PUT":
            try:
                sim.config.update(await request.json())
            except (ValueError, TypeError) as exc:
                return _error("InvalidParameter", str(exc), 400)
        return JSONResponse(asdict(sim.config))

    async def stats(_: Request) -> Response:
        return JSONResponse(
            {
                "requests": dict(sim.stats),
                "tasks": len(sim.tasks),
                "open": sim.open_tasks(time.time()),
                "max_open": sim.max_open,
            }
        )

    return Starlette(
        routes=[
            Route("/api/v1/services/aigc/text2image/image-synthesis", submit, methods=["POST"]),
            Route("/api/v1/tasks/{task_id}", fetch, methods=["GET"]),
            Route("/results/{task_id}/{index:int}.png", result, methods=["GET"]),
            Route("/_sim/config", settings, methods=["GET", "PUT"]),
            Route("/_sim/stats", stats, methods=["GET"]),
        ]
    )


async def _zeros(total: int, chunk: int = 1 << 16) -> Any:
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        sent += size
        yield bytes(size)
