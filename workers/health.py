"""A worker's liveness and readiness, answered on its metrics port (``/livez``, ``/readyz``).

A worker is alive while its loops turn, not merely while its process exists. Each loop
and thread that must keep turning *ticks*: the consumer loop (Celery's event loop in a
GPU worker's main process, a periodic task on the upstream worker's asyncio loop), the
lease-renewal thread of each process that runs tasks, the Redis heartbeat, upkeep and
webhook delivery. A tick sets the modification time of a small file, named for the
beat and the process, in a folder private to this worker (under its metrics folder) to
the monotonic clock, which all processes of the machine share: one system call, atomic,
and readable from the main process whichever prefork child wrote it. A GPU task in
progress is a file too (created at its start, removed at its end), so a pipeline call
that hangs forever while its lease thread keeps renewing still fails liveness once it
runs past the task deadline by a margin.

Readiness is a set of marks: ``consumer`` (the consumer is connected to the broker,
or the upstream worker to Redis) and ``pipelines`` (a GPU process has loaded and warmed
its models), each expected from as many processes as the worker runs.

Without a metrics port nothing is recorded: :func:`configure` was never called, and
every tick is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskcore.settings import Settings

LOOP = "loop"  # the consumer loop, in the worker's main process
LEASES = "leases"  # a lease-renewal thread (or task), in each process that runs tasks
HEARTBEAT = "heartbeat"  # the Redis heartbeat (workers/heartbeat.py)
UPKEEP = "upkeep"  # feeding and reaping (workers/upkeep.py)
WEBHOOKS = "webhooks"  # webhook delivery (workers/webhook_delivery.py)
SERVICES = (HEARTBEAT, UPKEEP, WEBHOOKS)

CONSUMER = "consumer"  # readiness: connected to the broker / Redis
PIPELINES = "pipelines"  # readiness: a GPU process's pipelines are loaded and warm

_BEAT, _READY, _TASK, _EXPECT = "beat", "ready", "task", "expect"

# Process-level: set in the worker's main process before it forks its pool, so its
# children inherit it; None (no metrics port) makes every call below a no-op.
_FOLDER: Path | None = None


def configure(folder: Path | None) -> None:
    """Record this worker's ticks and marks in ``folder`` (None: stop recording)."""
    global _FOLDER
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    _FOLDER = folder


def tick(beat: str) -> None:
    """``beat`` turned just now, in this process."""
    _stamp(_BEAT, beat, time.monotonic_ns())


def expect(what: str, processes: int = 1) -> None:
    """Readiness needs mark ``what`` from ``processes`` processes of this worker."""
    _stamp(_EXPECT, what, time.monotonic_ns(), content=str(processes))


def mark_ready(what: str) -> None:
    _stamp(_READY, what, time.monotonic_ns())


def clear_ready(what: str) -> None:
    if _FOLDER is not None:
        with contextlib.suppress(OSError):
            (_FOLDER / _name(_READY, what, os.getpid())).unlink()


@contextlib.contextmanager
def task_running(task_id: str) -> Iterator[None]:
    """A task runs in this process for the block: its age is checked against its limit."""
    _stamp(_TASK, "running", time.monotonic_ns(), content=task_id)
    try:
        yield
    finally:
        if _FOLDER is not None:
            with contextlib.suppress(OSError):
                (_FOLDER / _name(_TASK, "running", os.getpid())).unlink()


def forget_process(pid: int) -> None:
    """Drop what process ``pid`` recorded (it exited)."""
    if _FOLDER is None:
        return
    for path in _FOLDER.glob(f"*.{pid}"):
        with contextlib.suppress(OSError):
            path.unlink()


async def tick_forever(beat: str, interval: float) -> None:
    """Tick ``beat`` every ``interval`` seconds from the running event loop: the ticks stop
    when the loop stops turning (a coroutine that blocks it, a stuck callback)."""
    while True:
        tick(beat)
        await asyncio.sleep(interval)


def _name(kind: str, what: str, pid: int) -> str:
    return f"{kind}.{what}.{pid}"


def _stamp(kind: str, what: str, monotonic_ns: int, content: str = "") -> None:
    if _FOLDER is None:
        return
    path = _FOLDER / _name(kind, what, os.getpid())
    try:
        if content or not path.exists():
            path.write_text(content)
        os.utime(path, ns=(monotonic_ns, monotonic_ns))
    except OSError:  # the folder went away (the worker is exiting): nothing to report to
        pass


@dataclass(frozen=True)
class Bounds:
    """How long each beat may go without a tick, and a running task past its start."""

    beats: dict[str, float]
    task_seconds: float
    loop_interval: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        """The configured bounds; a bound set to 0 is derived from the intervals its beat
        ticks at, with room for a slow Redis call in between."""
        loop = settings.worker_loop_stall_seconds or max(
            30.0, 6 * settings.worker_heartbeat_seconds
        )
        leases = settings.worker_lease_stall_seconds or 2 * settings.lease_seconds
        return cls(
            beats={
                LOOP: loop,
                LEASES: leases,
                HEARTBEAT: loop + settings.worker_heartbeat_seconds,
                UPKEEP: loop + settings.feed_interval_seconds + settings.reap_interval_seconds,
                WEBHOOKS: loop + settings.webhook_poll_seconds,
            },
            task_seconds=settings.task_deadline_seconds + settings.worker_task_overrun_seconds,
            # The loop ticks often enough that a bound is several missed ticks.
            loop_interval=min(settings.worker_heartbeat_seconds, loop / 6),
        )


@dataclass
class _Entry:
    kind: str
    what: str
    pid: int
    at_ns: int
    path: Path


@dataclass
class HealthBoard:
    """Reads the folder's ticks and marks (in the main process) and judges them."""

    folder: Path
    bounds: Bounds

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Whether every loop and thread ticked within its bound, and the ages seen."""
        now = time.monotonic_ns()
        entries = self._entries()
        ages: dict[str, float | None] = {}
        problems: list[str] = []
        for beat, bound in self.bounds.beats.items():
            ticks = [e for e in entries if e.kind == _BEAT and e.what == beat]
            # The oldest: one stalled lease thread among healthy ones is a stall.
            age = max((_seconds(now - e.at_ns) for e in ticks), default=None)
            ages[beat] = age
            if beat == LOOP and not self._marked(entries, CONSUMER):
                continue  # starting, or reconnecting to the broker in Celery's own retry loop
            if age is not None and age > bound:
                pids = ", ".join(str(e.pid) for e in ticks if _seconds(now - e.at_ns) > bound)
                problems.append(f"{beat} last ticked {age:.1f}s ago (bound {bound:g}s, pid {pids})")
        tasks = [e for e in entries if e.kind == _TASK]
        task_age = max((_seconds(now - e.at_ns) for e in tasks), default=None)
        if task_age is not None and task_age > self.bounds.task_seconds:
            problems.append(
                f"a task has run {task_age:.0f}s, past its limit of {self.bounds.task_seconds:g}s"
            )
        return not problems, {
            "ok": not problems,
            "loop_tick_age_seconds": ages.get(LOOP),
            "lease_renewal_age_seconds": ages.get(LEASES),
            "heartbeat_age_seconds": ages.get(HEARTBEAT),
            "services": {name: ages.get(name) for name in (UPKEEP, WEBHOOKS)},
            "task_age_seconds": task_age,
            "task_limit_seconds": self.bounds.task_seconds,
            "bounds_seconds": self.bounds.beats,
            "problems": problems,
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether every expected mark is there, from enough processes; else the reasons."""
        entries = self._entries()
        expected = {e.what: _count(e.path) for e in entries if e.kind == _EXPECT}
        marks = {
            what: sum(e.kind == _READY and e.what == what for e in entries) for what in expected
        }
        reasons = [
            _waiting_for(what, marks[what], wanted)
            for what, wanted in expected.items()
            if marks[what] < wanted
        ]
        if not expected:
            reasons = ["the worker is starting"]
        return not reasons, {
            "ok": not reasons,
            "ready": {what: f"{marks[what]}/{n}" for what, n in expected.items()},
            "reason": "; ".join(reasons),
        }

    def _marked(self, entries: list[_Entry], what: str) -> bool:
        return any(e.kind == _READY and e.what == what for e in entries)

    def _entries(self) -> list[_Entry]:
        """What live processes recorded; a dead process's files are removed."""
        entries: list[_Entry] = []
        try:
            paths = list(self.folder.iterdir())
        except FileNotFoundError:  # the worker is exiting: its folder went first
            return entries
        for path in paths:
            kind, _, rest = path.name.partition(".")
            what, _, pid_text = rest.rpartition(".")
            if not pid_text.isdigit() or not what:
                continue
            pid = int(pid_text)
            if not _alive(pid):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            with contextlib.suppress(FileNotFoundError):  # a task that just ended
                entries.append(_Entry(kind, what, pid, path.stat().st_mtime_ns, path))
        return entries


def _waiting_for(what: str, have: int, wanted: int) -> str:
    if what == PIPELINES:
        return f"pipelines loaded and warm in {have} of {wanted} processes"
    if what == CONSUMER:
        return "the consumer is not connected yet"
    return f"{what}: {have} of {wanted}"


def _count(path: Path) -> int:
    try:
        return int(path.read_text() or 1)
    except (OSError, ValueError):
        return 1


def _seconds(ns: int) -> float:
    return round(ns / 1e9, 3)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
