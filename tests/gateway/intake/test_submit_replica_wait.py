"""A submit whose write no replica confirmed in time (a Redis with no replica, waiting for
one): with an Idempotency-Key, 503 and the retry gets the same task; without, 200."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis
from fixtures.processes import RedisServer
from prometheus_client import REGISTRY

from gateway.edge.errors import ServiceUnavailable
from gateway.intake.admission import Accepted, SubmitOptions, Submitter
from gateway.intake.idempotency import fingerprint
from gateway.tenancy.auth import KeyDirectory
from taskcore import redis_keys
from taskcore.contract import GenerationRequest
from taskcore.store.replicas import ReplicaWait

JOB = GenerationRequest("stable-diffusion-v1.5", "a cat", "", 512, 512, 1, 1, 7.0, 1)
POOL = "test.replica-wait"  # no worker serves it


def _unconfirmed() -> float:
    value = REGISTRY.get_sample_value(
        "synthgate_redis_unconfirmed_writes_total", {"write": "submit"}
    )
    return value or 0.0


def test_an_unconfirmed_submit_is_503_with_a_key_and_its_retry_gets_the_same_task(
    redis_server: RedisServer, new_tenant: Callable[..., str]
) -> None:
    api_key = new_tenant()
    keyed = SubmitOptions(idempotency_key="k-" + uuid.uuid4().hex, fingerprint=fingerprint("d", 1))
    before = _unconfirmed()

    async def run() -> tuple[list[Accepted | Exception], str]:
        client = aioredis.Redis.from_url(redis_server.url)
        submitter = Submitter(client, 0, replicas=ReplicaWait(replicas=1, timeout_ms=20))
        caller = await KeyDirectory(client).lookup(api_key)
        assert caller is not None
        answers: list[Accepted | Exception] = []
        first_id = str(uuid.uuid4())
        for task_id, options in ((first_id, keyed), (str(uuid.uuid4()), keyed)):
            try:
                answers.append(
                    await submitter.submit(caller, task_id, JOB, POOL, b"m", options=options)
                )
            except ServiceUnavailable as exc:
                answers.append(exc)
        answers.append(await submitter.submit(caller, str(uuid.uuid4()), JOB, POOL, b"m"))
        await client.aclose()
        return answers, first_id

    (refused, retried, unkeyed), first_id = asyncio.run(run())
    assert isinstance(refused, ServiceUnavailable)
    assert refused.status_code == 503 and refused.headers == {"Retry-After": "2"}
    assert "Idempotency-Key" in str(refused) and first_id in str(refused)
    # The task stands (it would run); the retry with the same key answers with it.
    assert redis_server.client().exists(redis_keys.task(first_id))
    assert isinstance(retried, Accepted) and retried.replayed and retried.task_id == first_id
    # Without a key a 503 would make the client submit again: accepted, and counted.
    assert isinstance(unkeyed, Accepted) and not unkeyed.replayed
    assert _unconfirmed() == before + 3
