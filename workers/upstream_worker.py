"""The upstream pool's worker: hundreds of DashScope tasks in flight on one event loop.

An upstream task is almost all waiting (DashScope makes the images), so the worker
is an asyncio loop rather than a Celery pool: it takes task messages straight off
the pool's queue (the list kombu's Redis transport reads, so the gateway's side is
the same for every pool), up to ``SYNTHGATE_UPSTREAM_MAX_INFLIGHT`` at once, and
runs each as a coroutine: claim, submit, poll, download, store, finish. Per task
that is a few Redis scripts and the upstream's own requests, with no thread or
broker bookkeeping of its own (Celery's threads pool spent most of its CPU there).

Nothing is lost on the way. A message taken off the queue is followed by the
task's claim within milliseconds; should the worker die in between, the task is
still in its pool's ``starting`` set and the reaper puts it back in the queue (see
:mod:`gateway.reaper`). After the claim the worker holds a lease, renewed for all
its tasks in one script every lease/4, and the task's upstream id is in its
record: a worker taking over an expired lease resumes the upstream task. On
SIGTERM the worker stops taking tasks, lets those in flight finish for up to
``SYNTHGATE_WORKER_GRACE_SECONDS``, and hands the rest back (their leases end at
once, so other workers take them over without waiting a lease).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import signal
import threading
from collections.abc import Callable

import orjson
import redis
import redis.asyncio as aioredis

from gateway.catalog import UPSTREAM_QUEUE
from gateway.logs import log_context
from gateway.settings import Settings
from gateway.store import Claim
from workers import metrics
from workers.async_store import AsyncWorkerTaskStore
from workers.backends.upstream import UpstreamBackend
from workers.generate import (
    Verdict,
    failure_verdict,
    log_not_runnable,
    plan_images,
    report_finished,
    verdict,
)
from workers.heartbeat import Heartbeat
from workers.progress import UPSTREAM_PROGRESS
from workers.runtime import WorkerRuntime, get_runtime
from workers.services import Service, worker_services

log = logging.getLogger("synthgate.worker.upstream")

_POP_TIMEOUT_SECONDS = 1  # how often an idle consumer looks at its stop flag
_POP_BATCH = 64  # messages taken in one round trip, at most


def task_id_of(envelope: bytes | str) -> str:
    """The task id in a ``synthgate.generate`` message (see ``gateway.queueing``)."""
    message = orjson.loads(envelope)
    args, _kwargs, _embed = orjson.loads(base64.b64decode(message["body"]))
    return str(args[0])


async def _pop(client: aioredis.Redis, count: int) -> list[bytes | str]:
    """Up to ``count`` messages from the queue's consuming end in one round trip (a pipeline
    of RPOPs: RPOP's own count needs Redis 6.2); blocks up to a second for one when empty."""
    async with client.pipeline(transaction=False) as pipe:
        for _ in range(count):
            pipe.rpop(UPSTREAM_QUEUE)
        popped = [envelope for envelope in await pipe.execute() if envelope is not None]
    if popped:
        return popped
    waited = await client.brpop([UPSTREAM_QUEUE], timeout=_POP_TIMEOUT_SECONDS)
    return [waited[1]] if waited is not None else []


class UpstreamWorker:
    """Consumes the upstream pool's queue and runs its tasks on the backend's event loop."""

    def __init__(self, settings: Settings, runtime: WorkerRuntime) -> None:
        backend = runtime.backend_for(UPSTREAM_QUEUE)
        assert isinstance(backend, UpstreamBackend)
        self._settings = settings
        self._runtime = runtime
        self._backend = backend
        self._held: set[str] = set()
        self._stopping = threading.Event()

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        self._backend.loop.run(self._serve())

    def stop(self) -> None:
        self._stopping.set()

    async def _serve(self) -> None:
        client = aioredis.Redis.from_url(
            self._settings.redis_url, max_connections=64, health_check_interval=30
        )
        store = AsyncWorkerTaskStore(
            client,
            self._settings.task_ttl_seconds,
            self._settings.feed_depth,
            self._runtime.store.lease,
        )
        running: set[asyncio.Task[None]] = set()
        renewer = asyncio.create_task(self._renew_forever(store))
        try:
            await self._consume(client, store, running)
            await self._drain(store, running)
        finally:
            renewer.cancel()
            await client.aclose()

    async def _consume(
        self,
        client: aioredis.Redis,
        store: AsyncWorkerTaskStore,
        running: set[asyncio.Task[None]],
    ) -> None:
        """Fill every free slot: as many messages as slots are free in one round trip (when
        a burst of tasks ends at once, one message per round trip would start their
        successors one loop turn apart), or wait for one while the queue is empty."""
        limit = self._settings.upstream_max_inflight
        freed = asyncio.Event()
        log.info("upstream worker: up to %d tasks in flight", limit)

        def done(task: asyncio.Task[None]) -> None:
            running.discard(task)
            freed.set()

        while not self._stopping.is_set():
            free = limit - len(running)
            if free <= 0:
                freed.clear()
                with contextlib.suppress(TimeoutError):  # look at the stop flag each second
                    await asyncio.wait_for(freed.wait(), _POP_TIMEOUT_SECONDS)
                continue
            try:
                envelopes = await _pop(client, min(free, _POP_BATCH))
            except redis.RedisError as exc:  # Redis restarting: the reaper keeps tasks safe
                log.warning("upstream worker: cannot take tasks: %s", exc)
                await asyncio.sleep(1)
                continue
            for envelope in envelopes:
                task = asyncio.create_task(self._run_message(store, envelope))
                running.add(task)
                task.add_done_callback(done)

    async def _drain(self, store: AsyncWorkerTaskStore, running: set[asyncio.Task[None]]) -> None:
        """Let tasks in flight finish within the grace period; hand the others back."""
        if running:
            log.info("upstream worker stopping: %d tasks in flight", len(running))
            await asyncio.wait(set(running), timeout=self._settings.worker_grace_seconds)
        left = sorted(self._held)
        unfinished = set(running)
        for task in unfinished:
            task.cancel()
        if unfinished:  # let them unwind before the Redis client closes
            await asyncio.wait(unfinished, timeout=5)
        if left:
            await store.renew(left, hand_back=True)
            log.warning("upstream worker stopped: %d tasks handed back to other workers", len(left))

    async def _renew_forever(self, store: AsyncWorkerTaskStore) -> None:
        interval = self._settings.lease_seconds / 4
        while True:
            await asyncio.sleep(interval)
            try:
                lost = await store.renew(sorted(self._held))
            except redis.RedisError as exc:
                log.warning("could not renew leases: %s", exc)
                continue
            if lost:
                log.warning("lost the lease on %s: another worker has it now", ", ".join(lost))

    async def _run_message(self, store: AsyncWorkerTaskStore, envelope: bytes | str) -> None:
        try:
            task_id = task_id_of(envelope)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            log.error("dropping a message that is not a synthgate task: %s", exc)
            return
        try:
            await self._run(store, task_id)
        except redis.RedisError as exc:  # the lease or the reaper gives the task another go
            log.warning("task %s interrupted by Redis: %s", task_id, exc)

    async def _run(self, store: AsyncWorkerTaskStore, task_id: str) -> None:
        claim = await store.claim(task_id)
        if claim is None or claim.request is None:
            log_not_runnable(task_id, claim)
            return
        context = log_context(task_id=task_id, tenant=claim.tenant, model=claim.request.model)
        self._held.add(task_id)
        try:
            with context, metrics.task_running(claim) as started:
                ending = await self._execute(store, task_id, claim)
                if not await store.finish(task_id, *ending):
                    log.warning("task %s: another worker took it over", task_id)
                    return
                report_finished(task_id, claim, ending, started)
        finally:
            self._held.discard(task_id)

    async def _execute(self, store: AsyncWorkerTaskStore, task_id: str, claim: Claim) -> Verdict:
        try:
            made = await self._backend.make(claim, store.annotate, _progress(store, task_id))
            plan = plan_images(task_id, claim, made)
            if plan.objects:  # storage clients block: off the loop
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._runtime.uploader.put_all, plan.objects)
                await store.mark_stored(task_id, sorted(plan.indexes.values()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return failure_verdict(task_id, exc)
        return verdict(plan.results)


def _progress(store: AsyncWorkerTaskStore, task_id: str) -> Callable[[str], None]:
    """Records each new upstream status as rough progress (a write or two per task)."""
    seen: set[str] = set()
    writes: set[asyncio.Task[bool]] = set()

    def on_status(status: str) -> None:
        if status in seen or status not in UPSTREAM_PROGRESS:
            return
        seen.add(status)
        write = asyncio.ensure_future(store.raise_progress(task_id, UPSTREAM_PROGRESS[status]))
        writes.add(write)  # held until done: the loop keeps only weak references
        write.add_done_callback(_progress_written)
        write.add_done_callback(writes.discard)

    return on_status


def _progress_written(write: asyncio.Task[bool]) -> None:
    if not write.cancelled() and write.exception() is not None:
        log.warning("progress not recorded: %s", write.exception())


def run_upstream_worker(settings: Settings, hostname: str) -> None:
    """``synthgate worker`` for the upstream pool: the consumer, with the heartbeat and the
    main process's services (see :mod:`workers.services`) around it."""
    pools = [UPSTREAM_QUEUE]
    runtime = get_runtime(settings)
    heartbeat = Heartbeat(
        redis.Redis.from_url(settings.redis_url), pools, hostname, settings.worker_heartbeat_seconds
    )
    services: list[Service] = [heartbeat, *worker_services(settings, pools)]
    for service in services:
        service.start()
    log.info("worker ready for %s", UPSTREAM_QUEUE)
    try:
        UpstreamWorker(settings, runtime).run()
    finally:
        for service in reversed(services):
            service.stop()
        log.info("upstream worker stopped")
