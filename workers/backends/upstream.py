"""The upstream backend: a task is made by DashScope itself, then copied into our storage.

submit (async header) → remember the upstream task id in our record (a redelivered
task resumes polling instead of paying twice) → poll ``GET /tasks/{id}`` until a
final status → fetch each result URL → our storage. Polling adapts to the
upstream's observed latency per model, so a task is seen finished soon after it
finishes without hammering the upstream meanwhile.

Each task runs under one DashScope account (its API key): the one the upstream worker's
take gave it (see :mod:`taskcore.upstream_accounts`), whose turn every submit waits for
and whose rest every 429 starts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from taskcore.catalog import ModelSpec
from taskcore.contract import GenerationRequest, ImageOutcome
from taskcore.settings import Settings, UpstreamAccount
from taskcore.store.claims import Claim
from taskcore.store.worker import WorkerTaskStore
from workers.backends import TaskFailed
from workers.backends.eventloop import LoopThread
from workers.backends.results import ResultFetcher, ResultPolicy
from workers.backends.upstream_http import (
    UPSTREAM_CODE,
    RetryPolicy,
    UpstreamClient,
    open_session,
    sleep_until_or_fail,
)
from workers.progress import ProgressRecorder

log = logging.getLogger("synthgate.worker.upstream")

SUBMIT_PATH = "/services/aigc/text2image/image-synthesis"
FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"}


# A result's fields besides the image, passed on to our client (DashScope's wanx models
# report the prompt they used after extending it).
RESULT_FIELDS = ("actual_prompt", "orig_prompt")


def upstream_body(request: GenerationRequest, spec: ModelSpec) -> dict[str, Any]:
    """Our client's parameters, as DashScope expects them for the model: only the fields
    the model takes (its catalog entry), each where DashScope takes it."""
    inputs: dict[str, Any] = {"prompt": request.prompt}
    if spec.negative_prompt is not None and request.negative_prompt:
        inputs["negative_prompt"] = request.negative_prompt
    params: dict[str, Any] = {"size": request.size, "n": request.n}
    if spec.steps is not None:
        params["steps"] = request.steps
    if spec.scale is not None:
        params["scale"] = int(request.scale) if request.scale.is_integer() else request.scale
    if spec.seed is not None:
        params["seed"] = request.seed
    for name, value in request.options.items():
        rule = spec.fields.get(name)
        (inputs if rule is not None and rule.where == "input" else params)[name] = value
    return {"model": spec.upstream_model or spec.name, "input": inputs, "parameters": params}


@dataclass(frozen=True, slots=True)
class AccountUse:
    """The account a task runs under, and how its submits keep to the account's limits:
    ``turn()`` waits for the account's next submit, ``throttled(seconds)`` rests it."""

    name: str
    turn: Callable[[], Awaitable[None]] | None = None
    throttled: Callable[[float], Awaitable[None]] | None = None


class LatencyEstimate:
    """Per-model moving average of how long upstream tasks take (seconds)."""

    def __init__(self, initial: float) -> None:
        self._initial = initial
        self._values: dict[str, float] = {}
        self._lock = threading.Lock()

    def expected(self, model: str) -> float:
        return self._values.get(model, self._initial)

    def observe(self, model: str, seconds: float) -> None:
        with self._lock:
            old = self._values.get(model)
            self._values[model] = seconds if old is None else 0.8 * old + 0.2 * seconds


class UpstreamBackend:
    """Runs claimed tasks on DashScope (or anything speaking its protocol)."""

    def __init__(
        self, settings: Settings, store: WorkerTaskStore, progress: ProgressRecorder | None = None
    ) -> None:
        self._settings = settings
        self._store = store
        self._progress = progress
        self._loop = LoopThread("synthgate-upstream-io")
        http = self._loop.run(_client(settings))
        self._http = http
        self._accounts = {account.name: account for account in settings.accounts()}
        self._clients = {
            account.name: UpstreamClient(
                http,
                settings.upstream_base_url,
                account.api_key.get_secret_value(),
                RetryPolicy(max_seconds=settings.upstream_retry_max_seconds),
                settings.upstream_request_timeout_seconds,
            )
            for account in self._accounts.values()
        }
        self._results = ResultFetcher(
            http,
            ResultPolicy(
                hosts=settings.result_hosts(),
                max_bytes=settings.upstream_result_max_bytes,
                timeout_seconds=settings.upstream_request_timeout_seconds,
            ),
        )
        self._latency = LatencyEstimate(settings.upstream_poll_initial_seconds)

    def generate(self, claim: Claim) -> list[ImageOutcome]:
        """:meth:`make`, for a caller outside the backend's event loop."""

        async def annotate(task_id: str, field: str, value: str) -> object:
            return self._store.annotate(task_id, field, value)

        return self._loop.run(self.make(claim, annotate, self.status_hook(claim.task_id)))

    async def make(
        self,
        claim: Claim,
        annotate: Callable[[str, str, str], Awaitable[object]],
        on_status: Callable[[str], None] | None = None,
        upstream_done: Callable[[], None] | None = None,
        account: AccountUse | None = None,
    ) -> list[ImageOutcome]:
        """The task's images not stored before (see ``Claim.stored``), on :attr:`loop`.

        ``annotate(task_id, field, value)`` records the upstream task id in our record
        before waiting on it, so that a task taken over resumes it instead of paying twice.
        ``upstream_done()`` is called when the upstream task has ended, before the
        images are downloaded. ``account`` is the account the task runs under (default:
        the first that serves the model, with no limits kept: for callers outside the
        upstream worker).
        """
        assert claim.request is not None
        request = claim.request
        spec = self._settings.catalog[request.model]
        use = account or AccountUse(self.default_account(spec.name))
        client = self._client_of(use.name)
        deadline = claim.scheduled_ms / 1000 + self._settings.upstream_deadline_seconds
        upstream_id = claim.upstream_task_id
        if not upstream_id:
            upstream_id = await self._submit(client, request, spec, deadline, use)
            await annotate(claim.task_id, "upstream_task_id", upstream_id)
        else:
            log.info("task %s resumes upstream task %s", claim.task_id, upstream_id)
        output = await self._wait(client, upstream_id, request.model, deadline, on_status)
        if upstream_done is not None:
            upstream_done()
        status = output.get("task_status")
        if status == "FAILED":
            raise TaskFailed(
                str(output.get("code") or UPSTREAM_CODE),
                str(output.get("message") or "The upstream task failed."),
            )
        if status != "SUCCEEDED":
            raise TaskFailed(UPSTREAM_CODE, f"The upstream service reports the task {status}.")
        return await self._collect(output, request.n, deadline, claim.stored)

    @property
    def loop(self) -> LoopThread:
        """The event loop the backend's HTTP client lives on."""
        return self._loop

    async def aclose(self) -> None:
        """Close the HTTP session, on :attr:`loop` (its connections belong to it)."""
        await self._http.close()

    def close(self) -> None:
        self._loop.run(self.aclose())
        self._loop.stop()

    def default_account(self, model: str) -> str:
        """The first account that serves ``model``."""
        for account in self._accounts.values():
            if account.serves(model):
                return account.name
        raise TaskFailed(UPSTREAM_CODE, f"No DashScope account serves the model {model}.")

    def accounts(self) -> list[UpstreamAccount]:
        return list(self._accounts.values())

    def _client_of(self, name: str) -> UpstreamClient:
        client = self._clients.get(name)
        if client is None:  # the account left the configuration since the task took it
            raise TaskFailed(UPSTREAM_CODE, f"The DashScope account {name!r} is not configured.")
        return client

    async def _submit(
        self,
        client: UpstreamClient,
        request: GenerationRequest,
        spec: ModelSpec,
        deadline: float,
        use: AccountUse,
    ) -> str:
        body = await client.call(
            "POST",
            SUBMIT_PATH,
            deadline,
            "accept the task",
            json=upstream_body(request, spec),
            headers={"X-DashScope-Async": "enable"},
            turn=use.turn,
            throttled=use.throttled,
        )
        task_id = (body.get("output") or {}).get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise TaskFailed(UPSTREAM_CODE, "The upstream service accepted the task without an id.")
        return task_id

    def status_hook(self, task_id: str) -> Callable[[str], None] | None:
        """Records each new upstream status as rough progress, off the event loop (the
        write is a blocking Redis call)."""
        progress = self._progress
        if progress is None:
            return None
        seen: set[str] = set()

        def on_status(status: str) -> None:
            if status not in seen:
                seen.add(status)
                loop = asyncio.get_running_loop()
                loop.run_in_executor(None, progress.upstream_status, task_id, status)

        return on_status

    async def _wait(
        self,
        client: UpstreamClient,
        upstream_id: str,
        model: str,
        deadline: float,
        on_status: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        started = time.time()
        expected = self._latency.expected(model)
        # First look just after it is expected to be done: most tasks then need one poll.
        # (The clock starts on our receipt of the submit answer, after the upstream's own.)
        delay = expected + 0.02
        interval = max(0.1, 0.05 * expected)
        while True:
            await sleep_until_or_fail(delay, deadline, "finish the task")
            body = await client.call("GET", f"/tasks/{upstream_id}", deadline, "report the task")
            output = body.get("output") or {}
            if on_status is not None:
                on_status(str(output.get("task_status")))
            if output.get("task_status") in FINAL:
                took = _reported_duration(output)
                self._latency.observe(model, took if took is not None else time.time() - started)
                return dict(output)
            delay = interval
            interval = min(interval * 1.5, self._settings.upstream_poll_max_seconds)

    async def _collect(
        self, output: dict[str, Any], n: int, deadline: float, stored: frozenset[int]
    ) -> list[ImageOutcome]:
        """One outcome per image not ``stored`` before; the downloads run concurrently."""
        results = output.get("results") or []
        fetches = []
        for index in (i for i in range(n) if i not in stored):
            item = (
                results[index] if index < len(results) and isinstance(results[index], dict) else {}
            )
            if isinstance(item.get("url"), str):
                extra = {k: str(item[k]) for k in RESULT_FIELDS if isinstance(item.get(k), str)}
                fetches.append(self._results.fetch(index, item["url"], deadline, extra))
            else:
                fetches.append(_failed(index, item))
        return list(await asyncio.gather(*fetches))


def _reported_duration(output: dict[str, Any]) -> float | None:
    """The upstream's own submit→end time: unbiased by our polling, unlike what we observe."""
    try:  # "2024-01-02 03:04:05.678" (fromisoformat: strptime costs ~10x more CPU)
        ends = [datetime.fromisoformat(str(output[name])) for name in ("submit_time", "end_time")]
    except (KeyError, ValueError):
        return None
    return max(0.0, (ends[1] - ends[0]).total_seconds())


async def _failed(index: int, item: dict[str, Any]) -> ImageOutcome:
    return ImageOutcome(
        index,
        code=str(item.get("code") or UPSTREAM_CODE),
        message=str(item.get("message") or "The upstream returned no image."),
    )


async def _client(settings: Settings) -> aiohttp.ClientSession:
    """The pooled session, made on the loop that will use it."""
    return open_session(settings.upstream_max_connections)
