"""The end-to-end tests' stacks: the HTTP client of the local stack, the upstream, S3 and
webhook stacks, gateways without a worker, and the console's gateway and browser. Every test
here is ``e2e`` and ``slow``: each drives live gateway and worker processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures.browser import Console, start_chromium
from fixtures.markers import mark_folder
from fixtures.processes import RedisServer, running_redis
from fixtures.s3 import MotoServer, s3_env
from fixtures.simulator import UPSTREAM_KEY, SimulatorProcess, account_json
from fixtures.stack import SD_MODELS, Gateways, Stack, start_gateways, start_stack
from fixtures.webhooks import HookStack, start_hook_stack
from selenium.webdriver.remote.webdriver import WebDriver

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_folder(items, HERE, pytest.mark.e2e, pytest.mark.slow)


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client of the local stack's gateway, with the stack's own key (async on)."""
    with httpx.Client(base_url=stack.api, headers=stack.headers(), timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    """Two gateway processes sharing a Redis of their own (no worker: tasks stay PENDING),
    with the admin API on."""
    with (
        running_redis(tmp_path_factory.mktemp("twin-redis")) as redis,
        start_gateways(redis, tmp_path_factory.mktemp("twin"), 2, {}) as gateways,
    ):
        yield gateways


@pytest.fixture(scope="session")
def upstream_stack(
    redis_server: RedisServer,
    simulator: SimulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """Gateway + one upstream worker; every model routed to the simulator."""
    env = {
        "SYNTHGATE_ROUTES": json.dumps(dict.fromkeys(SD_MODELS, "upstream")),
        "SYNTHGATE_UPSTREAM_BASE_URL": simulator.api,
        "SYNTHGATE_UPSTREAM_ACCOUNTS": account_json(UPSTREAM_KEY),
        "SYNTHGATE_UPSTREAM_RESULT_HOSTS": "127.0.0.1",
        "SYNTHGATE_UPSTREAM_DEADLINE_SECONDS": "8",
        "SYNTHGATE_UPSTREAM_REQUEST_TIMEOUT_SECONDS": "2",
        "SYNTHGATE_UPSTREAM_RETRY_MAX_SECONDS": "0.5",
        # A 429 rests the account for its Retry-After, at least this: the default 1 s would
        # make the 429 storm's 8 tasks a race with their 8 s deadline on a loaded machine.
        "SYNTHGATE_UPSTREAM_THROTTLE_BACKOFF_SECONDS": "0.1",
        "SYNTHGATE_UPSTREAM_POLL_INITIAL_SECONDS": "0.3",
        "SYNTHGATE_UPSTREAM_POLL_MAX_SECONDS": "0.5",
        "SYNTHGATE_UPSTREAM_RESULT_MAX_BYTES": str(4 * 1024 * 1024),
        "SYNTHGATE_UPSTREAM_MAX_INFLIGHT": "32",
    }
    with start_stack(redis_server, tmp_path_factory.mktemp("up"), env, ["upstream"]) as running:
        yield running


@pytest.fixture
def upstream(upstream_stack: Stack, simulator: SimulatorProcess) -> Iterator[Stack]:
    """The upstream stack, with the simulator's faults reset after the test."""
    yield upstream_stack
    simulator.reset()


# Small retry budget for the S3 stack: 6 retries, backoff 0.4 s doubling to 1.6 s, with
# equal jitter: an outage shorter than 3.8 s is always ridden out (time enough to restart
# moto on a busy machine), one longer than 7.6 s never.
S3_RETRY_ENV = {
    "SYNTHGATE_STORAGE_RETRIES": "6",
    "SYNTHGATE_STORAGE_BACKOFF_SECONDS": "0.4",
    "SYNTHGATE_STORAGE_BACKOFF_MAX_SECONDS": "1.6",
    "SYNTHGATE_STORAGE_TIMEOUT_SECONDS": "1",
}


@pytest.fixture(scope="session")
def s3_stack(
    moto_server: MotoServer, demo_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Gateway + an SD1.5 worker storing in moto, on a Redis of its own (so that the local
    stack's worker, which serves the same queues, never takes its tasks)."""
    redis = RedisServer(tmp_path_factory.mktemp("s3-redis"))
    redis.start()
    env = {
        **s3_env(moto_server),
        **S3_RETRY_ENV,
        "SYNTHGATE_DEMO_WEIGHTS_DIR": str(demo_weights_dir),
    }
    try:
        with start_stack(redis, tmp_path_factory.mktemp("s3"), env, ["gpu.sd15"]) as running:
            yield running
    finally:
        redis.stop()


@pytest.fixture(scope="session")
def hook_stack(
    demo_weights_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HookStack]:
    """Gateway (admin API on) + an SD1.5 worker delivering webhooks within a second, on a
    Redis of their own, and a webhook receiver on 127.0.0.1."""
    with start_hook_stack(tmp_path_factory.mktemp("hooks"), demo_weights_dir) as running:
        yield running


@pytest.fixture(scope="session")
def idle_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    """One gateway on a Redis of its own with no worker (its tasks stay PENDING), whose task
    event streams live 1.5 s with a heartbeat every 0.3 s and whose synchronous OpenAI
    calls wait 1 s."""
    env = {
        "SYNTHGATE_EVENTS_MAX_SECONDS": "1.5",
        "SYNTHGATE_EVENTS_HEARTBEAT_SECONDS": "0.3",
        "SYNTHGATE_OPENAI_WAIT_SECONDS": "1",
    }
    with (
        running_redis(tmp_path_factory.mktemp("idle-redis")) as redis,
        start_gateways(redis, tmp_path_factory.mktemp("idle"), 1, env) as gateways,
    ):
        yield gateways


@pytest.fixture(scope="session")
def console_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    """A gateway with the admin API on, beside the local stack's: on the stack's Redis and
    storage folder, so the stack's worker makes its tasks and the dev key works there."""
    env = {"SYNTHGATE_STORAGE_DIR": str(stack.storage_dir)}
    workdir = tmp_path_factory.mktemp("console")
    with start_gateways(stack.redis, workdir, 1, env) as gateways:
        yield gateways


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium, one session per test module (skipped where it cannot start)."""
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def console_page(browser: WebDriver, console_gateway: Gateways) -> Console:
    """The console of ``console_gateway`` in the module's browser."""
    page = Console(browser, console_gateway.urls[0])
    page.open()
    return page


@pytest.fixture
def console(console_page: Console) -> Iterator[Console]:
    """The console page (loaded again if a test took the browser elsewhere), found
    unbroken after the test: no policy violation, no script error in the browser's log."""
    if not console_page.driver.current_url.startswith(console_page.base_url):
        console_page.open()
    yield console_page
    assert console_page.problems() == []
