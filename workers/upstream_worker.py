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
:mod:`taskcore.reaper`). After the claim the worker holds a lease, renewed for all
its tasks in one script every lease/4, and the task's upstream id is in its
record: a worker taking over an expired lease resumes the upstream task. On
SIGTERM the worker stops taking tasks, lets those in flight finish for up to
``SYNTHGATE_WORKER_GRACE_SECONDS``, and hands the rest back (their leases end at
once, so other workers take them over without waiting a lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable

import redis

from taskcore import redis_connect
from taskcore.celery_queue import task_id_of
from taskcore.logs import log_context
from taskcore.redis_startup import RedisAway
from taskcore.settings import Settings
from taskcore.store.async_worker import AsyncWorkerTaskStore
from taskcore.store.claims import Claim
from taskcore.store.replicas import ReplicaWait
from taskcore.upstream_accounts import AccountSlots, Taken
from workers import health, metrics
from workers.backends.upstream import AccountUse, UpstreamBackend
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
from workers.runtime import WorkerRuntime, get_runtime, served_queues
from workers.services import Service, worker_services

log = logging.getLogger("synthgate.worker.upstream")

_POP_TIMEOUT_SECONDS = 1  # how often an idle consumer looks at its stop flag
_IDLE_SECONDS = 0.1  # how often a worker with room looks for tasks while none can be taken
_POP_BATCH = 64  # messages taken in one round trip, at most
_COPY_GRACE_SECONDS = 0.5  # see _Progress
_TICK_SECONDS = 1.0  # the loop's liveness tick (workers/health.py)


class UpstreamWorker:
    """Consumes the upstream pools' queues (one pool a model) and runs their tasks on the
    backend's event loop, within the DashScope accounts' limits."""

    def __init__(self, settings: Settings, runtime: WorkerRuntime, pools: list[str]) -> None:
        backend = runtime.backend_for(pools[0])
        assert isinstance(backend, UpstreamBackend)
        self._settings = settings
        self._runtime = runtime
        self._backend = backend
        self._pools = [(pool, settings.catalog.model_of_pool(pool)) for pool in pools]
        self._first = 0  # the pool the next take starts with: each in turn
        self._held: set[str] = set()
        self._early: set[asyncio.Task[None]] = set()  # slot releases under way
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
        # Hundreds of tasks share the pool: a call waits for a free connection rather
        # than failing with "Too many connections" when a burst of them ends at once.
        client = redis_connect.async_client(
            self._settings, max_connections=64, wait_for_connection=30, health_check_interval=30
        )
        store = AsyncWorkerTaskStore(
            client,
            self._settings.task_ttl_seconds,
            self._settings.feed_depth,
            self._runtime.store.lease,
            ReplicaWait.from_settings(self._settings),
        )
        slots = AccountSlots(client, self._backend.accounts())
        running: set[asyncio.Task[None]] = set()
        renewer = asyncio.create_task(self._renew_forever(store))
        ticker = asyncio.create_task(health.tick_forever(health.LOOP, _TICK_SECONDS))
        try:
            await slots.register()
            health.mark_ready(health.CONSUMER)  # Redis answered: the consumer starts
            await self._consume(store, slots, running)
            await self._drain(store, running)
        finally:
            renewer.cancel()
            ticker.cancel()
            health.clear_ready(health.CONSUMER)
            await client.aclose()
            await self._backend.aclose()

    async def _take(self, slots: AccountSlots, count: int) -> list[Taken]:
        """Up to ``count`` messages across the pools, each pool's as far as the accounts
        serving its model have room; the pools take turns at going first."""
        taken: list[Taken] = []
        order = self._pools[self._first :] + self._pools[: self._first]
        self._first = (self._first + 1) % len(self._pools)
        for pool, spec in order:
            if len(taken) >= count or spec is None:
                continue
            depth = self._settings.feed_depth
            taken += await slots.take(pool, spec.name, count - len(taken), depth)
        return taken

    async def _consume(
        self,
        store: AsyncWorkerTaskStore,
        slots: AccountSlots,
        running: set[asyncio.Task[None]],
    ) -> None:
        """Fill every free slot: as many messages as slots are free in one round trip (when
        a burst of tasks ends at once, one message per round trip would start their
        successors one loop turn apart), or wait for one while the queue is empty."""
        limit = self._settings.upstream_max_inflight
        away = RedisAway(self._settings, "the upstream worker takes no task")
        freed = asyncio.Event()
        upstream = 0  # tasks not done with the upstream yet: what the limit counts
        log.info("upstream worker: up to %d tasks in flight", limit)

        def done(task: asyncio.Task[None]) -> None:
            running.discard(task)
            freed.set()

        def upstream_done() -> None:
            nonlocal upstream
            upstream -= 1
            freed.set()

        while not self._stopping.is_set():
            # A task's slot frees when the upstream has finished it: copying its images
            # into our storage is no upstream concurrency, so the next task starts then
            # (at most `limit` more tasks copy at once).
            free = min(limit - upstream, 2 * limit - len(running))
            if free <= 0:
                freed.clear()
                with contextlib.suppress(TimeoutError):  # look at the stop flag each second
                    await asyncio.wait_for(freed.wait(), _POP_TIMEOUT_SECONDS)
                continue
            try:
                taken = await self._take(slots, min(free, _POP_BATCH))
                away.answered()
            except redis.RedisError as exc:  # Redis restarting: the reaper keeps tasks safe
                if not away.failed(exc):  # away: said once now and then, backing off
                    log.warning("upstream worker: cannot take tasks: %s", exc)
                await self._rest(away.pause(1.0))
                continue
            if not taken:  # nothing waits, or every account is full: look again soon
                freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(freed.wait(), _IDLE_SECONDS)
                continue
            for task_id, claim, account in await self._claim_all(store, taken):
                upstream += 1
                assert claim.request is not None
                ended = self._ended_upstream(slots, task_id, account, claim.request.model)
                use = self._account_use(slots, account, task_id, claim.request.model)
                task = asyncio.create_task(
                    self._run(store, task_id, claim, _once(upstream_done, ended), use)
                )
                running.add(task)
                task.add_done_callback(done)

    async def _rest(self, seconds: float) -> None:
        """Sleep ``seconds``, looking at the stop flag each second."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self._stopping.is_set():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, _POP_TIMEOUT_SECONDS))

    def _ended_upstream(
        self, slots: AccountSlots, task_id: str, account: str, model: str
    ) -> Callable[[], None]:
        """When the task has ended upstream: free its account's running slot at once (its
        images are still to copy, which DashScope does not count)."""

        def release() -> None:
            if not account:
                return
            freeing = asyncio.ensure_future(slots.release(task_id, account, model))
            self._early.add(freeing)  # held until done: the loop keeps only weak references
            freeing.add_done_callback(self._early.discard)
            freeing.add_done_callback(_released)

        return release

    def _account_use(
        self, slots: AccountSlots, name: str, task_id: str, model: str
    ) -> AccountUse | None:
        """How the task's submits keep to its account's limits."""
        account = next((a for a in self._backend.accounts() if a.name == name), None)
        if account is None:
            return None
        rest_at_least = self._settings.upstream_throttle_backoff_seconds

        async def turn() -> None:
            while (wait := await slots.submit_turn(account, model, task_id)) > 0:
                await asyncio.sleep(wait)
            metrics.upstream_account_submit(account.name)

        async def throttled(seconds: float) -> None:
            metrics.upstream_account_throttled(account.name)
            await slots.rest(account.name, max(seconds, rest_at_least))

        return AccountUse(account.name, turn, throttled)

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
        away = RedisAway(self._settings, "lease renewals wait for it")  # no backoff: leases
        while True:
            health.tick(health.LEASES)
            await asyncio.sleep(interval)
            try:
                held = sorted(self._held)
                lost = await store.renew(held)  # one that ended meanwhile is not in it
                if held:  # else Redis was not asked
                    away.answered()
            except redis.RedisError as exc:
                if not away.failed(exc):
                    log.warning("could not renew leases: %s", exc)
                continue
            if lost:
                log.warning("lost the lease on %s: another worker has it now", ", ".join(lost))

    async def _claim_all(
        self, store: AsyncWorkerTaskStore, taken: list[Taken]
    ) -> list[tuple[str, Claim, str]]:
        """Claim the tasks just taken, together (one round trip) and before the next take:
        a task taken starts (its lease, its scheduled time) at once, so what starts ahead
        of a newcomer's task is only what was fed before it."""
        task_ids, accounts = [], {}
        for message in taken:
            try:
                task_id = task_id_of(message.message)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                log.error("dropping a message that is not a synthgate task: %s", exc)
                continue
            task_ids.append(task_id)
            accounts[task_id] = message.account
        claimed = []
        for task_id, reply in zip(task_ids, await store.claim_many(task_ids), strict=True):
            if isinstance(reply, Exception):
                # Redis failed, or the record is unreadable: the reaper puts the task back
                # (and fails it once it has used its attempts).
                log.warning("task %s not claimed: %s", task_id, reply)
            elif reply is None or reply.request is None:
                log_not_runnable(task_id, reply)
            else:
                self._held.add(task_id)
                claimed.append((task_id, reply, accounts[task_id]))
        return claimed

    async def _run(
        self,
        store: AsyncWorkerTaskStore,
        task_id: str,
        claim: Claim,
        upstream_done: Callable[[], None],
        account: AccountUse | None,
    ) -> None:
        """Run a claimed task under ``account``; ``upstream_done`` is called once the
        upstream is done with it (at the latest when it ends here)."""
        assert claim.request is not None
        context = log_context(task_id=task_id, tenant=claim.tenant, model=claim.request.model)
        try:
            with context, metrics.task_running(claim) as started:
                ending = await self._execute(store, task_id, claim, upstream_done, account)
                if not await store.finish(task_id, *ending):
                    log.warning("task %s: another worker took it over", task_id)
                    return
                report_finished(task_id, claim, ending, started)
        except redis.RedisError as exc:  # the lease or the reaper gives the task another go
            log.warning("task %s interrupted by Redis: %s", task_id, exc)
        finally:
            upstream_done()
            self._held.discard(task_id)

    async def _execute(
        self,
        store: AsyncWorkerTaskStore,
        task_id: str,
        claim: Claim,
        upstream_done: Callable[[], None],
        account: AccountUse | None,
    ) -> Verdict:
        progress = _Progress(store, task_id)
        try:
            made = await self._backend.make(claim, store.annotate, progress, upstream_done, account)
            plan = plan_images(task_id, claim, made)
            if plan.objects:  # storage clients block: off the loop
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._runtime.uploader.put_all, plan.objects)
            # No mark_stored here: the finish follows at once and records the images, and
            # a worker taking over a task that died in between copies them again from the
            # upstream (its results outlive the task by a day), which costs a download,
            # where the GPU pool's marks save minutes of denoising.
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return failure_verdict(task_id, exc)
        finally:
            progress.close()
        return verdict(plan.results)


def _once(*calls: Callable[[], None]) -> Callable[[], None]:
    """``calls``, which run the first time only."""
    called = False

    def once() -> None:
        nonlocal called
        if not called:
            called = True
            for call in calls:
                call()

    return once


def _released(freeing: asyncio.Future[None]) -> None:
    if not freeing.cancelled() and freeing.exception() is not None:
        # The task's final status frees the slot anyway.
        log.warning("account slot not released early: %s", freeing.exception())


class _Progress:
    """Records each new upstream status as rough progress.

    The upstream's SUCCEEDED (images made, ours still to copy) is written only when the
    copy takes longer than :data:`_COPY_GRACE_SECONDS`: the finish, which sets 100,
    usually follows within milliseconds, and a Redis call per task for a value no one
    sees was the worker's largest single cost after the HTTP requests.
    """

    def __init__(self, store: AsyncWorkerTaskStore, task_id: str) -> None:
        self._store = store
        self._task_id = task_id
        self._seen: set[str] = set()
        self._writes: set[asyncio.Task[bool]] = set()
        self._later: asyncio.TimerHandle | None = None

    def __call__(self, status: str) -> None:
        if status in self._seen or status not in UPSTREAM_PROGRESS:
            return
        self._seen.add(status)
        value = UPSTREAM_PROGRESS[status]
        if status == "SUCCEEDED":
            loop = asyncio.get_running_loop()
            self._later = loop.call_later(_COPY_GRACE_SECONDS, self._write, value)
        else:
            self._write(value)

    def close(self) -> None:
        """The task is done with: a SUCCEEDED write not due yet is not needed."""
        if self._later is not None:
            self._later.cancel()

    def _write(self, value: int) -> None:
        write = asyncio.ensure_future(self._store.raise_progress(self._task_id, value))
        self._writes.add(write)  # held until done: the loop keeps only weak references
        write.add_done_callback(_progress_written)
        write.add_done_callback(self._writes.discard)


def _progress_written(write: asyncio.Task[bool]) -> None:
    if not write.cancelled() and write.exception() is not None:
        log.warning("progress not recorded: %s", write.exception())


def run_upstream_worker(settings: Settings, hostname: str) -> None:
    """``synthgate worker`` for the upstream pools: the consumer, with the heartbeat and the
    main process's services (see :mod:`workers.services`) around it."""
    pools = served_queues(settings)
    runtime = get_runtime(settings)
    heartbeat = Heartbeat(
        redis_connect.sync_client(settings), pools, hostname, settings.worker_heartbeat_seconds
    )
    services: list[Service] = [heartbeat, *worker_services(settings, pools)]
    health.expect(health.CONSUMER)
    for service in services:
        service.start()
    log.info("worker ready for %s", ", ".join(pools))
    try:
        UpstreamWorker(settings, runtime, pools).run()
    finally:
        for service in reversed(services):
            service.stop()
        log.info("upstream worker stopped")
