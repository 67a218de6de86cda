"""Idempotency keys in the submit script, against a real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from fixtures.processes import RedisServer
from starlette.datastructures import Headers

from gateway.edge.errors import InvalidParameter, Throttling
from gateway.intake.admission import Accepted, SubmitOptions, Submitter
from gateway.intake.idempotency import IdempotencyConflict, fingerprint, parse_key
from gateway.intake.options import submit_options
from gateway.tenancy.auth import KeyDirectory
from gateway.tenancy.usage import utc_day
from taskcore import redis_keys
from taskcore.contract import GenerationRequest

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 1, 7.0, 1)
POOL = "test.idem"  # no worker serves it
TTL = 600


def _submit_all(
    url: str, api_key: str, options: list[SubmitOptions], concurrently: bool = False
) -> list[Accepted | Exception]:
    """Submit one task per entry of ``options``; the accepted submits, or their errors."""

    async def run() -> list[Accepted | Exception]:
        redis_client = aioredis.Redis.from_url(url)
        submitter = Submitter(redis_client, 0, TTL)
        caller = await KeyDirectory(redis_client).lookup(api_key)
        assert caller is not None

        async def one(option: SubmitOptions) -> Accepted | Exception:
            try:
                task_id = str(uuid.uuid4())
                return await submitter.submit(caller, task_id, JOB, POOL, b"m", options=option)
            except Exception as exc:  # the answer under test
                return exc

        try:
            if concurrently:
                return list(await asyncio.gather(*(one(o) for o in options)))
            return [await one(o) for o in options]
        finally:
            await redis_client.aclose()

    return asyncio.run(run())


def _keyed(key: str, body: object = "body") -> SubmitOptions:
    return SubmitOptions(idempotency_key=key, fingerprint=fingerprint("dashscope", body))


def test_twenty_concurrent_submits_with_one_key_make_one_task_and_count_once(
    redis_server: RedisServer, new_tenant: Callable[..., str]
) -> None:
    tenant = "t-" + uuid.uuid4().hex[:8]
    api_key = new_tenant(tenant, rpm=5)
    answers = _submit_all(redis_server.url, api_key, [_keyed("order-42")] * 20, True)
    assert all(isinstance(a, Accepted) for a in answers), answers
    accepted = [a for a in answers if isinstance(a, Accepted)]
    assert len({a.task_id for a in accepted}) == 1
    (made,) = [a for a in accepted if not a.replayed]
    redis_client = redis_server.client()
    assert redis_client.zcard(redis_keys.tenant_rate(tenant)) == 1
    assert redis_client.zcard(redis_keys.tenant_active(tenant)) == 1
    assert (
        redis_client.hget(redis_keys.tenant_usage(tenant, utc_day(made.submit_ms)), "tasks") == b"1"
    )
    entry = redis_keys.idempotency(tenant, "order-42")
    assert redis_client.hget(entry, "task_id") == made.task_id.encode()
    assert 0 < redis_client.ttl(entry) <= TTL


def test_a_key_reused_with_another_request_is_a_conflict(
    redis_server: RedisServer, new_tenant: Callable[..., str]
) -> None:
    api_key = new_tenant()
    first, second = _submit_all(
        redis_server.url, api_key, [_keyed("k1", {"n": 1}), _keyed("k1", {"n": 2})]
    )
    assert isinstance(first, Accepted) and isinstance(second, IdempotencyConflict)
    assert second.status_code == 409 and first.task_id in second.message


def test_keys_are_per_tenant_and_a_refused_submit_leaves_its_key_unused(
    redis_server: RedisServer, new_tenant: Callable[..., str]
) -> None:
    limited = "t-" + uuid.uuid4().hex[:8]
    limited_key = new_tenant(limited, rpm=1)
    (mine,) = _submit_all(redis_server.url, limited_key, [_keyed("shared")])
    (theirs,) = _submit_all(redis_server.url, new_tenant(), [_keyed("shared")])
    assert isinstance(mine, Accepted) and isinstance(theirs, Accepted)
    assert mine.task_id != theirs.task_id and not theirs.replayed
    (refused,) = _submit_all(redis_server.url, limited_key, [_keyed("fresh")])
    assert isinstance(refused, Throttling)
    assert not redis_server.client().exists(redis_keys.idempotency(limited, "fresh"))


def test_a_key_whose_task_record_is_gone_makes_a_new_task(
    redis_server: RedisServer, new_tenant: Callable[..., str]
) -> None:
    api_key = new_tenant()
    (first,) = _submit_all(redis_server.url, api_key, [_keyed("again")])
    assert isinstance(first, Accepted)
    redis_server.client().delete(redis_keys.task(first.task_id))
    (second,) = _submit_all(redis_server.url, api_key, [_keyed("again")])
    assert isinstance(second, Accepted) and not second.replayed
    assert second.task_id != first.task_id


@pytest.mark.parametrize("bad", ["", "has space", "é", "x" * 256, "tab\tinside"])
def test_malformed_idempotency_keys_are_refused(bad: str) -> None:
    with pytest.raises(InvalidParameter, match="Idempotency-Key"):
        parse_key(bad)


def test_the_fingerprint_ignores_key_order_but_not_values_or_the_api() -> None:
    assert fingerprint("dashscope", {"a": 1, "b": [1, 2]}) == fingerprint(
        "dashscope", {"b": [1, 2], "a": 1}
    )
    assert fingerprint("dashscope", {"a": 1}) != fingerprint("dashscope", {"a": 2})
    assert fingerprint("dashscope", {"a": 1}) != fingerprint("openai", {"a": 1})
    assert parse_key("0f8fad5b-d9cb-469f-a165-70867728950e") is not None


@pytest.mark.parametrize(
    "second",
    [
        {"X-Synthgate-Priority": "batch"},
        {"X-Synthgate-Priority": "interactive"},
        {"X-Synthgate-Callback": "https://hooks.example.com/other"},
        {},
    ],
)
def test_a_replay_whose_priority_or_callback_header_differs_is_a_conflict(
    redis_server: RedisServer, new_tenant: Callable[..., str], second: dict[str, str]
) -> None:
    api_key = new_tenant()
    body = {"model": "stable-diffusion-v1.5", "input": {"prompt": "a cat"}}
    first = {
        "Idempotency-Key": "order-7",
        "X-Synthgate-Priority": "normal",
        "X-Synthgate-Callback": "https://hooks.example.com/a",
    }
    again = {"Idempotency-Key": "order-7", **second}
    options = [
        submit_options(Headers(headers), body, "dashscope") for headers in (first, first, again)
    ]
    made, replayed, other = _submit_all(redis_server.url, api_key, options)
    assert isinstance(made, Accepted) and isinstance(replayed, Accepted) and replayed.replayed
    assert isinstance(other, IdempotencyConflict), other
