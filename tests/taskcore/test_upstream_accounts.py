"""DashScope accounts' limits in Redis: the take gives running slots within each account's
limit whoever asks, submits wait for the account's window, every ending frees the slot
once, a takeover keeps its account, and the reaper frees what no ending saw."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer, running_redis
from fixtures.tenants import register_tenant, submit_many

from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.reaper import Reaper, ReaperTerms
from taskcore.records import TaskStatus
from taskcore.settings import UpstreamAccount
from taskcore.store.claims import LeaseTerms
from taskcore.store.tasks import TaskStore
from taskcore.store.worker import WorkerTaskStore
from taskcore.upstream_accounts import AccountSlots, Taken, submit_window
from workers.upstream_worker import task_id_of

MODEL = "wanx2.1-t2i-turbo"
POOL = "upstream." + MODEL
JOB = GenerationRequest(MODEL, "a cat", "", 1024, 1024, 1, 0, 0.0, 7)
T = TypeVar("T")


def _account(name: str, **limits: Any) -> UpstreamAccount:
    return UpstreamAccount.model_validate({"name": name, "api_key": "sk-" + name, **limits})


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own: the session's upstream workers serve the same pool."""
    with running_redis(tmp_path_factory.mktemp("accounts-redis")) as server:
        yield server


@pytest.fixture
def queued(redis_server: RedisServer) -> Callable[[int], list[str]]:
    """Queue ``n`` tasks of a new tenant in the model's upstream pool."""

    def queue(n: int) -> list[str]:
        key = register_tenant(redis_server.url, "t-" + secrets.token_hex(4))
        return submit_many(redis_server.url, key, [JOB] * n, POOL)

    return queue


@pytest.fixture(autouse=True)
def empty_pool(redis_server: RedisServer) -> Iterator[None]:
    yield
    client = redis_server.client()
    for key in client.scan_iter(match="synthgate:*upstream*"):
        client.delete(key)
    for key in client.scan_iter(match="synthgate:pool:upstream*"):
        client.delete(key)
    client.delete(POOL)


def _run(redis_server: RedisServer, use: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            return await use(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def _take(redis_server: RedisServer, accounts: list[UpstreamAccount], count: int) -> list[Taken]:
    return _run(redis_server, lambda c: AccountSlots(c, accounts).take(POOL, MODEL, count, 2))


def _running(redis_server: RedisServer, account: str) -> set[str]:
    members = redis_server.client().smembers(redis_keys.upstream_running(account, MODEL))
    return {redis_keys.task_id_of(m.decode()) for m in members}


def test_takes_stop_at_the_accounts_running_limit_whoever_takes(
    redis_server: RedisServer, queued: Callable[[int], list[str]]
) -> None:
    queued(10)
    accounts = [_account("main", max_running=2, submit_per_second=100)]
    first = _take(redis_server, accounts, 5)  # one worker
    second = _take(redis_server, accounts, 5)  # another, with its own client
    assert [t.account for t in first] == ["main", "main"] and second == []
    assert len(_running(redis_server, "main")) == 2
    # The rest still wait, PENDING: in their tenant's list, or fed into the pool's queue.
    client = redis_server.client()
    assert client.llen(redis_keys.backlog(POOL)) + client.llen(POOL) == 8


def test_the_submit_window_bounds_the_take_and_each_submit(
    redis_server: RedisServer, queued: Callable[[int], list[str]]
) -> None:
    queued(6)
    account = _account("main", max_running=100, submit_per_second=2)
    taken = _take(redis_server, [account], 5)
    assert len(taken) == 2  # two submits in the window, however many slots

    async def turns(client: aioredis.Redis) -> list[float]:
        slots = AccountSlots(client, [account])
        return [await slots.submit_turn(account, MODEL, f"t{i}") for i in range(3)]

    waits = _run(redis_server, turns)
    assert waits[:2] == [0, 0] and 0 < waits[2] <= 1.1
    assert submit_window(_account("slow", submit_per_second=0.5)) == (1, 2200)


def test_work_is_spread_over_the_accounts_that_serve_the_model(
    redis_server: RedisServer, queued: Callable[[int], list[str]]
) -> None:
    queued(6)
    accounts = [
        _account("a", max_running=2, submit_per_second=100),
        _account("b", max_running=2, submit_per_second=100),
        _account("other", max_running=9, submit_per_second=100, models=["qwen-image"]),
    ]
    taken = _take(redis_server, accounts, 6)
    assert sorted(t.account for t in taken) == ["a", "a", "b", "b"]


def test_a_resting_account_takes_nothing(
    redis_server: RedisServer, queued: Callable[[int], list[str]]
) -> None:
    queued(2)
    account = _account("main", max_running=5, submit_per_second=100)
    _run(redis_server, lambda c: AccountSlots(c, [account]).rest("main", 30))
    assert _take(redis_server, [account], 2) == []
    wait = _run(redis_server, lambda c: AccountSlots(c, [account]).submit_turn(account, MODEL, "x"))
    assert 29 < wait <= 30


def test_every_ending_frees_the_slot_once_and_a_takeover_keeps_its_account(
    redis_server: RedisServer, queued: Callable[[int], list[str]]
) -> None:
    ids = queued(3)
    account = _account("main", max_running=3, submit_per_second=100)
    taken = _take(redis_server, [account], 3)
    assert {task_id_of(t.message) for t in taken} == set(ids)
    client = redis_server.client()
    store = WorkerTaskStore(client, 3600, lease=LeaseTerms("w1", lease_seconds=30))
    for task_id in ids:
        assert store.claim(task_id) is not None
    # A task ends: its slot is free, and the release is not counted twice.
    assert store.finish(ids[0], TaskStatus.SUCCEEDED, [{"key": "x/0.png"}])
    assert _running(redis_server, "main") == set(ids[1:])
    assert not store.finish(ids[0], TaskStatus.SUCCEEDED, [{"key": "x/0.png"}])
    # A worker dies: its task keeps the slot, and its message, put back, goes to the same
    # account even when the account is full (its upstream task id is only that account's).
    client.lpush(POOL, taken[1].message)
    queued(1)
    again = _take(redis_server, [_account("main", max_running=2, submit_per_second=100)], 2)
    assert [(task_id_of(t.message), t.account) for t in again] == [(ids[1], "main")]
    assert _running(redis_server, "main") == set(ids[1:])
    # The reaper frees the slot of a record that disappeared without an ending.
    client.delete(redis_keys.task(ids[2]))
    reaper = Reaper(client, ReaperTerms(3600, 900, 60, 30, 3))
    reaper.run([])
    assert _running(redis_server, "main") == {ids[1]}


def test_a_task_canceled_before_its_claim_frees_its_slot(
    redis_server: RedisServer, queued: Callable[[int], list[str]]
) -> None:
    [task_id] = queued(1)
    account = _account("main", max_running=1, submit_per_second=100)
    [taken] = _take(redis_server, [account], 1)
    assert _running(redis_server, "main") == {task_id}

    async def cancel(client: aioredis.Redis) -> object:
        tenant = (await client.hget(redis_keys.task(task_id), "tenant")).decode()
        return await TaskStore(client, 3600).cancel(task_id, tenant)

    assert _run(redis_server, cancel) is TaskStatus.PENDING
    assert _running(redis_server, "main") == set()
    assert taken.account == "main"
