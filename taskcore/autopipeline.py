"""Automatic pipelining: the Redis calls made during one event-loop turn, sent together.

A lone call through redis-py's asyncio client costs ~0.25 ms of CPU on a small
machine (a connection from the pool, a write, a read, a timeout around it), most of
it per call, not per command. Where many coroutines call Redis at once (the gateway's
task fetches, an upstream worker's hundreds of tasks), :class:`AutoPipeline` queues
the calls of one loop turn and sends them as one pipeline: one write, one read, one
connection. A call waits at most until the loop's next turn; alone, it costs about
what a direct call does. Replies and errors go to each caller as if it had called
alone (a failed connection fails every call of its batch).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

# A queued call: a plain command (its arguments), or a script with its keys and arguments.
_Call = tuple[tuple[Any, ...] | None, AsyncScript | None, list[Any], asyncio.Future[Any]]


class AutoPipeline:
    """Queues calls and sends each loop turn's calls in one pipeline."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """``client.execute_command(*args)``, its reply parsed as redis-py parses it."""
        return self._queue(args, None, [])

    def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """``script(keys=keys, args=args)``; a script missing from Redis's cache (a
        restarted Redis) is called again on its own, which loads it."""
        return self._queue(None, script, [len(keys), *keys, *args])

    def _queue(
        self, command: tuple[Any, ...] | None, script: AsyncScript | None, args: list[Any]
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, script, args, future))
        return future

    def flush(self) -> None:
        """Send the calls queued so far now, not at the loop's next turn."""
        self._flush()

    def _flush(self) -> None:
        if not self._pending:  # flushed already
            return
        batch, self._pending = self._pending, []
        sending = asyncio.ensure_future(self._send(batch))
        self._sending.add(sending)  # held until done: the loop keeps only weak references
        sending.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for command, script, args, _ in batch:
                    if script is not None:
                        pipe.evalsha(script.sha, *args)
                    else:
                        assert command is not None
                        pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:  # the loop is closing
            for *_, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: every call of the batch did
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, script, args, future), reply in zip(batch, replies, strict=True):
            if script is not None and isinstance(reply, NoScriptError):
                try:
                    reply = await script(keys=args[1 : 1 + args[0]], args=args[1 + args[0] :])
                except Exception as exc:
                    reply = exc
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
