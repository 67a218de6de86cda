"""Session-wide real components that several folders use: Redis, the demo weights, a live
gateway + worker, the DashScope simulator, an S3 server (moto), and tenants.

Markers (pyproject.toml): a test that uses one of :data:`SLOW_FIXTURES` is ``slow``; the
folder conftests add ``e2e`` (tests/e2e), ``deploy`` (tests/deploy) and ``slow`` (tests/bench,
tests/e2e, the tiny-pipeline tests of tests/workers/backends). ``make test-fast`` runs the rest.

Folders mirror the packages (tests/taskcore, tests/gateway/<concern>, tests/workers, ...) and
have no ``__init__.py``: pytest imports each test module by its file name, so a test file's
name must be unique across all folders.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.markers import mark_users
from fixtures.ordering import longest_first
from fixtures.processes import RedisServer
from fixtures.s3 import AWS_ENV, MotoServer
from fixtures.simulator import UPSTREAM_KEY, SimulatorProcess
from fixtures.stack import LOCAL_POOLS, Stack, start_stack
from fixtures.tenants import register_tenant

# Fixtures that start processes or build pipelines: seconds each, so their users are slow.
SLOW_FIXTURES = frozenset({"demo_weights_dir", "stack", "simulator", "moto_server"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_users(items, SLOW_FIXTURES, pytest.mark.slow)
    longest_first(items)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from workers.backends.demo_weights import build_demo_pipeline

    cache = tmp_path_factory.mktemp("demo-weights")
    for kind in ("sd15", "sdxl"):
        build_demo_pipeline(kind, cache)  # type: ignore[arg-type]
    return cache


@pytest.fixture(scope="session")
def stack(
    redis_server: RedisServer, demo_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Gateway + one worker for the local GPU pools (tiny demo pipelines on the CPU)."""
    env = {"SYNTHGATE_DEMO_WEIGHTS_DIR": str(demo_weights_dir)}
    with start_stack(
        redis_server, tmp_path_factory.mktemp("stack"), env, [",".join(LOCAL_POOLS)]
    ) as running:
        yield running


@pytest.fixture
def new_tenant(redis_server: RedisServer) -> Callable[..., str]:
    """Make a tenant (named, or a fresh random name) with one new key and the given limits
    (``rpm=...``, ``max_concurrent=...``, ...; default: none); returns the key."""

    def make(name: str | None = None, **limits: Any) -> str:
        return register_tenant(redis_server.url, name or "t-" + secrets.token_hex(4), **limits)

    return make


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    sim = SimulatorProcess(
        tmp_path_factory.mktemp("sim") / "simulator.log",
        "--latency",
        "0.3",
        "--api-key",
        UPSTREAM_KEY,
    )
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    server.create_bucket()
    yield server
    server.stop()


@pytest.fixture
def moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """moto, running with the test bucket after the test whatever the test did to it."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    yield moto_server
    moto_server.thaw()
    if not moto_server.answers():
        moto_server.restart()
    moto_server.create_bucket()
