"""The start-up wait and checks of taskcore/redis_startup.py, against private redis-servers
configured the wrong way (an evicting policy, no AOF and no replica) and the right way, a
fake INFO answer for the version (only Redis 7 is installed here), and the outage lines'
cadence."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fixtures.processes import RedisServer, running_redis, wait_until

from taskcore import redis_startup
from taskcore.redis_startup import (
    BACKOFF,
    OutageReport,
    RedisAway,
    StartupWait,
    examine,
    wait_until_usable,
)
from taskcore.settings import Settings

GOOD_INFO = {
    "redis_version": "7.2.4",
    "maxmemory_policy": "noeviction",
    "aof_enabled": 1,
    "connected_slaves": 0,
    "loading": 0,
}


@pytest.fixture(autouse=True)
def fresh_report() -> Iterator[None]:
    """Each test starts with no outage said (the report is process-level)."""
    redis_startup._PROCESS_REPORT.clear()
    yield
    redis_startup._PROCESS_REPORT.clear()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as running:
        yield running


def _settings(url: str) -> Settings:
    return Settings(redis_url=url, redis_connect_timeout_seconds=0.5)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _wait_in_thread(settings: Settings) -> threading.Thread:
    waiting = threading.Thread(target=wait_until_usable, args=(settings, "the test"), daemon=True)
    waiting.start()
    return waiting


def test_redis_6_is_refused_with_a_message_naming_the_version_and_the_fix() -> None:
    verdict = examine({**GOOD_INFO, "redis_version": "6.2.14"})
    [problem] = verdict.problems
    assert "Redis 6.2.14 is too old" in problem and "7.0 or later" in problem
    assert "upgrade" in problem
    assert not examine({**GOOD_INFO, "redis_version": "7.0.0"}).problems
    assert not examine({**GOOD_INFO, "redis_version": "8.0.1"}).problems


def test_a_fake_redis_6_keeps_the_start_up_waiting_with_the_reason() -> None:
    wait = StartupWait(Settings(redis_url="redis://127.0.0.1:1/0"), "the test")
    delay = wait.answered({**GOOD_INFO, "redis_version": "6.0.20"})
    assert delay is not None and 0 < delay <= BACKOFF.max_seconds
    assert "SYNTHGATE_REDIS_URL=redis://127.0.0.1:1/0" in wait.problem
    assert "Redis 6.0.20 is too old" in wait.problem
    assert wait.answered(GOOD_INFO) is None and wait.problem == ""


def test_missing_info_fields_leave_their_checks_undone_with_a_warning() -> None:
    verdict = examine({})
    assert verdict.problems == []
    [warning] = verdict.warnings
    assert "redis_version" in warning and "maxmemory_policy" in warning
    assert "not checked" in warning
    partial = examine({"redis_version": "7.0.15", "connected_slaves": 1})
    assert partial.problems == [] and "maxmemory_policy" in partial.warnings[0]


def test_a_redis_still_loading_its_data_is_waited_for() -> None:
    assert "loading" in examine({**GOOD_INFO, "loading": 1}).problems[0]


def test_an_evicting_redis_is_refused_until_set_to_noeviction(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = server.client()
    client.config_set("maxmemory-policy", "allkeys-lru")
    caplog.set_level(logging.INFO, "synthgate.redis")
    waiting = _wait_in_thread(_settings(server.url))
    wait_until(lambda: bool(_warnings(caplog)), 10, "the refusal")
    [refusal] = _warnings(caplog)
    assert f"SYNTHGATE_REDIS_URL={server.url}" in refusal
    assert "maxmemory-policy is allkeys-lru" in refusal
    assert "CONFIG SET maxmemory-policy noeviction" in refusal
    waiting.join(1.5)
    assert waiting.is_alive()  # it does not start on an evicting Redis
    client.config_set("maxmemory-policy", "noeviction")  # fixed live: no restart needed
    waiting.join(BACKOFF.max_seconds + 2)
    assert not waiting.is_alive()
    assert any("answers (after" in r.getMessage() for r in caplog.records)


def test_no_aof_and_no_replica_gives_a_warning(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "synthgate.redis")
    wait_until_usable(_settings(server.url), "the test")
    [warning] = _warnings(caplog)
    assert "neither the append-only file (appendonly yes) nor a connected replica" in warning


def test_aof_on_gives_no_warning(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    server.client().config_set("appendonly", "yes")
    caplog.set_level(logging.INFO, "synthgate.redis")
    wait_until_usable(_settings(server.url), "the test")
    assert _warnings(caplog) == []
    [line] = [r.getMessage() for r in caplog.records]
    assert "answers: Redis 7" in line and "AOF on" in line
    # Off again: a Redis rewriting its first AOF takes 20 s to honour the SIGTERM of teardown.
    server.client().config_set("appendonly", "no")


def test_a_connected_replica_gives_no_warning(
    server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "replica").mkdir()
    with running_redis(tmp_path / "replica") as replica:
        replica.client().replicaof("127.0.0.1", server.port)
        wait_until(
            lambda: int(server.client().info("replication")["connected_slaves"]) == 1,
            10,
            "the replica",
        )
        caplog.set_level(logging.WARNING, "synthgate.redis")
        wait_until_usable(_settings(server.url), "the test")
        assert _warnings(caplog) == []


def test_waiting_for_an_absent_redis_says_so_once_and_starts_when_it_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    absent = RedisServer(tmp_path)  # a free port, nothing listening yet
    caplog.set_level(logging.INFO, "synthgate.redis")
    waiting = _wait_in_thread(_settings(absent.url))
    wait_until(lambda: bool(_warnings(caplog)), 10, "the line about Redis")
    waiting.join(3)
    assert waiting.is_alive()
    [line] = _warnings(caplog)  # three seconds of retries, one line
    assert line.startswith(f"Redis unreachable at SYNTHGATE_REDIS_URL={absent.url}: ")
    assert "Connection refused" in line and "the test waits for it" in line
    absent.start()
    try:
        waiting.join(BACKOFF.max_seconds + 2)
        assert not waiting.is_alive()
    finally:
        absent.stop()
    assert any("answers (after" in r.getMessage() for r in caplog.records)


def test_outage_lines_come_at_growing_intervals(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    monkeypatch.setattr("taskcore.redis_startup.time.monotonic", lambda: now[0])
    caplog.set_level(logging.WARNING, "synthgate.redis")
    report = OutageReport("SYNTHGATE_REDIS_URL=redis://h:6379/0")
    error = redis.ConnectionError("Connection refused.")
    said_at = []
    for _ in range(700):  # a try a second for 700 s
        before = len(caplog.records)
        report.away(error, "the test waits for it")
        if len(caplog.records) > before:
            said_at.append(now[0] - 1000)
        now[0] += 1
    assert said_at == [0, 10, 30, 70, 150, 310, 610]
    assert "(for 10 s now)" in caplog.records[1].getMessage()
    report.trouble("other", "something else")  # another trouble is said at once
    assert caplog.records[-1].getMessage() == "something else"
    report.over()
    assert "answers again" in caplog.records[-1].getMessage()
    report.over()  # nothing to end: no line
    assert len(caplog.records) == len(said_at) + 2


def test_a_loop_backs_off_only_while_redis_is_away() -> None:
    away = RedisAway(Settings(redis_url="redis://127.0.0.1:1/0"), "the test waits")
    assert away.pause(1.0) == 1.0
    pauses = []
    for _ in range(8):
        assert away.failed(redis.ConnectionError("refused"))
        pauses.append(away.pause(0.1))
    assert pauses[0] < 1.0 and 8.0 <= pauses[-1] <= BACKOFF.max_seconds
    assert not away.failed(redis.ResponseError("OOM"))  # not "away": the caller says it
    away.answered()
    assert away.pause(0.1) == 0.1


def test_backoff_doubles_to_its_cap_with_jitter() -> None:
    for failures, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (40, 10.0)]:
        delays = [BACKOFF.delay(failures) for _ in range(50)]
        assert all(0.8 * ceiling <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
