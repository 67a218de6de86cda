"""What a worker process holds: its status-store client, storage and one backend per pool.

Built once per worker process (after the fork, so no connection or model is
shared across processes) and kept in an explicit process-level slot.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from taskcore import redis_connect
from taskcore.catalog import Catalog, ModelSpec, is_upstream_pool
from taskcore.contract import ImageOutcome
from taskcore.settings import Settings
from taskcore.store.claims import Claim, LeaseTerms
from taskcore.store.replicas import ReplicaWait
from taskcore.store.worker import WorkerTaskStore
from workers import metrics
from workers.backends import Backend
from workers.backends.diffusion import DiffusersBackend, StepHook
from workers.leases import LeaseKeeper
from workers.progress import ProgressRecorder
from workers.storage import Storage, build_storage
from workers.storage.uploads import Backoff, Uploader

log = logging.getLogger("synthgate.worker")


def served_queues(settings: Settings) -> list[str]:
    """The pools this worker consumes: ``SYNTHGATE_WORKER_QUEUES``, or every local pool.
    ``upstream`` stands for every upstream pool of the catalog."""
    if not settings.worker_queues.strip():
        return list(settings.catalog.local_pools())
    queues: list[str] = []
    for name in (q.strip() for q in settings.worker_queues.split(",")):
        if name == UPSTREAM:
            queues += [q for q in settings.catalog.upstream_pools() if q not in queues]
        elif name and name not in queues:
            queues.append(name)
    return queues


UPSTREAM = "upstream"  # in SYNTHGATE_WORKER_QUEUES: every upstream pool


def pipeline_of(spec: ModelSpec) -> str:
    """The diffusers backend's pipeline for a local model: its family's, or its own when the
    catalog gives it weights of its own."""
    return spec.name if spec.weights is not None else spec.family


class LocalBackend:
    """The diffusers backend, fed claimed tasks of the local GPU pools."""

    def __init__(
        self,
        diffusers: DiffusersBackend,
        catalog: Catalog,
        progress: ProgressRecorder | None = None,
    ) -> None:
        self.diffusers = diffusers
        self.catalog = catalog
        self.progress = progress

    def generate(self, claim: Claim) -> list[ImageOutcome]:
        assert claim.request is not None
        model = claim.request.model
        missing = [i for i in range(claim.request.n) if i not in claim.stored]
        return self.diffusers.generate(
            pipeline_of(self.catalog[model]),
            claim.request,
            on_step=self._on_step(claim),
            indexes=missing,
        )

    def generate_batch(self, claims: Sequence[Claim]) -> list[list[ImageOutcome]]:
        """Tasks of one model, size and steps (none with images stored before) in one
        pipeline call; each task's outcomes, as :meth:`generate` gives them."""
        requests = [claim.request for claim in claims if claim.request is not None]
        if len(requests) != len(claims) or any(claim.stored for claim in claims):
            raise ValueError("a batch takes claimed tasks with no image stored before")
        progress = [self._progress(claim) for claim in claims]
        return self.diffusers.generate_batch(
            pipeline_of(self.catalog[requests[0].model]),
            requests,
            on_step=_each(metrics.StepTimer(requests[0].model), *progress),
            task_steps=[self._on_step(claim) for claim in claims],
        )

    def _on_step(self, claim: Claim) -> StepHook:
        """The step timer's metrics, and the task's progress when it is recorded."""
        assert claim.request is not None
        return _each(metrics.StepTimer(claim.request.model), self._progress(claim))

    def _progress(self, claim: Claim) -> StepHook | None:
        return None if self.progress is None else self.progress.steps(claim.task_id)

    def preload(self, queue: str) -> None:
        """Load the pipelines of ``queue``'s models now, not in its first task."""
        _route_library_logs()  # before loading: diffusers and transformers log on import
        specs = [s for s in self.catalog.models.values() if s.local and s.pool == queue]
        started = time.monotonic()
        for done, spec in enumerate(specs, 1):
            log.info(
                "pool %s: loading the %s pipeline of %s (%d of %d)",
                queue,
                spec.family,
                spec.name,
                done,
                len(specs),
            )
            self.diffusers.load(pipeline_of(spec))
        log.info(
            "pool %s: %d pipelines ready in %.1fs", queue, len(specs), time.monotonic() - started
        )


def _each(*hooks: StepHook | None) -> StepHook:
    """One step hook that calls each of ``hooks``."""
    called = [hook for hook in hooks if hook is not None]

    def hook(done: int, total: int) -> None:
        for each in called:
            each(done, total)

    return hook


def _route_library_logs() -> None:
    """diffusers and transformers write to stderr through handlers of their own, and draw
    progress bars there while loading; send their records to the root logger instead, so
    they come out in synthgate's log format, and draw no bars."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_default_handler()
        library.enable_propagation()
        library.disable_progress_bar()


@dataclass
class WorkerRuntime:
    settings: Settings
    store: WorkerTaskStore
    storage: Storage
    backends: dict[str, Backend] = field(default_factory=dict)
    uploader: Uploader = field(init=False)
    leases: LeaseKeeper = field(init=False)

    def __post_init__(self) -> None:
        self.leases = LeaseKeeper(self.store, self.settings.lease_seconds / 4)
        self.uploader = Uploader(
            self.storage,
            Backoff.from_settings(self.settings),
            self.settings.storage_upload_concurrency,
        )

    def preload(self) -> None:
        for pool, backend in self.backends.items():
            if isinstance(backend, LocalBackend):
                backend.preload(pool)

    def backend_for(self, pool: str) -> Backend:
        backend = self.backends.get(pool)
        if backend is None:
            raise LookupError(f"this worker does not serve the {pool!r} pool")
        return backend


def build_runtime(settings: Settings, queues: list[str]) -> WorkerRuntime:
    # A bounded pool: hundreds of upstream threads wait for a connection, not open hundreds.
    client = redis_connect.sync_client(settings, max_connections=64, wait_for_connection=30)
    lease = LeaseTerms(
        worker=f"{socket.gethostname()}:{os.getpid()}",
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
    )
    store = WorkerTaskStore(
        client,
        settings.task_ttl_seconds,
        feed_depth=settings.feed_depth,
        lease=lease,
        replicas=ReplicaWait.from_settings(settings),
    )
    runtime = WorkerRuntime(settings, store, build_storage(settings))
    progress = ProgressRecorder(client, lease.worker, settings.progress_interval_seconds)
    catalog = settings.catalog
    local = [q for q in queues if not is_upstream_pool(q)]
    if local:
        diffusers = DiffusersBackend.from_settings(settings)
        runtime.backends.update(
            {queue: LocalBackend(diffusers, catalog, progress) for queue in local}
        )
    upstream = [q for q in queues if is_upstream_pool(q)]
    if upstream:
        from workers.backends.upstream import UpstreamBackend

        backend = UpstreamBackend(settings, store, progress)
        runtime.backends.update({queue: backend for queue in upstream})
    return runtime


_RUNTIME: WorkerRuntime | None = None  # process-level: one per worker process
_RUNTIME_LOCK = threading.Lock()  # built once, whichever thread asks first


def get_runtime(settings: Settings) -> WorkerRuntime:
    """This process's runtime, built on first use for the pools it serves."""
    global _RUNTIME
    with _RUNTIME_LOCK:
        if _RUNTIME is None:
            _RUNTIME = build_runtime(settings, served_queues(settings))
        return _RUNTIME
