"""Automatic pipelining against a real Redis: one round trip per loop turn, replies and
errors to each caller as if it had called alone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from fixtures.pipelines import PipelineCounter
from fixtures.processes import RedisServer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from taskcore.autopipeline import AutoPipeline


def test_the_calls_of_one_loop_turn_share_one_pipeline(redis_server: RedisServer) -> None:
    async def main() -> Any:
        redis_client = aioredis.Redis.from_url(redis_server.url)
        try:
            await redis_client.hset("ap:h", mapping={"a": "1", "b": "2"})
            await redis_client.set("ap:s", "x")
            pipelines = PipelineCounter(redis_client)
            auto = AutoPipeline(redis_client)
            replies = await asyncio.gather(
                *(auto.command("HGETALL", "ap:h") for _ in range(20)),
                auto.command("HGETALL", "ap:s"),  # the wrong type: fails alone
                auto.command("GET", "ap:s"),
                return_exceptions=True,
            )
            later = await auto.command("HGETALL", "ap:missing")
            return replies, later, pipelines.count
        finally:
            await redis_client.aclose()

    replies, later, pipelines = asyncio.run(main())
    assert replies[:20] == [{b"a": b"1", b"b": b"2"}] * 20  # parsed as hgetall's reply
    assert isinstance(replies[20], ResponseError) and "WRONGTYPE" in str(replies[20])
    assert replies[21] == b"x"
    assert later == {}
    assert pipelines == 2  # 22 calls in one turn, then one alone


def test_a_lost_connection_fails_every_call_of_its_batch_and_then_recovers(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)
    server.start()

    async def main() -> Any:
        redis_client = aioredis.Redis.from_url(server.url, socket_connect_timeout=1)
        auto = AutoPipeline(redis_client)
        try:
            await auto.command("SET", "k", "v")
            server.stop()
            failed = await asyncio.gather(
                *(auto.command("GET", "k") for _ in range(5)), return_exceptions=True
            )
            server.start()  # empty again: nothing was saved
            return failed, await auto.command("GET", "k")
        finally:
            await redis_client.aclose()

    try:
        failed, after = asyncio.run(main())
    finally:
        server.stop()
    assert all(isinstance(f, RedisConnectionError) for f in failed), failed
    assert after is None


@pytest.mark.parametrize("cancelled", [True, False])
def test_a_cancelled_caller_leaves_the_others_their_replies(
    redis_server: RedisServer, cancelled: bool
) -> None:
    async def main() -> Any:
        redis_client = aioredis.Redis.from_url(redis_server.url)
        try:
            auto = AutoPipeline(redis_client)
            first = asyncio.ensure_future(auto.command("PING"))
            second = auto.command("ECHO", "still here")
            if cancelled:
                first.cancel()
            return await second
        finally:
            await redis_client.aclose()

    assert asyncio.run(main()) == b"still here"


def test_a_flush_sends_the_queued_calls_in_one_pipeline_and_no_empty_one(
    redis_server: RedisServer,
) -> None:
    async def main() -> Any:
        redis_client = aioredis.Redis.from_url(redis_server.url)
        try:
            pipelines = PipelineCounter(redis_client)
            auto = AutoPipeline(redis_client)
            calls = [auto.command("ECHO", str(i)) for i in range(3)]
            auto.flush()  # the turn's own flush, already scheduled, finds nothing left
            replies = await asyncio.gather(*calls)
            await asyncio.sleep(0)
            return replies, pipelines.count
        finally:
            await redis_client.aclose()

    assert asyncio.run(main()) == ([b"0", b"1", b"2"], 1)
