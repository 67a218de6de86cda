"""The upstream backend: a task is made by DashScope itself, then copied into our storage.

submit (async header) → remember the upstream task id in our record (a redelivered
task resumes polling instead of paying twice) → poll ``GET /tasks/{id}`` until a
final status → fetch each result URL → our storage. Polling adapts to the
upstream's observed latency per model, so a task is seen finished soon after it
finishes without hammering the upstream meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp

from taskcore.contract import GenerationRequest, ImageOutcome
from taskcore.settings import Settings
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


def upstream_body(request: GenerationRequest) -> dict[str, Any]:
    """Our client's parameters, as DashScope expects them."""
    scale: float | int = int(request.scale) if request.scale.is_integer() else request.scale
    return {
        "model": request.model,
        "input": {"prompt": request.prompt, "negative_prompt": request.negative_prompt},
        "parameters": {
            "size": request.size,
            "n": request.n,
            "steps": request.steps,
            "scale": scale,
            "seed": request.seed,
        },
    }


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
        self._client = UpstreamClient(
            http,
            settings.upstream_base_url,
            settings.upstream_api_key.get_secret_value(),
            RetryPolicy(max_seconds=settings.upstream_retry_max_seconds),
            settings.upstream_request_timeout_seconds,
        )
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
    ) -> list[ImageOutcome]:
        """The task's images not stored before (see ``Claim.stored``), on :attr:`loop`.

        ``annotate(task_id, field, value)`` records the upstream task id in our record
        before waiting on it, so that a task taken over resumes it instead of paying twice.
        ``upstream_done()`` is called when the upstream task has ended, before the
        images are downloaded.
        """
        assert claim.request is not None
        request = claim.request
        deadline = claim.scheduled_ms / 1000 + self._settings.upstream_deadline_seconds
        upstream_id = claim.upstream_task_id
        if not upstream_id:
            upstream_id = await self._submit(request, deadline)
            await annotate(claim.task_id, "upstream_task_id", upstream_id)
        else:
            log.info("task %s resumes upstream task %s", claim.task_id, upstream_id)
        output = await self._wait(upstream_id, request.model, deadline, on_status)
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

    async def _submit(self, request: GenerationRequest, deadline: float) -> str:
        body = await self._client.call(
            "POST",
            SUBMIT_PATH,
            deadline,
            "accept the task",
            json=upstream_body(request),
            headers={"X-DashScope-Async": "enable"},
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
            body = await self._client.call(
                "GET", f"/tasks/{upstream_id}", deadline, "report the task"
            )
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
                fetches.append(self._results.fetch(index, item["url"], deadline))
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
