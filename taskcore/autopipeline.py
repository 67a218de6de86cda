"""Automatic pipelining: the Redis calls made during one event-loop turn, sent together.

A lone call through redis-py's asyncio client costs ~0.25 ms of CPU on a small
machine (a connection from the pool, a write, a read, a timeout around it), most of
it per call, not per command. Where many coroutines call Redis at once (the gateway's
task fetches, an upstream worker's hundreds of tasks), :class:`AutoPipeline` queues
the calls of one loop turn and sends them as one pipeline: one write, one read, one
connection. A call waits at most until the loop's next turn; alone, it costs about
what a direct call does. Replies and errors go to each caller as if it had called
alone (a failed connection fails every call of its batch).

With a :class:`~taskcore.store.replicas.ReplicaWait`, a batch holding a
:meth:`AutoPipeline.confirmed_script` call ends with ``WAIT``: one wait, on the batch's
connection, covers every write of the batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from taskcore.store.replicas import NO_WAIT, ReplicaWait

# A queued call: a plain command (its arguments), or a script with its keys and arguments,
# and the write it is when replicas must confirm it ("" when not).
_Call = tuple[tuple[Any, ...] | None, AsyncScript | None, list[Any], asyncio.Future[Any], str]


class AutoPipeline:
    """Queues calls and sends each loop turn's calls in one pipeline."""

    def __init__(self, client: aioredis.Redis, replicas: ReplicaWait = NO_WAIT) -> None:
        self._client = client
        self._replicas = replicas
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    def command(self, *args: Any) -> asyncio.Future[Any]:
        """``client.execute_command(*args)``, its reply parsed as redis-py parses it."""
        return self._queue(args, None, [])

    def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """``script(keys=keys, args=args)``; a script missing from Redis's cache (a
        restarted Redis) is called again on its own, which loads it."""
        return self._queue(None, script, [len(keys), *keys, *args])

    def confirmed_script(
        self, script: AsyncScript, keys: list[str], args: list[Any], write: str
    ) -> asyncio.Future[Any]:
        """:meth:`script`, its result ``(reply, confirmed)``: whether the replicas confirmed
        the batch's writes in time (always True when none are waited for; see
        :mod:`taskcore.store.replicas`)."""
        return self._queue(None, script, [len(keys), *keys, *args], write)

    def _queue(
        self,
        command: tuple[Any, ...] | None,
        script: AsyncScript | None,
        args: list[Any],
        write: str = "",
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((command, script, args, future, write))
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
        wait = self._replicas.active and any(call[4] for call in batch)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for command, script, args, *_ in batch:
                    if script is not None:
                        pipe.evalsha(script.sha, *args)
                    else:
                        assert command is not None
                        pipe.execute_command(*command)
                if wait:
                    pipe.execute_command(*self._replicas.command())
                replies = await pipe.execute(raise_on_error=False)
                confirmed = True
                if wait:
                    acked = replies.pop()
                    if isinstance(acked, Exception):
                        raise acked
                    ran = {
                        call[4]
                        for call, reply in zip(batch, replies, strict=True)
                        if call[4] and not isinstance(reply, NoScriptError)
                    }
                    for write in sorted(ran):  # those that did not are sent again alone
                        self._replicas.confirmed(write, int(acked))
                    confirmed = int(acked) >= self._replicas.replicas
        except asyncio.CancelledError:  # the loop is closing
            for _, _, _, future, _ in batch:
                future.cancel()
            raise
        except Exception as exc:  # the connection failed: every call of the batch did
            for _, _, _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, script, args, future, write), reply in zip(batch, replies, strict=True):
            ok = confirmed
            if script is not None and isinstance(reply, NoScriptError):
                reply, ok = await self._alone(script, args, write)
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result((reply, ok) if write else reply)

    async def _alone(self, script: AsyncScript, args: list[Any], write: str) -> tuple[Any, bool]:
        """A script Redis lacked (a restart, a failover), called again on its own, which
        loads it; followed by its own ``WAIT`` on the same connection when it is a write
        the replicas must confirm."""
        keys, argv = args[1 : 1 + args[0]], args[1 + args[0] :]
        try:
            if not (write and self._replicas.active):
                return await script(keys=keys, args=argv), True
            async with self._client.pipeline(transaction=False) as pipe:
                await script(keys=keys, args=argv, client=pipe)
                pipe.execute_command(*self._replicas.command())
                reply, acked = await pipe.execute()
            return reply, self._replicas.confirmed(write, int(acked))
        except Exception as exc:
            return exc, False
