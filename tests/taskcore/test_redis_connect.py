"""taskcore.redis_connect and the replica waits, against a real Sentinel setup: a primary
with a password, its replica and three sentinels with a password of their own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fixtures.processes import RedisServer, wait_until
from fixtures.sentinel import MASTER, SentinelSetup, sentinel_setup
from fixtures.tenants import register_tenant, submit_direct
from prometheus_client import REGISTRY
from pydantic import SecretStr

from taskcore import redis_connect, redis_keys
from taskcore.celery_queue import create_celery, generate_message
from taskcore.contract import GenerationRequest
from taskcore.reaper import Reaper, ReaperTerms
from taskcore.records import TaskStatus
from taskcore.settings import Settings
from taskcore.store.async_worker import AsyncWorkerTaskStore
from taskcore.store.claims import Claim, LeaseTerms
from taskcore.store.replicas import ReplicaWait, run_confirmed
from taskcore.store.worker import WorkerTaskStore

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 1, 7.0, 1)
DATA_PASSWORD = "data-secret"
SENTINEL_PASSWORD = "sentinel-secret"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with sentinel_setup(
        tmp_path_factory.mktemp("sentinels"),
        password=DATA_PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
    ) as running:
        yield running


def _settings(setup: SentinelSetup, db: int = 0, **more: object) -> Settings:
    return Settings(
        redis_url=f"redis://:{DATA_PASSWORD}@unused.invalid:1/{db}",
        redis_sentinels=setup.sentinel_list,
        redis_sentinel_master=MASTER,
        redis_sentinel_password=SecretStr(SENTINEL_PASSWORD),
        **more,  # type: ignore[arg-type]
    )


def test_describe_target_names_the_settings_without_passwords(setup: SentinelSetup) -> None:
    plain = Settings(redis_url="redis://:hunter2@redis.example:6380/2")
    assert redis_connect.describe_target(plain) == (
        "SYNTHGATE_REDIS_URL=redis://:***@redis.example:6380/2"
    )
    described = redis_connect.describe_target(_settings(setup))
    assert described == (
        f"SYNTHGATE_REDIS_SENTINELS={setup.sentinel_list} SYNTHGATE_REDIS_SENTINEL_MASTER={MASTER}"
    )
    assert DATA_PASSWORD not in described and SENTINEL_PASSWORD not in described


def test_replicas_to_wait_defaults_to_one_with_sentinels(setup: SentinelSetup) -> None:
    assert Settings().redis_replicas_to_wait == 0
    assert _settings(setup).redis_replicas_to_wait == 1
    assert _settings(setup, redis_min_replicas=0).redis_replicas_to_wait == 0
    assert Settings(redis_min_replicas=2).redis_replicas_to_wait == 2
    with pytest.raises(ValueError, match="SYNTHGATE_REDIS_SENTINEL_MASTER"):
        Settings(redis_sentinels="127.0.0.1:26379")
    with pytest.raises(ValueError, match="host:port"):
        Settings(redis_sentinels="127.0.0.1", redis_sentinel_master="m")


def test_sync_and_async_clients_reach_the_primary_with_the_urls_password_and_database(
    setup: SentinelSetup,
) -> None:
    settings = _settings(setup, db=3)
    key = "connect-" + uuid.uuid4().hex
    redis_connect.sync_client(settings).set(key, "sync")
    primary = setup.primary.client(password=DATA_PASSWORD, db=3)
    assert primary.get(key) == b"sync"

    async def write() -> None:
        client = redis_connect.async_client(settings, max_connections=4, wait_for_connection=1)
        try:
            await asyncio.gather(*(client.incr(key + ":n") for _ in range(20)))
        finally:
            await client.aclose()

    asyncio.run(write())
    assert primary.get(key + ":n") == b"20"
    assert setup.primary.client(password=DATA_PASSWORD, db=0).get(key) is None


def test_the_sentinels_password_is_required_and_used(setup: SentinelSetup) -> None:
    without = _settings(setup).model_copy(update={"redis_sentinel_password": None})
    with pytest.raises(redis.ConnectionError):  # no sentinel answers: MasterNotFoundError
        redis_connect.sync_client(without, socket_connect_timeout=1).ping()
    assert redis_connect.sync_client(_settings(setup)).ping()


def test_a_bounded_pool_waits_for_a_free_connection_then_fails(setup: SentinelSetup) -> None:
    client = redis_connect.sync_client(_settings(setup), max_connections=1, wait_for_connection=0.3)
    pool = client.connection_pool
    held = pool.get_connection()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="No connection available"):
        pool.get_connection()
    assert 0.25 <= time.monotonic() - started < 2
    pool.release(held)
    assert client.ping()


def test_celery_uses_kombus_sentinel_transport_and_takes_messages_our_scripts_push(
    setup: SentinelSetup,
) -> None:
    settings = _settings(setup, db=2)
    celery = create_celery(settings)
    conf = celery.conf
    assert conf.broker_url.startswith("sentinel://:data-secret@127.0.0.1:")
    assert conf.broker_url.count(";sentinel://") == 2
    options = conf.broker_transport_options
    assert options["master_name"] == MASTER
    assert options["sentinel_kwargs"]["password"] == SENTINEL_PASSWORD
    assert options["visibility_timeout"] == settings.visibility_timeout_seconds
    # The gateway puts Celery messages in the queue itself (LPUSH from a script): a kombu
    # consumer through the sentinel transport takes them as Celery's own.
    queue = "test.sentinel." + uuid.uuid4().hex[:6]
    task_id = str(uuid.uuid4())
    pushed = redis_connect.sync_client(settings)
    pushed.lpush(redis_keys.celery_queue(queue), generate_message(celery, task_id, queue))
    with celery.connection_for_read() as connection:
        simple = connection.SimpleQueue(queue)
        message = simple.get(timeout=5)
        assert message.headers["task"] == "synthgate.generate"
        assert message.decode()[0] == [task_id]
        message.ack()
        simple.close()
    assert setup.primary.client(password=DATA_PASSWORD, db=2).llen(queue) == 0


def test_waits_are_confirmed_by_the_replica_and_counted_when_short(setup: SentinelSetup) -> None:
    client = redis_connect.sync_client(_settings(setup))
    script = client.register_script("return redis.call('INCR', KEYS[1])")
    key = "wait-" + uuid.uuid4().hex
    one = ReplicaWait(replicas=1, timeout_ms=2000)
    assert run_confirmed(client, one, "test", [(script, [key], [])]) == [1]
    assert setup.replica.client(password=DATA_PASSWORD).get(key) == b"1"

    def short() -> float:
        value = REGISTRY.get_sample_value(
            "synthgate_redis_unconfirmed_writes_total", {"write": "test"}
        )
        return value or 0.0

    before = short()
    two = ReplicaWait(replicas=2, timeout_ms=50)  # there is one replica
    started = time.monotonic()
    assert run_confirmed(client, two, "test", [(script, [key], []), (script, [key], [])]) == [2, 3]
    assert time.monotonic() - started >= 0.045
    assert short() == before + 1
    # A script the primary lacks (a new primary's cache is empty) is loaded and run once.
    client.script_flush()
    assert run_confirmed(client, one, "test", [(script, [key], [])]) == [4]


def test_the_worker_stores_claim_and_finish_confirmed_by_the_replica(setup: SentinelSetup) -> None:
    primary_url = f"redis://:{DATA_PASSWORD}@127.0.0.1:{setup.primary.port}/0"
    api_key = register_tenant(primary_url, "t-" + uuid.uuid4().hex[:8], max_concurrent=10)
    pool = "test.replicas." + uuid.uuid4().hex[:6]  # no worker serves it
    first, second = (submit_direct(primary_url, api_key, JOB, pool) for _ in range(2))
    settings = _settings(setup)
    waits = ReplicaWait.from_settings(settings)
    assert waits.replicas == 1
    replica = setup.replica.client(password=DATA_PASSWORD)
    results = [{"key": "t/x/0.png"}]

    def status(task_id: str) -> bytes | None:  # read at once: WAIT returned, the replica has it
        return replica.hget(redis_keys.task(task_id), "status")  # type: ignore[return-value]

    store = WorkerTaskStore(
        redis_connect.sync_client(settings), 3600, lease=LeaseTerms("w-sync"), replicas=waits
    )
    claim = store.claim(first)
    assert claim is not None and claim.runnable and status(first) == b"RUNNING"
    assert store.mark_stored(first, [0])
    assert store.finish(first, TaskStatus.SUCCEEDED, results) and status(first) == b"SUCCEEDED"

    async def run_async() -> None:
        client = redis_connect.async_client(settings)
        try:
            lease = LeaseTerms("w-async")
            async_store = AsyncWorkerTaskStore(client, 3600, 2, lease, waits)
            (claimed,) = await async_store.claim_many([second])
            assert isinstance(claimed, Claim) and claimed.runnable
            assert status(second) == b"RUNNING"
            assert await async_store.finish(second, TaskStatus.SUCCEEDED, results)
            assert status(second) == b"SUCCEEDED"
        finally:
            await client.aclose()

    asyncio.run(run_async())


def test_the_reaper_counts_a_plain_restart_by_uptime(redis_server: RedisServer) -> None:
    terms = ReaperTerms(3600, 3600, 60, lease_seconds=0.5, max_attempts=3)
    uptime = int(redis_server.client().info("server")["uptime_in_seconds"])
    assert Reaper(redis_server.client(), terms)._primary_for() >= uptime


@pytest.mark.slow  # a failover and a rejoin: about 15 s
def test_after_a_failover_the_clients_follow_and_the_reaper_waits_a_lease(
    tmp_path: Path,
) -> None:
    with sentinel_setup(tmp_path, password=DATA_PASSWORD) as fresh:
        settings = Settings(
            redis_url=fresh.url, redis_sentinels=fresh.sentinel_list, redis_sentinel_master=MASTER
        )
        bounded = redis_connect.sync_client(settings, max_connections=4, wait_for_connection=5)
        plain = redis_connect.sync_client(settings, socket_timeout=1)
        bounded.set("before", 1)
        assert bounded.wait(1, 2000) == 1
        time.sleep(1.1)  # the replica's uptime passes a second
        fresh.primary.kill()
        wait_until(lambda: fresh.master_port() == fresh.replica.port, 30, "the promotion")

        def follows(client: redis.Redis) -> bool:
            try:
                return bool(client.set("after", 1)) and client.get("before") == b"1"
            except redis.RedisError:
                return False

        wait_until(lambda: follows(bounded) and follows(plain), 10, "the clients to follow")
        # The new primary has been up for over a second, but primary for less than that.
        terms = ReaperTerms(3600, 3600, 60, lease_seconds=1, max_attempts=3)
        reaper = Reaper(plain, terms)
        assert int(plain.info("server")["uptime_in_seconds"]) >= 1
        first = reaper._primary_for()
        assert first < 1
        # Every reaper, in any process, agrees: the moment is kept in Redis.
        assert Reaper(bounded, terms)._primary_for() >= first
        wait_until(lambda: reaper._primary_for() >= 1, 5, "a lease after the promotion")
        # The old primary, restarted, rejoins as a replica of the new one.
        fresh.primary.start()
        wait_until(lambda: fresh.role(fresh.primary) == "slave", 30, "the old primary to rejoin")
        old = fresh.data_client(fresh.primary)
        wait_until(lambda: old.get("after") == b"1", 15, "the old primary to sync")
