"""Every Prometheus metric a worker records, and the few functions that record them.

Labels are bounded: pools, models and backends come from the catalog, statuses from
:class:`TaskStatus`, and error codes pass through :func:`bounded_code` (an upstream may
answer any string). Never a task id, tenant key or prompt.

In a worker process started by ``synthgate worker`` with a metrics port, prometheus_client
runs in multiprocess mode (see :mod:`workers.metrics_http`), so these objects write to
files that the main process sums up; elsewhere (tests) they live in process memory.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

from taskcore.catalog import is_upstream_pool
from taskcore.records import TaskStatus
from taskcore.store.claims import Claim

_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_RUN_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300, 600, 900, 1800)
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 5, 10)
_REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

TASKS_STARTED = Counter(
    "synthgate_worker_tasks_started_total",
    "Tasks a worker started running (redeliveries included), by pool and model.",
    ["pool", "model"],
)
TASKS_FINISHED = Counter(
    "synthgate_worker_tasks_finished_total",
    "Tasks that reached a final status, by pool, model, status and error code (none on success).",
    ["pool", "model", "status", "code"],
)
TASKS_RUNNING = Gauge(
    "synthgate_worker_tasks_running",
    "Tasks running now, by pool.",
    ["pool"],
    multiprocess_mode="livesum",
)
IMAGES = Counter(
    "synthgate_worker_images_total",
    "Images of finished tasks by outcome (succeeded, failed) and error code (none on success).",
    ["model", "backend", "outcome", "code"],
)
QUEUE_WAIT = Histogram(
    "synthgate_worker_queue_wait_seconds",
    "From submit to the first start of a task, by pool, model and backend.",
    ["pool", "model", "backend"],
    buckets=_WAIT_BUCKETS,
)
RUN_TIME = Histogram(
    "synthgate_worker_task_run_seconds",
    "From start to final status (generation and storage), by model and backend.",
    ["model", "backend"],
    buckets=_RUN_BUCKETS,
)
DIFFUSION_STEP = Histogram(
    "synthgate_worker_diffusion_step_seconds",
    "One denoising step of a (batched) pipeline call, after the first step, by model.",
    ["model"],
    buckets=_STEP_BUCKETS,
)
BATCH_TASKS = Histogram(
    "synthgate_worker_batch_tasks",
    "Tasks made together in one cross-request batch (a task alone is not counted), by pool "
    "and model.",
    ["pool", "model"],
    buckets=(2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
UPSTREAM_REQUEST = Histogram(
    "synthgate_worker_upstream_request_seconds",
    "One HTTP request to the upstream service, by operation (submit, poll, download).",
    ["op"],
    buckets=_REQUEST_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "synthgate_worker_upstream_errors_total",
    "Upstream requests that failed, by operation and code (HTTP status, transport error, "
    "malformed, rejected).",
    ["op", "code"],
)
UPSTREAM_ACCOUNT_SUBMITS = Counter(
    "synthgate_worker_upstream_account_submits_total",
    "Submits sent to DashScope, by account (each waited for the account's turn).",
    ["account"],
)
UPSTREAM_ACCOUNT_THROTTLED = Counter(
    "synthgate_worker_upstream_account_throttled_total",
    "429 answers DashScope gave an account; each starts the account's rest.",
    ["account"],
)
UPLOAD_TIME = Histogram(
    "synthgate_worker_storage_upload_seconds",
    "One attempt to store an image, by storage (local, s3).",
    ["storage"],
    buckets=_REQUEST_BUCKETS,
)
UPLOAD_ERRORS = Counter(
    "synthgate_worker_storage_errors_total",
    "Failed attempts to store an image, by storage and kind (transient, permanent).",
    ["storage", "kind"],
)
WEBHOOK_ATTEMPTS = Counter(
    "synthgate_worker_webhook_attempts_total",
    "Webhook delivery attempts by outcome: delivered (2xx), failed (tried again unless it was "
    "the last attempt), refused (the target broke the callback rules).",
    ["outcome"],
)

NO_CODE = "none"
OTHER_CODE = "other"
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_CODES = 64
_codes: set[str] = set()  # process-level: the codes seen so far, capped
_codes_lock = threading.Lock()


def bounded_code(code: str) -> str:
    """``code`` as a label value: well-formed and among the first 64 seen, else ``other``."""
    if not code:
        return NO_CODE
    if code in _codes:
        return code
    if not _CODE.fullmatch(code):
        return OTHER_CODE
    with _codes_lock:
        if len(_codes) >= _MAX_CODES:
            return OTHER_CODE
        _codes.add(code)
    return code


def backend_of(pool: str) -> str:
    return "upstream" if is_upstream_pool(pool) else "diffusers"


@contextmanager
def task_running(claim: Claim) -> Iterator[float]:
    """Count a started task and its queue wait (first start only), and count it as running
    until the block ends, however it ends; yields the start time."""
    assert claim.request is not None
    model, backend = claim.request.model, backend_of(claim.pool)
    TASKS_STARTED.labels(claim.pool, model).inc()
    if claim.attempts == 1:  # a redelivery waited for the broker, not in the queue
        wait = max(0.0, (claim.scheduled_ms - claim.submit_ms) / 1000)
        QUEUE_WAIT.labels(claim.pool, model, backend).observe(wait)
    with TASKS_RUNNING.labels(claim.pool).track_inprogress():
        yield time.perf_counter()


def task_finished(
    claim: Claim, status: TaskStatus, code: str, results: list[dict[str, str]], started: float
) -> None:
    """Count the final status, the run time, and each of the task's images by outcome."""
    assert claim.request is not None
    model, backend = claim.request.model, backend_of(claim.pool)
    TASKS_FINISHED.labels(claim.pool, model, status.value, bounded_code(code)).inc()
    RUN_TIME.labels(model, backend).observe(time.perf_counter() - started)
    if not results:  # the task failed as a whole: so did each of its images
        IMAGES.labels(model, backend, "failed", bounded_code(code)).inc(claim.request.n)
        return
    for result in results:
        if "key" in result:
            IMAGES.labels(model, backend, "succeeded", NO_CODE).inc()
        else:
            IMAGES.labels(model, backend, "failed", bounded_code(result.get("code", ""))).inc()


def batch_made(first: Claim, tasks: int) -> None:
    """A batch of ``tasks`` tasks (``first``'s pool and model) goes into one pipeline call."""
    assert first.request is not None
    BATCH_TASKS.labels(first.pool, first.request.model).observe(tasks)


class StepTimer:
    """A diffusers ``on_step`` hook observing the time between consecutive steps.

    The first step of a call is not observed: its time includes encoding the prompt.
    """

    def __init__(self, model: str) -> None:
        self._histogram = DIFFUSION_STEP.labels(model)
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done > 1:
            self._histogram.observe(now - self._last)
        self._last = now


def upstream_request(op: str, seconds: float, outcome: int | str) -> None:
    """One upstream HTTP request: its latency, and an error unless it answered 200."""
    UPSTREAM_REQUEST.labels(op).observe(seconds)
    if outcome != 200:
        UPSTREAM_ERRORS.labels(op, bounded_code(str(outcome))).inc()


def upstream_error(op: str, code: str) -> None:
    """An upstream answer that arrived but could not be used (malformed, rejected)."""
    UPSTREAM_ERRORS.labels(op, code).inc()


def upstream_account_submit(account: str) -> None:
    UPSTREAM_ACCOUNT_SUBMITS.labels(account).inc()


def upstream_account_throttled(account: str) -> None:
    UPSTREAM_ACCOUNT_THROTTLED.labels(account).inc()


def upload_done(storage: str, seconds: float) -> None:
    UPLOAD_TIME.labels(storage).observe(seconds)


def upload_failed(storage: str, seconds: float, transient: bool) -> None:
    UPLOAD_TIME.labels(storage).observe(seconds)
    UPLOAD_ERRORS.labels(storage, "transient" if transient else "permanent").inc()


def webhook_attempt(outcome: str) -> None:
    WEBHOOK_ATTEMPTS.labels(outcome).inc()
