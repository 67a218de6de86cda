"""A no-op pool for the pickup benchmark: a real Celery worker whose backend makes nothing.

Everything but the image making is the worker's own code: the Celery app and broker
settings (``taskcore.celery_queue``), the ``synthgate.generate`` task body
(``workers.generate.run_generate``: claim through ``WorkerTaskStore.claim`` with its lease,
store, finish through ``WorkerTaskStore.finish``) and the worker runtime (status store
client, local storage). The backend answers each image with a 1x1 PNG at once, so a
task is SUCCEEDED the moment it is claimed and stored, and the time from submit to claim
(``scheduled_time``) is the queue path's alone.

    SYNTHGATE_REDIS_URL=redis://127.0.0.1:6379/0 SYNTHGATE_STORAGE_DIR=/tmp/noop \\
        .venv/bin/python bench/noop_pool.py bench.noop

A threads pool of 8 takes the tasks, so the pool keeps up with any submit rate the
gateway reaches on a small machine.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from simulator.png import solid_png  # noqa: E402
from taskcore.celery_queue import GENERATE_TASK, create_celery  # noqa: E402
from taskcore.contract import ImageOutcome  # noqa: E402
from taskcore.logs import configure_logging  # noqa: E402
from taskcore.settings import Settings  # noqa: E402
from taskcore.store.claims import Claim  # noqa: E402
from workers.generate import run_generate  # noqa: E402
from workers.runtime import build_runtime  # noqa: E402


class NoopBackend:
    """Answers every image of a task at once with the same 1x1 PNG."""

    def generate(self, claim: Claim) -> list[ImageOutcome]:
        assert claim.request is not None
        png = solid_png(1, 1, (0, 0, 0))
        return [ImageOutcome(index, png=png) for index in range(claim.request.n)]


def main(pool: str) -> None:
    settings = Settings.from_env()
    configure_logging(settings)
    runtime = build_runtime(settings, [])
    runtime.backends[pool] = NoopBackend()
    app = create_celery(settings)

    @app.task(name=GENERATE_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
    def generate(task_id: str) -> None:
        run_generate(task_id, runtime)

    app.worker_main(
        [
            "worker",
            "--queues",
            pool,
            "--pool",
            "threads",
            "--concurrency",
            "8",
            "--prefetch-multiplier",
            "1",
            "--hostname",
            f"noop@{socket.gethostname()}",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench.noop")
