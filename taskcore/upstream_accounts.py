"""DashScope accounts as a shared, scheduled resource: their limits, held in Redis.

DashScope limits each account per model: a few task submits a second and one or two
tasks running at once; above that it answers 429. A company shares its accounts among
many teams and many upstream workers, so the limits are held here, for every worker
together, and DashScope is not asked for more than it allows:

- **Running.** Each upstream model is a pool of its own (``upstream.<model>``). A worker
  takes a pool's tasks only while some account serving the model has a running slot
  free; the take gives each task its slot in the same script (``upstream_take.lua``), so
  no two workers fill the same slot. While every account is full the tasks wait in the
  fair queue, PENDING, in their tenants' order. A slot is released when the task ends
  upstream (the worker's early release), and in any case when it ends here: every final
  status (success, failure, cancel, deadline, poison) runs ``release`` (``lib/release.lua``).
  A worker's death is no ending: its tasks keep their slots, and the worker that takes
  them over resumes their upstream tasks with the same account (DashScope's task ids
  are per account). The reaper drops the slots of records that ended unseen
  (``upstream_reconcile.lua``).
- **Submits.** Every submit, and every retry of one, asks ``upstream_submit.lua`` first:
  at most ``submit_per_second`` submits per account and model in any window of
  :data:`SUBMIT_WINDOW_MS` (a little over a second, since the request reaches DashScope a
  few milliseconds after the count).
- **Throttled anyway** (another client shares the key, say): the account rests for the
  ``Retry-After`` (at least ``SYNTHGATE_UPSTREAM_THROTTLE_BACKOFF_SECONDS``); no task is
  failed for it within its deadline.
- Work is spread over the accounts that serve a model: each task goes to the account
  with the most room.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from taskcore import fairqueue, redis_keys, scripts
from taskcore.settings import UpstreamAccount

SUBMIT_WINDOW_MS = 1_100


@dataclass(frozen=True, slots=True)
class Taken:
    """A task message taken off an upstream pool, and the account it runs under ('' for
    a task that no longer waits: its claim cleans it up)."""

    message: bytes
    account: str


class AccountSlots:
    """The upstream worker's side of the accounts' limits (asyncio client)."""

    def __init__(self, client: aioredis.Redis, accounts: Sequence[UpstreamAccount]) -> None:
        self._redis = client
        self._accounts = tuple(accounts)
        self._take = scripts.bind(client, "upstream_take")
        self._submit = scripts.bind(client, "upstream_submit")

    def serving(self, model: str) -> list[UpstreamAccount]:
        return [account for account in self._accounts if account.serves(model)]

    async def take(self, pool: str, model: str, count: int, depth: int) -> list[Taken]:
        """Up to ``count`` messages of ``pool``, as many as the accounts serving ``model``
        have room for, each with its account (see ``upstream_take.lua``)."""
        accounts = self.serving(model)
        if not accounts:
            return []
        keys = [*fairqueue.pool_keys(pool), redis_keys.upstream_running_sets()]
        args: list[str | int | float] = [count, depth]
        for account in accounts:
            keys += [
                redis_keys.upstream_running(account.name, model),
                redis_keys.upstream_submits(account.name, model),
                redis_keys.upstream_rest(account.name),
            ]
            args += [account.name, account.running_limit(model), *submit_window(account)]
        flat = await self._take(keys=keys, args=args)
        return [Taken(flat[i], flat[i + 1].decode()) for i in range(0, len(flat), 2)]

    async def submit_turn(self, account: UpstreamAccount, model: str, task_id: str) -> float:
        """0 when this submit of ``model`` is counted in the account's window, else the
        seconds until one may be."""
        keys = [
            redis_keys.upstream_submits(account.name, model),
            redis_keys.upstream_rest(account.name),
        ]
        per_window, window_ms = submit_window(account)
        wait_ms = await self._submit(keys=keys, args=[window_ms, per_window, task_id])
        return int(wait_ms) / 1000

    async def rest(self, account: str, seconds: float) -> None:
        """DashScope throttled ``account``: no take or submit uses it for ``seconds``."""
        await self._redis.set(redis_keys.upstream_rest(account), 1, px=max(1, int(seconds * 1000)))

    async def release(self, task_id: str, account: str, model: str) -> None:
        """The task has ended upstream: its running slot is free (its final status would
        free it too, a little later)."""
        await self._redis.srem(
            redis_keys.upstream_running(account, model), redis_keys.task(task_id)
        )

    async def register(self) -> None:
        """Publish the accounts' limits (never their keys) for the gateway's metrics."""
        if self._accounts:
            await self._redis.hset(
                redis_keys.upstream_accounts(),
                mapping={account.name: describe(account) for account in self._accounts},
            )


def describe(account: UpstreamAccount) -> str:
    """An account's limits and models as JSON, without its key."""
    return json.dumps(account.model_dump(exclude={"api_key"}), sort_keys=True)


def submit_window(account: UpstreamAccount) -> tuple[int, int]:
    """(submits, window in ms) that keep within ``submit_per_second``: whole submits in
    :data:`SUBMIT_WINDOW_MS`, or one in a longer window for a rate under one a second."""
    rate = account.submit_per_second
    if rate >= 1:
        return int(rate), SUBMIT_WINDOW_MS
    return 1, int(SUBMIT_WINDOW_MS / rate)
