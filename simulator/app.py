"""The simulator's ASGI app: DashScope's text-to-image task protocol, its limits, fault injection.

Protocol: ``POST /api/v1/services/aigc/text2image/image-synthesis`` (async header) →
PENDING; ``GET /api/v1/tasks/{id}`` goes PENDING → RUNNING → SUCCEEDED/FAILED over a
sampled latency; ``POST /api/v1/tasks/{id}/cancel`` cancels a PENDING task; results are
URLs under ``/results/`` that serve real PNGs of the requested size. The models and their
parameter rules, result fields and documented limits are DashScope's
(:mod:`simulator.models`, docs/upstream-models.md): an unknown model or a parameter out of
its rules answers DashScope's 400, a POST without the async header answers synchronously
for the models DashScope answers that way and 403 for the others.

Limits per API key, like DashScope's per account (``SimConfig``): submits per second
(per key, and per key and model), and tasks PENDING or RUNNING per key and model; above
them a submit answers 429 with DashScope's body. ``/_sim/stats`` counts, per key, the
accepted and throttled submits and the most tasks ever running at once.

Faults, process-wide (``SimConfig``, changeable at run time with
``PUT /_sim/config``): latency distribution, 429 rate with ``Retry-After``,
5xx rate, hanging requests, malformed JSON. Per task, by directives in the
prompt: ``sim:fail-task``, ``sim:fail-image=I``, ``sim:never``,
``sim:result-404``, ``sim:oversized``, ``sim:not-image``, ``sim:latency=S``,
``sim:hang-polls=N`` (its first N status queries hang); ``sim:tag=NAME`` only labels the
task, so that ``/_sim/stats`` can count the accepted submits of each tag.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import re
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from simulator.models import MODELS, Checked, ParameterError, SimModel
from simulator.png import colour_for, solid_png

# The value type of each dict-valued knob (JSON gives numbers of either kind).
_DICT_VALUES: dict[str, type] = {"submits_per_second_by_model": float, "max_running_by_model": int}


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
    api_key: str = ""  # when set (or api_keys is), other keys get 401 InvalidApiKey
    api_keys: list[str] = field(default_factory=list)  # more valid keys; both empty: any key
    # DashScope's limits, per API key (DashScope counts per account); 0 = no limit.
    submits_per_second: float = 0.0  # accepted submits of a key, all models together
    submits_per_second_by_model: dict[str, float] = field(default_factory=dict)  # per key+model
    max_running: int = 0  # tasks PENDING or RUNNING per key and model
    max_running_by_model: dict[str, int] = field(default_factory=dict)  # overrides max_running
    documented_limits: bool = False  # models without an override get DashScope's figures
    sync_timeout_seconds: float = 300.0  # a synchronous call waits this long for its task

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` all or nothing (ValueError names the first bad one)."""
        known = {f.name for f in fields(self)}
        converted = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown simulator setting {name!r}")
            converted[name] = _coerce(name, getattr(self, name), value)
        for name, value in converted.items():
            setattr(self, name, value)

    def sample_latency(self) -> float:
        mean = self.latency_seconds
        if self.latency_distribution == "exponential":
            return random.expovariate(1 / mean) if mean > 0 else 0.0
        if self.latency_distribution == "uniform":
            return max(0.0, mean * random.uniform(1 - self.latency_jitter, 1 + self.latency_jitter))
        return mean

    def accepts(self, key: str) -> bool:
        valid = {k for k in (self.api_key, *self.api_keys) if k}
        return not valid or key in valid

    def running_limit(self, model: SimModel) -> int:
        if model.name in self.max_running_by_model:
            return self.max_running_by_model[model.name]
        return model.max_running if self.documented_limits else self.max_running

    def model_rate(self, model: SimModel) -> float:
        if model.name in self.submits_per_second_by_model:
            return self.submits_per_second_by_model[model.name]
        return model.submits_per_second if self.documented_limits else 0.0


def _coerce(name: str, current: object, value: object) -> object:
    """``value`` as the type of the knob ``name`` (ValueError/TypeError when it is not one)."""
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
        return value
    if isinstance(current, list):
        if not isinstance(value, list):
            raise ValueError(f"{name} must be a list")
        return [str(item) for item in value]
    if isinstance(current, dict):
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be an object")
        kind = _DICT_VALUES[name]
        converted = {str(k): kind(v) for k, v in value.items()}
        if any(v < 0 for v in converted.values()):
            raise ValueError(f"{name} takes no negative values")
        return converted
    result = type(current)(value)  # type: ignore[call-arg]
    if isinstance(result, int | float) and result < 0:
        raise ValueError(f"{name} must not be negative")
    return result


_DIRECTIVE = re.compile(r"sim:([a-z0-9-]+)(?:=([0-9.]+))?")
_TAG = re.compile(r"sim:tag=([A-Za-z0-9_.:-]+)")
_FINAL = ("SUCCEEDED", "FAILED", "CANCELED")


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
    prompt: str = ""
    prompt_extend: bool = False
    key: str = ""

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

    @property
    def ends(self) -> float:
        return math.inf if "never" in self.directives else self.submitted + self.latency


class _Open:
    """One key's tasks of one model still PENDING or RUNNING: a heap of their ends."""

    __slots__ = ("canceled", "endless", "ends")

    def __init__(self) -> None:
        self.ends: list[tuple[float, str]] = []
        self.endless: set[str] = set()  # sim:never tasks
        self.canceled = 0  # canceled tasks still in the heap

    def add(self, task: SimTask) -> None:
        if math.isinf(task.ends):
            self.endless.add(task.task_id)
        else:
            heapq.heappush(self.ends, (task.ends, task.task_id))

    def cancel(self, task: SimTask) -> None:
        if task.task_id in self.endless:
            self.endless.discard(task.task_id)
        else:
            self.canceled += 1

    def count(self, now: float, tasks: dict[str, SimTask]) -> int:
        """How many are open at ``now`` (O(log n) a call: the submit path asks every time)."""
        while self.ends and self.ends[0][0] <= now:
            _, task_id = heapq.heappop(self.ends)
            if tasks[task_id].canceled:
                self.canceled -= 1
        return len(self.ends) - self.canceled + len(self.endless)


@dataclass
class _Usage:
    """Counters of a key, or of a key and model."""

    accepted: int = 0
    throttled: int = 0
    peak: int = 0  # the most tasks ever PENDING or RUNNING at once
    recent: deque[float] = field(default_factory=deque)  # accepted submits (monotonic)

    def allows(self, rate: float, now: float) -> bool:
        """Whether one more submit keeps to ``rate`` a second (0: no limit).

        A sliding window: at most ``rate * window`` accepted submits in any ``window``
        seconds, the window being one second (or 1/rate for rates under one a second).
        """
        if rate <= 0:
            return True
        window = max(1.0, 1.0 / rate)
        while self.recent and self.recent[0] <= now - window:
            self.recent.popleft()
        return len(self.recent) + 1 <= rate * window + 1e-9

    def to_json(self, running: int) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "throttled": self.throttled,
            "running": running,
            "max_running": self.peak,
        }


@dataclass
class _Key:
    """What the simulator knows of one API key: its counters and open tasks per model."""

    usage: _Usage = field(default_factory=_Usage)
    models: dict[str, _Usage] = field(default_factory=dict)
    open: dict[str, _Open] = field(default_factory=dict)

    def running(self, model: str, now: float, tasks: dict[str, SimTask]) -> int:
        return self.open[model].count(now, tasks) if model in self.open else 0

    def running_total(self, now: float, tasks: dict[str, SimTask]) -> int:
        return sum(group.count(now, tasks) for group in self.open.values())


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
        self.keys: dict[str, _Key] = {}
        self.throttled: Counter[str] = Counter()  # 429s answered for the limits, by reason
        self.tags: Counter[str] = Counter()  # accepted submits by sim:tag

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
        """Tasks still PENDING or RUNNING, of every key."""
        return sum(key.running_total(now, self.tasks) for key in self.keys.values())

    def admit(self, key: str, model: SimModel) -> Response | None:
        """DashScope's 429 when a submit of ``model`` by ``key`` is over a limit, else None."""
        cfg, state = self.config, self.keys.setdefault(key, _Key())
        usage = state.models.setdefault(model.name, _Usage())
        moment = time.monotonic()
        if not state.usage.allows(cfg.submits_per_second, moment) or not usage.allows(
            cfg.model_rate(model), moment
        ):
            reason, code, message = (
                "rate",
                "Throttling.RateQuota",
                "Requests rate limit exceeded, please try again later.",
            )
        else:
            limit = cfg.running_limit(model)
            if not limit or state.running(model.name, time.time(), self.tasks) < limit:
                return None
            reason, code, message = "running", "Throttling", "Requests throttling triggered."
        state.usage.throttled += 1
        usage.throttled += 1
        self.throttled[reason] += 1
        return _error(code, message, 429)

    def create(self, key: str, model: SimModel, checked: Checked, prompt: str) -> SimTask:
        """The task of an admitted submit."""
        directives: dict[str, list[str]] = {}
        for name, value in _DIRECTIVE.findall(prompt):
            directives.setdefault(name, []).append(value)
        latency = (
            float(directives["latency"][0])
            if "latency" in directives
            else self.config.sample_latency()
        )
        task = SimTask(
            task_id=str(uuid.uuid4()),
            model=model.name,
            width=checked.width,
            height=checked.height,
            n=checked.n,
            seed=random.randrange(2**31) if checked.seed is None else checked.seed,
            submitted=time.time(),
            latency=latency,
            pending_for=latency * self.config.pending_fraction,
            directives=directives,
            prompt=prompt,
            prompt_extend=checked.prompt_extend,
            key=key,
        )
        self.tasks[task.task_id] = task
        self._count(key, model, task)
        if tag := _TAG.search(prompt):
            self.tags[tag[1]] += 1
        return task

    def _count(self, key: str, model: SimModel, task: SimTask) -> None:
        state = self.keys.setdefault(key, _Key())
        state.open.setdefault(model.name, _Open()).add(task)
        usage = state.models.setdefault(model.name, _Usage())
        moment, now = time.monotonic(), task.submitted
        for counters in (state.usage, usage):
            counters.accepted += 1
            counters.recent.append(moment)
        usage.peak = max(usage.peak, state.running(model.name, now, self.tasks))
        state.usage.peak = max(state.usage.peak, state.running_total(now, self.tasks))
        self.max_open = max(self.max_open, self.open_tasks(now))

    def cancel(self, task: SimTask) -> bool:
        """Cancel ``task`` if it is still PENDING (DashScope cancels nothing else)."""
        if task.status(time.time()) != "PENDING":
            return False
        task.canceled = True
        self.keys[task.key].open[task.model].cancel(task)
        return True

    def view(self, task: SimTask, base_url: str) -> dict[str, Any]:
        model = MODELS[task.model]
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
            output.update(code="InternalError.Algo", message="Simulated task failure.")
            if model.task_metrics:
                output["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": 0, "FAILED": task.n}
            output["end_time"] = _fmt(task.submitted + task.latency)
            return {"output": output}
        if status != "SUCCEEDED":
            if model.task_metrics:
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
            else self._result(model, task, f"{base_url}results/{task.task_id}/{i}.png")
            for i in range(task.n)
        ]
        good = task.n - len(failed & set(range(task.n)))
        if model.task_metrics:
            output["task_metrics"] = {"TOTAL": task.n, "SUCCEEDED": good, "FAILED": task.n - good}
        return {"output": output, "usage": {"image_count": good}}

    @staticmethod
    def _result(model: SimModel, task: SimTask, url: str) -> dict[str, str]:
        if not model.prompt_results:
            return {"url": url}
        result = {"orig_prompt": task.prompt}
        if task.prompt_extend:
            result["actual_prompt"] = f"{task.prompt} (rewritten by the simulator's prompt_extend)"
        result["url"] = url
        return result

    def stats_json(self) -> dict[str, Any]:
        now = time.time()
        keys = {}
        for name, state in self.keys.items():
            per_model = {
                model: usage.to_json(state.running(model, now, self.tasks))
                for model, usage in state.models.items()
            }
            keys[name] = {
                **state.usage.to_json(state.running_total(now, self.tasks)),
                "models": per_model,
            }
        return {
            "requests": dict(self.stats),
            "tasks": len(self.tasks),
            "open": self.open_tasks(now),
            "max_open": self.max_open,
            "accepted": sum(state.usage.accepted for state in self.keys.values()),
            "throttled": sum(self.throttled.values()),
            "throttled_by_reason": {
                "rate": self.throttled["rate"],
                "running": self.throttled["running"],
            },
            "keys": keys,
            "submits_by_tag": dict(self.tags),
        }


@dataclass(frozen=True, slots=True)
class _Submit:
    """A submit body that passed DashScope's checks."""

    model: SimModel
    checked: Checked
    prompt: str


def _checked_body(body: object) -> _Submit | Response:
    """What a submit body asks for, or DashScope's 400 for the body."""
    if not isinstance(body, dict):
        return _error("InvalidParameter", "The request is not valid.", 400)
    name = body.get("model")
    if not name:
        return _error(
            "BadRequest.EmptyModel", 'Required parameter "model" missing from request.', 400
        )
    model = MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        return _error("InvalidParameter", "Model not exist.", 400)
    given = body.get("input")
    if not isinstance(given, dict) or not given:
        return _error(
            "BadRequest.EmptyInput", "Required input parameter missing from request.", 400
        )
    prompt = given.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return _error("InvalidParameter", "Required input prompt can't be empty.", 400)
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        return _error("InvalidParameter", "The parameters must be an object.", 400)
    try:
        return _Submit(model, model.check(params), prompt)
    except ParameterError as exc:
        return _error("InvalidParameter", str(exc), 400)


def create_simulator_app(config: SimConfig | None = None) -> Starlette:
    """The simulator as an ASGI app (``synthgate simulate-upstream`` serves it)."""
    sim = Simulator(config or SimConfig())

    def api_key(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return token if sim.config.accepts(token) else None

    async def submit(request: Request) -> Response:
        sim.stats["submit"] += 1
        key = api_key(request)
        if key is None:
            return _error("InvalidApiKey", "Invalid API-key provided.", 401)
        if (fault := await sim.fault()) is not None:
            return fault
        try:
            body = await request.json()
        except ValueError:
            return _error("InvalidParameter", "The request is not valid.", 400)
        asked = _checked_body(body)
        if isinstance(asked, Response):
            return asked
        model = asked.model
        synchronous = request.headers.get("x-dashscope-async") != "enable"
        if synchronous and not model.sync:
            return _error(
                "AccessDenied", "current user api does not support synchronous calls", 403
            )
        if (throttled := sim.admit(key, model)) is not None:
            return throttled
        task = sim.create(key, model, asked.checked, asked.prompt)
        if synchronous:
            return await answer_when_done(task, str(request.base_url))
        return JSONResponse(
            {
                "output": {"task_id": task.task_id, "task_status": "PENDING"},
                "request_id": str(uuid.uuid4()),
            }
        )

    async def answer_when_done(task: SimTask, base_url: str) -> Response:
        """A synchronous call's answer: the finished task, as a task query shows it."""
        deadline = time.time() + sim.config.sync_timeout_seconds
        # The loop's clock may wake a hair before the wall clock says the task ended.
        while (wait := min(task.ends, deadline) - time.time()) > 0:
            await asyncio.sleep(wait + 0.001)
        if task.status(time.time()) not in _FINAL:
            return _error("RequestTimeOut", "Request timed out, please try again later.", 500)
        body = sim.view(task, base_url)
        body["request_id"] = str(uuid.uuid4())
        return JSONResponse(body)

    async def fetch(request: Request) -> Response:
        sim.stats["fetch"] += 1
        if api_key(request) is None:
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

    async def cancel(request: Request) -> Response:
        sim.stats["cancel"] += 1
        if api_key(request) is None:
            return _error("InvalidApiKey", "Invalid API-key provided.", 401)
        if (fault := await sim.fault()) is not None:
            return fault
        task = sim.tasks.get(request.path_params["task_id"])
        if task is None or not sim.cancel(task):
            return _error(
                "UnsupportedOperation",
                "Failed to cancel the task, please confirm if the task is in PENDING status.",
                400,
            )
        return JSONResponse({"request_id": str(uuid.uuid4())})

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
                changes = await request.json()
                if not isinstance(changes, dict):
                    raise ValueError("the settings must be a JSON object")
                sim.config.update(changes)
            except (ValueError, TypeError, KeyError) as exc:
                return _error("InvalidParameter", str(exc), 400)
        return JSONResponse(asdict(sim.config))

    async def stats(_: Request) -> Response:
        return JSONResponse(sim.stats_json())

    return Starlette(
        routes=[
            Route("/api/v1/services/aigc/text2image/image-synthesis", submit, methods=["POST"]),
            Route("/api/v1/tasks/{task_id}", fetch, methods=["GET"]),
            Route("/api/v1/tasks/{task_id}/cancel", cancel, methods=["POST"]),
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
