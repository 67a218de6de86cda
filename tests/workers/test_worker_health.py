"""A worker's liveness and readiness bookkeeping (workers/health.py) and the probes its metrics
port answers (workers/metrics_http.py); a real worker's probes are checked in
tests/e2e/test_worker_probes.py."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.processes import free_port, wait_until
from prometheus_client import CollectorRegistry, Counter, make_wsgi_app

from taskcore.settings import Settings
from workers import health
from workers.metrics_http import _serve_forever, worker_http_app

BOUNDS = health.Bounds(
    beats={health.LOOP: 10.0, health.LEASES: 20.0, health.HEARTBEAT: 10.0},
    task_seconds=100.0,
    loop_interval=1.0,
)


@pytest.fixture
def board(tmp_path: Path) -> Iterator[health.HealthBoard]:
    health.configure(tmp_path / "health")
    try:
        yield health.HealthBoard(tmp_path / "health", BOUNDS)
    finally:
        health.configure(None)


def _age(folder: Path, name: str, seconds: float) -> None:
    """Make the file ``name`` look ``seconds`` old on the monotonic clock."""
    then = time.monotonic_ns() - int(seconds * 1e9)
    os.utime(folder / name, ns=(then, then))


def test_fresh_ticks_are_alive_and_report_their_ages(board: health.HealthBoard) -> None:
    health.mark_ready(health.CONSUMER)
    for beat in (health.LOOP, health.LEASES, health.HEARTBEAT):
        health.tick(beat)
    ok, answer = board.liveness()
    assert ok and answer["ok"] and answer["problems"] == []
    for key in ("loop_tick_age_seconds", "lease_renewal_age_seconds", "heartbeat_age_seconds"):
        assert 0 <= answer[key] < 1
    assert answer["task_age_seconds"] is None


def test_a_loop_that_stopped_ticking_fails_liveness(board: health.HealthBoard) -> None:
    health.mark_ready(health.CONSUMER)
    health.tick(health.LOOP)
    _age(board.folder, f"beat.loop.{os.getpid()}", 11)
    ok, answer = board.liveness()
    assert not ok
    assert answer["loop_tick_age_seconds"] > 10
    assert "loop last ticked" in answer["problems"][0]
    health.tick(health.LOOP)  # it turns again
    assert board.liveness()[0]


def test_the_loop_bound_waits_while_the_consumer_is_not_connected(
    board: health.HealthBoard,
) -> None:
    health.tick(health.LOOP)
    _age(board.folder, f"beat.loop.{os.getpid()}", 60)
    assert board.liveness()[0]  # starting, or in Celery's reconnection loop
    health.mark_ready(health.CONSUMER)
    assert not board.liveness()[0]


@contextmanager
def _another_process(folder: Path, record: Callable[[], None]) -> Iterator[int]:
    """A forked process that records into ``folder`` and waits; its pid, for the block."""
    fork = multiprocessing.get_context("fork")
    started, release = fork.Event(), fork.Event()
    child = fork.Process(target=_record_then_wait, args=(folder, record, started, release))
    child.start()
    try:
        assert started.wait(10) and child.pid is not None
        yield child.pid
    finally:
        release.set()
        child.join(10)


def _record_then_wait(folder: Path, record: Callable[[], None], started: Any, release: Any) -> None:
    health.configure(folder)
    record()
    started.set()
    release.wait(30)


def test_one_stalled_lease_thread_among_processes_fails_and_a_dead_ones_files_go(
    board: health.HealthBoard,
) -> None:
    with _another_process(board.folder, partial(health.tick, health.LEASES)) as pid:
        health.tick(health.LEASES)  # this process's lease thread is fine
        _age(board.folder, f"beat.leases.{pid}", 25)
        ok, answer = board.liveness()
        assert not ok
        assert answer["lease_renewal_age_seconds"] >= 25
        assert f"pid {pid}" in answer["problems"][0]
    ok, answer = board.liveness()  # the stalled process is gone: its beat no longer counts
    assert ok, answer
    assert not (board.folder / f"beat.leases.{pid}").exists()


def test_a_task_running_past_its_limit_fails_liveness_and_ends_cleanly(
    board: health.HealthBoard,
) -> None:
    with health.task_running("t-1"):
        assert board.liveness()[1]["task_age_seconds"] < 1
        _age(board.folder, f"task.running.{os.getpid()}", 101)
        ok, answer = board.liveness()
        assert not ok and answer["task_age_seconds"] > 100
        assert "past its limit of 100s" in answer["problems"][0]
    ok, answer = board.liveness()
    assert ok and answer["task_age_seconds"] is None


def test_readiness_waits_for_every_expected_mark(board: health.HealthBoard) -> None:
    ok, answer = board.readiness()
    assert not ok and answer["reason"] == "the worker is starting"
    health.expect(health.CONSUMER)
    health.expect(health.PIPELINES, 2)
    health.mark_ready(health.PIPELINES)
    ok, answer = board.readiness()
    assert not ok
    assert answer["ready"] == {"consumer": "0/1", "pipelines": "1/2"}
    assert "the consumer is not connected yet" in answer["reason"]
    assert "pipelines loaded and warm in 1 of 2 processes" in answer["reason"]

    with _another_process(board.folder, partial(health.mark_ready, health.PIPELINES)):
        health.mark_ready(health.CONSUMER)
        ok, answer = board.readiness()
        assert ok and answer == {
            "ok": True,
            "ready": {"consumer": "1/1", "pipelines": "2/2"},
            "reason": "",
        }
        health.clear_ready(health.CONSUMER)  # the broker connection was lost
        assert not board.readiness()[0]


def test_nothing_is_recorded_without_a_folder(tmp_path: Path) -> None:
    health.configure(tmp_path)
    health.configure(None)  # no metrics port: the worker records nothing
    health.tick(health.LOOP)
    health.mark_ready(health.CONSUMER)
    with health.task_running("t"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_bounds_derive_from_the_intervals_when_unset() -> None:
    derived = health.Bounds.from_settings(Settings(worker_heartbeat_seconds=10, lease_seconds=30))
    assert derived.beats[health.LOOP] == 60
    assert derived.beats[health.LEASES] == 60
    assert derived.task_seconds == 3_600 + 300
    assert derived.loop_interval == 10
    assert health.Bounds.from_settings(Settings()).beats[health.LOOP] == 30
    set_ = health.Bounds.from_settings(
        Settings(
            worker_loop_stall_seconds=4,
            worker_lease_stall_seconds=3,
            worker_task_overrun_seconds=0,
            task_deadline_seconds=60,
        )
    )
    assert (set_.beats[health.LOOP], set_.beats[health.LEASES], set_.task_seconds) == (4, 3, 60)
    assert set_.loop_interval == pytest.approx(4 / 6)


def test_tick_forever_stops_when_its_loop_stops_turning(board: health.HealthBoard) -> None:
    def age() -> float:
        value = board.liveness()[1]["loop_tick_age_seconds"]
        assert value is not None
        return float(value)

    async def scenario() -> None:
        ticker = asyncio.create_task(health.tick_forever(health.LOOP, 0.01))
        await asyncio.sleep(0.05)
        assert age() < 0.05
        time.sleep(0.3)  # blocks the loop, as a stuck coroutine would
        assert age() >= 0.3
        await asyncio.sleep(0.05)
        assert age() < 0.05
        ticker.cancel()

    health.mark_ready(health.CONSUMER)
    asyncio.run(scenario())


def test_the_metrics_port_answers_probes_with_json_and_keeps_serving_metrics(
    board: health.HealthBoard,
) -> None:
    registry = CollectorRegistry()
    Counter("probe_test_things", "things", registry=registry).inc(3)
    port = free_port()
    _serve_forever(port, worker_http_app(make_wsgi_app(registry), board))
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{base}/metrics"), 10, "the metrics server")

    assert "probe_test_things_total 3.0" in httpx.get(f"{base}/metrics").text
    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/json"
    assert ready.json()["reason"] == "the worker is starting"
    health.expect(health.CONSUMER)
    health.mark_ready(health.CONSUMER)
    assert httpx.get(f"{base}/readyz").json()["ok"] is True

    health.tick(health.LOOP)
    live = httpx.get(f"{base}/livez")
    assert live.status_code == 200 and live.json()["ok"] is True
    _age(board.folder, f"beat.loop.{os.getpid()}", 11)
    stalled = httpx.get(f"{base}/livez")
    assert stalled.status_code == 503
    assert stalled.json()["loop_tick_age_seconds"] > 10


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_stopped_process_stalls_its_beat_for_real(board: health.HealthBoard) -> None:
    """A child ticking every 20 ms, then SIGSTOPped: its beat ages, and comes back with
    SIGCONT."""
    fork = multiprocessing.get_context("fork")
    child = fork.Process(target=_tick_every, args=(board.folder, 0.02))
    child.start()
    assert child.pid is not None
    try:
        wait_until(lambda: board.liveness()[1]["lease_renewal_age_seconds"] is not None, 10, "tick")
        os.kill(child.pid, signal.SIGSTOP)
        time.sleep(0.3)
        assert board.liveness()[1]["lease_renewal_age_seconds"] >= 0.3
        os.kill(child.pid, signal.SIGCONT)
        wait_until(
            lambda: board.liveness()[1]["lease_renewal_age_seconds"] < 0.1, 10, "ticks again"
        )
    finally:
        child.kill()
        child.join(10)


def _tick_every(folder: Path, interval: float) -> None:
    health.configure(folder)
    stop = threading.Event()
    while not stop.wait(interval):
        health.tick(health.LEASES)
